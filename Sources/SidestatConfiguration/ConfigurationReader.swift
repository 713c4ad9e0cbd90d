//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension JSValue {
    public var isNullish: Bool {
        switch self {
        case .undefined, .null: return true
        default: return false
        }
    }

    public var isArray: Bool {
        if case .array = self { return true }
        return false
    }
}

/// Reads typed values out of JavaScript values, collecting problems instead of stopping at the first. Each problem
/// and each warning is kept once (two sections may read the same key).
public struct ConfigurationReader {
    public private(set) var problems: [ConfigurationError.Problem] = []
    public private(set) var warnings: [String] = []

    init() {}

    public mutating func problem(_ key: String, _ message: String) {
        let problem = ConfigurationError.Problem(key: key, message: message)
        if !self.problems.contains(problem) { self.problems.append(problem) }
    }

    public mutating func warning(_ text: String) {
        if !self.warnings.contains(text) { self.warnings.append(text) }
    }

    /// The object at `key`: `{}` when unset, a problem when it is something else.
    public mutating func section(_ object: JSObject, _ key: String, example: String) -> JSObject {
        switch object[key] {
        case .object(let value): return value
        case .undefined, .null: return JSObject()
        case let value:
            self.problem(key, "must be an object like \(example), got \(value.typeDescription)")
            return JSObject()
        }
    }

    /// A warning for each key of a section's object that the section does not read, with the nearest it does
    /// (`remoteWrite.ur` → `did you mean "url"?`).
    public mutating func warnUnknownKeys(in object: JSObject, of section: String, known: [String]) {
        let knownKeys = Set(known)
        for key in object.keys where !knownKeys.contains(key) {
            let hint = DaemonConfiguration.nearestKey(to: key, in: knownKeys).map { " (did you mean \"\($0)\"?)" } ?? ""
            self.warning("unknown configuration key \"\(section).\(key)\" is ignored\(hint)")
        }
    }

    /// A number, or a string holding one (as `process.env.X` gives), the way `Number(x)` reads it.
    public mutating func number(_ value: JSValue, key: String) -> Double? {
        switch value {
        case .undefined, .null:
            return nil
        case .number(let number) where number.isFinite:
            return number
        case .string(let text) where !text.isEmpty && value.numberValue.isFinite:
            return value.numberValue
        default:
            self.problem(key, "must be a number, got \(value.typeDescription)")
            return nil
        }
    }

    /// An integer in `range`. `falsyDefault`: statsd's `x || default`, so 0, "" and false mean the default.
    public mutating func integer(_ value: JSValue, key: String, in range: ClosedRange<Int>, falsyDefault: Int? = nil) -> Int? {
        if let falsyDefault, !value.truthy, !value.isNullish { return falsyDefault }
        guard let number = self.number(value, key: key) else { return nil }
        guard number == number.rounded(), number >= Double(range.lowerBound), number <= Double(range.upperBound)
        else {
            self.problem(key, "must be an integer from \(range.lowerBound) to \(range.upperBound), got \(JSNumber.string(number))")
            return nil
        }
        return Int(number)
    }

    /// A boolean; the strings "true" and "false" (from environment variables) are accepted too.
    public mutating func bool(_ value: JSValue, key: String) -> Bool? {
        switch value {
        case .undefined, .null: return nil
        case .bool(let flag): return flag
        case .string("true"): return true
        case .string("false"): return false
        default:
            self.problem(key, "must be true or false, got \(value.typeDescription)")
            return nil
        }
    }

    public mutating func string(_ value: JSValue, key: String) -> String? {
        switch value {
        case .undefined, .null: return nil
        case .string(let text): return text
        default:
            self.problem(key, "must be a string, got \(value.typeDescription)")
            return nil
        }
    }
}
