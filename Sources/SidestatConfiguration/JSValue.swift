//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatProtocol

/// A JavaScript value, as the configuration evaluator produces it.
public enum JSValue: Sendable, Equatable {
    case undefined
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSValue])
    case object(JSObject)

    /// JavaScript's ToBoolean.
    public var truthy: Bool {
        switch self {
        case .undefined, .null: return false
        case .bool(let value): return value
        case .number(let value): return value != 0 && !value.isNaN
        case .string(let value): return !value.isEmpty
        case .array, .object: return true
        }
    }

    /// JavaScript's ToNumber (objects other than one-element arrays give NaN).
    public var numberValue: Double {
        switch self {
        case .undefined: return .nan
        case .null: return 0
        case .bool(let value): return value ? 1 : 0
        case .number(let value): return value
        case .string(let text):
            var utf8 = Array(text.utf8)
            return utf8.withUnsafeMutableBytes { JSNumber.parse(UnsafeRawBufferPointer($0)) } ?? .nan
        case .array(let items):
            if items.isEmpty { return 0 }
            if items.count == 1 { return items[0].numberValue }
            return .nan
        case .object: return .nan
        }
    }

    /// JavaScript's ToString.
    public var stringValue: String {
        switch self {
        case .undefined: return "undefined"
        case .null: return "null"
        case .bool(let value): return value ? "true" : "false"
        case .number(let value): return JSNumber.string(value)
        case .string(let value): return value
        case .array(let items):
            return items.map { item -> String in
                if case .undefined = item { return "" }
                if case .null = item { return "" }
                return item.stringValue
            }.joined(separator: ",")
        case .object: return "[object Object]"
        }
    }

    /// The name of the value's type, for messages ("a string", "a number", ...).
    public var typeDescription: String {
        switch self {
        case .undefined: return "undefined"
        case .null: return "null"
        case .bool(let value): return "the boolean \(value)"
        case .number(let value): return "the number \(JSNumber.string(value))"
        case .string(let value): return "the string \"\(value)\""
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    public subscript(key: String) -> JSValue {
        if case .object(let object) = self { return object[key] }
        return .undefined
    }

    /// True when JavaScript's `typeof` would not be "object" (what statsd's `config` command prints flat).
    var isPrimitive: Bool {
        switch self {
        case .array, .object, .null: return false
        default: return true
        }
    }
}

/// A JavaScript object: keys in insertion order; assigning an existing key keeps its position.
public struct JSObject: Sendable, Equatable {
    public private(set) var keys: [String] = []
    private var values: [String: JSValue] = [:]

    public init() {}

    public init(_ pairs: [(String, JSValue)]) {
        for (key, value) in pairs { self[key] = value }
    }

    public subscript(key: String) -> JSValue {
        get { self.values[key] ?? .undefined }
        set {
            if self.values.updateValue(newValue, forKey: key) == nil { self.keys.append(key) }
        }
    }

    public func contains(_ key: String) -> Bool { self.values[key] != nil }

    public var pairs: [(key: String, value: JSValue)] { self.keys.map { ($0, self.values[$0]!) } }
}
