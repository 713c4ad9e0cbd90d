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
    var isNullish: Bool {
        switch self {
        case .undefined, .null: return true
        default: return false
        }
    }

    var isArray: Bool {
        if case .array = self { return true }
        return false
    }
}

/// Reads typed values out of JavaScript values, collecting problems instead of stopping at the first.
struct Reader {
    var problems: [ConfigurationError.Problem] = []
    var warnings: [String] = []

    mutating func problem(_ key: String, _ message: String) {
        self.problems.append(.init(key: key, message: message))
    }

    /// A number, or a string holding one (as `process.env.X` gives), the way `Number(x)` reads it.
    mutating func number(_ value: JSValue, key: String) -> Double? {
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
    mutating func integer(_ value: JSValue, key: String, in range: ClosedRange<Int>, falsyDefault: Int? = nil) -> Int? {
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
    mutating func bool(_ value: JSValue, key: String) -> Bool? {
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

    mutating func string(_ value: JSValue, key: String) -> String? {
        switch value {
        case .undefined, .null: return nil
        case .string(let text): return text
        default:
            self.problem(key, "must be a string, got \(value.typeDescription)")
            return nil
        }
    }
}

/// Why a file could not be read: the system's message (`strerror`).
public struct FileReadError: Error, CustomStringConvertible {
    public var reason: String
    public var description: String { self.reason }
}

/// The whole file at `path` as UTF-8 text (invalid bytes become U+FFFD).
public func readTextFile(_ path: String) throws(FileReadError) -> String {
    guard let file = fopen(path, "rb") else { throw FileReadError(reason: String(cString: strerror(errno))) }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65_536)
    while true {
        let count = fread(&chunk, 1, chunk.count, file)
        if count <= 0 { break }
        bytes.append(contentsOf: chunk[0..<count])
    }
    return String(decoding: bytes, as: UTF8.self)
}
