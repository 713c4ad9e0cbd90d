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
    /// What `problems` and `warnings` hold, to keep each once in constant time (a file with 40,000 unknown keys
    /// must not take a quadratic pass).
    private var seenProblems: Set<ConfigurationError.Problem> = []
    private var seenWarnings: Set<String> = []
    /// Unknown keys met so far; past `unknownKeysNamed`, they are counted in one last warning instead.
    private var unknownKeys = 0
    static let unknownKeysNamed = 20

    init() {}

    public mutating func problem(_ key: String, _ message: String) {
        let problem = ConfigurationError.Problem(key: key, message: message)
        if self.seenProblems.insert(problem).inserted { self.problems.append(problem) }
    }

    public mutating func warning(_ text: String) {
        if self.seenWarnings.insert(text).inserted { self.warnings.append(text) }
    }

    /// A warning for an unknown key (with the nearest known one): the first 20 are named, the rest counted.
    mutating func unknownKey(_ name: String, known: Set<String>) {
        self.unknownKeys += 1
        if self.unknownKeys <= Self.unknownKeysNamed {
            let lastDot = name.lastIndex(of: ".").map { name.index(after: $0) } ?? name.startIndex
            let hint = DaemonConfiguration.nearestKey(to: String(name[lastDot...]), in: known)
                .map { " (did you mean \"\($0)\"?)" } ?? ""
            self.warning("unknown configuration key \"\(name)\" is ignored\(hint)")
        }
    }

    /// The last warning about unknown keys: how many more there were than those named.
    mutating func finishUnknownKeys() {
        let more = self.unknownKeys - Self.unknownKeysNamed
        if more > 0 { self.warning("\(more) more unknown configuration keys are ignored") }
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
        for key in object.keys where !knownKeys.contains(key) { self.unknownKey("\(section).\(key)", known: knownKeys) }
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

    /// A prefix or suffix of metric names as Graphite and the other upstreams can take it: cleaned as statsd cleans
    /// keys (white space becomes `_`, `/` becomes `-`, everything outside `[a-zA-Z0-9_.-]` goes), so that no value
    /// from the environment can end a Graphite line or start a tag. A warning says when cleaning changed it.
    public mutating func metricPath(_ text: String, key: String, secret: Bool = false) -> String {
        let cleaned = KeySanitizer.sanitize(text).filter { $0 != ";" && $0 != "=" }
        if cleaned != text {
            self.warning(
                secret
                    ? "\(key) holds characters a metric name cannot; they are left out"
                    : "\(key) \(JSONText.quoted(text)) holds characters a metric name cannot; using \(JSONText.quoted(cleaned))")
        }
        return cleaned
    }

    /// A size in bytes: a number, or a string with a unit (`"512MB"`, `"1.5GiB"`, `"800K"`; K, M and G count in 1024s,
    /// as memory quotas are given).
    public mutating func size(_ value: JSValue, key: String) -> Int? {
        if case .number(let bytes) = value, bytes.isFinite, bytes > 0, bytes < 1e18 { return Int(bytes) }
        if case .string(let text) = value, let bytes = Self.parseSize(text) { return bytes }
        self.problem(key, "must be a size: bytes, or a string like \"512MB\" or \"2GB\", got \(value.typeDescription)")
        return nil
    }

    /// `512MB`, `512M`, `512MiB`, `1.5G`, `800KB`, `1024` (bytes); nil when it is none of these.
    public static func parseSize(_ text: String) -> Int? {
        let trimmed = text.filter { $0 != " " }
        let number = trimmed.prefix { $0.isNumber || $0 == "." }
        let unit = trimmed.dropFirst(number.count).uppercased()
        guard let value = Double(number), value > 0 else { return nil }
        let factor: Double
        switch unit {
        case "", "B": factor = 1
        case "K", "KB", "KIB": factor = 1024
        case "M", "MB", "MIB": factor = 1024 * 1024
        case "G", "GB", "GIB": factor = 1024 * 1024 * 1024
        default: return nil
        }
        let bytes = value * factor
        return bytes < 1e18 ? Int(bytes) : nil
    }

    /// A string that must not be empty (a path, an address, a host name).
    public mutating func nonEmptyString(_ value: JSValue, key: String, what: String) -> String? {
        guard let text = self.string(value, key: key) else { return nil }
        guard !text.isEmpty else {
            self.problem(key, "must not be empty: \(what)")
            return nil
        }
        return text
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
