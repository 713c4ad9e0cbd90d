//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The metrics in a log line, in the l2met convention (Heroku's log-runtime-metrics, the Librato add-on):
/// `count#NAME[=VALUE]` (a counter, 1 when no value), `measure#NAME=VALUE[UNIT]` (a timer: `ms`, `s`, `us` and `ns`
/// become milliseconds, any other unit keeps the number), `sample#NAME=VALUE[UNIT]` (a gauge, the number as written)
/// and `unique#NAME=VALUE` (a set member). A line may carry several. Other tokens (`source=web.1`, `at=info`) are
/// not metrics: `source` names what the dyno's instance name and the process already name, so it is not made a tag.
///
/// The result is statsd lines for the aggregator. A token that starts like a metric but is malformed is counted, not
/// guessed at. A line without `#` costs one `memchr`.
public enum L2met {
    public struct Scan: Sendable, Equatable {
        /// statsd lines, each ending in a newline (empty: none).
        public var statsd: String = ""
        /// Tokens that start like a metric (`count#`, ...) but could not be read.
        public var malformed = 0

        public init(statsd: String = "", malformed: Int = 0) {
            self.statsd = statsd
            self.malformed = malformed
        }
    }

    /// Reads the metric tokens of one log line.
    public static func scan(_ line: String) -> Scan {
        var line = line
        return line.withUTF8 { bytes in
            guard let base = bytes.baseAddress, memchr(base, Int32(UInt8(ascii: "#")), bytes.count) != nil else {
                return Scan()
            }
            return Self.scan(UnsafeRawBufferPointer(bytes))
        }
    }

    static func scan(_ bytes: UnsafeRawBufferPointer) -> Scan {
        var out: [UInt8] = []
        var malformed = 0
        var start = 0
        while start < bytes.count {
            while start < bytes.count, Self.isSpace(bytes[start]) { start += 1 }
            var end = start
            while end < bytes.count, !Self.isSpace(bytes[end]) { end += 1 }
            if end > start, !Self.token(UnsafeRawBufferPointer(rebasing: bytes[start..<end]), into: &out) {
                malformed += 1
            }
            start = end
        }
        return Scan(statsd: String(decoding: out, as: UTF8.self), malformed: malformed)
    }

    @inline(__always)
    static func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A }

    enum Kind {
        case count, measure, sample, unique

        /// The kind a token's part before `#` names, if any.
        init?(_ bytes: UnsafeRawBufferPointer) {
            func equals(_ word: StaticString) -> Bool {
                word.utf8CodeUnitCount == bytes.count
                    && memcmp(word.utf8Start, bytes.baseAddress!, bytes.count) == 0
            }
            if bytes.isEmpty { return nil }
            if equals("count") { self = .count } else if equals("measure") { self = .measure }
            else if equals("sample") { self = .sample } else if equals("unique") { self = .unique }
            else { return nil }
        }
    }

    /// One whitespace-separated token: appends its statsd lines to `out`; false when it starts like a metric but
    /// cannot be read (a token that is no metric at all, such as `issue#42`, is true and adds nothing).
    static func token(_ token: UnsafeRawBufferPointer, into out: inout [UInt8]) -> Bool {
        guard let hash = token.firstIndex(of: UInt8(ascii: "#")),
            let kind = Kind(UnsafeRawBufferPointer(rebasing: token[..<hash]))
        else { return true }
        let rest = UnsafeRawBufferPointer(rebasing: token[(hash + 1)...])
        let equals = rest.firstIndex(of: UInt8(ascii: "="))
        let name = UnsafeRawBufferPointer(rebasing: rest[..<(equals ?? rest.count)])
        let value = equals.map { UnsafeRawBufferPointer(rebasing: rest[($0 + 1)...]) }
        // A name statsd can carry: not empty, and none of the characters that end a statsd name or value.
        guard !name.isEmpty, !name.contains(where: { Self.reserved($0) }) else { return false }
        func line(_ number: Double, _ type: StaticString) {
            out.append(contentsOf: name)
            out.append(UInt8(ascii: ":"))
            out.append(contentsOf: Self.text(number).utf8)
            out.append(UInt8(ascii: "|"))
            out.append(contentsOf: UnsafeRawBufferPointer(start: type.utf8Start, count: type.utf8CodeUnitCount))
            out.append(UInt8(ascii: "\n"))
        }
        switch kind {
        case .count:
            guard let value else {
                line(1, "c")
                return true
            }
            guard let (number, _) = Self.number(value) else { return false }
            line(number, "c")
        case .measure:
            guard let value, let (number, unit) = Self.number(value) else { return false }
            line(number * Self.milliseconds(unit), "ms")
        case .sample:
            guard let value, let (number, _) = Self.number(value) else { return false }
            // statsd reads a signed gauge as a change: a negative value is set through 0.
            if number < 0 { line(0, "g") }
            line(number, "g")
        case .unique:
            guard let value, !value.isEmpty, !value.contains(UInt8(ascii: "|")) else { return false }
            out.append(contentsOf: name)
            out.append(UInt8(ascii: ":"))
            out.append(contentsOf: value)
            out.append(contentsOf: "|s\n".utf8)
        }
        return true
    }

    @inline(__always)
    static func reserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: ":"), UInt8(ascii: "|"), UInt8(ascii: "@"), UInt8(ascii: "#"), UInt8(ascii: "="),
            UInt8(ascii: ","):
            return true
        default: return false
        }
    }

    /// What one `unit` of a measure is in milliseconds: `s`, `us` (`µs`) and `ns` convert; `ms`, no unit, or a unit
    /// that is not time (MB, %) keep the number as written.
    static func milliseconds(_ unit: UnsafeRawBufferPointer) -> Double {
        switch unit.count {
        case 1 where unit[0] == UInt8(ascii: "s"): return 1000
        case 2 where unit[1] == UInt8(ascii: "s"):
            return unit[0] == UInt8(ascii: "u") ? 0.001 : unit[0] == UInt8(ascii: "n") ? 0.000_001 : 1
        case 3 where unit[0] == 0xC2 && unit[1] == 0xB5 && unit[2] == UInt8(ascii: "s"): return 0.001  // µs
        default: return 1
        }
    }

    /// A decimal number (sign, digits, fraction, exponent) and the unit after it (letters or `%`); nil when the text
    /// does not start with a finite number or has anything else after the unit.
    static func number(_ text: UnsafeRawBufferPointer) -> (Double, UnsafeRawBufferPointer)? {
        var end = 0
        func isDigit(_ index: Int) -> Bool { index < text.count && text[index] >= 48 && text[index] <= 57 }
        func digits() -> Int {
            let start = end
            while isDigit(end) { end += 1 }
            return end - start
        }
        if end < text.count, text[end] == UInt8(ascii: "-") || text[end] == UInt8(ascii: "+") { end += 1 }
        var count = digits()
        if end < text.count, text[end] == UInt8(ascii: ".") {
            end += 1
            count += digits()
        }
        guard count > 0 else { return nil }
        if end < text.count, text[end] == UInt8(ascii: "e") || text[end] == UInt8(ascii: "E") {
            let mark = end
            end += 1
            if end < text.count, text[end] == UInt8(ascii: "-") || text[end] == UInt8(ascii: "+") { end += 1 }
            if digits() == 0 { end = mark }
        }
        let unit = UnsafeRawBufferPointer(rebasing: text[end...])
        // Letters (ASCII, or the µ of µs) or %.
        guard unit.allSatisfy({ ($0 | 0x20) >= 97 && ($0 | 0x20) <= 122 || $0 == UInt8(ascii: "%") || $0 >= 0x80 }),
            let number = Double(Substring(decoding: UnsafeRawBufferPointer(rebasing: text[..<end]), as: UTF8.self)),
            number.isFinite
        else { return nil }
        return (number, unit)
    }

    /// A number as statsd reads it: an integer without a fraction, else the shortest round-trip decimal.
    static func text(_ number: Double) -> String {
        if number == number.rounded(), number.magnitude < 1e15 { return String(Int64(number)) }
        return "\(number)"
    }
}
