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
