//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Numbers as JavaScript reads and prints them, because Etsy statsd's wire output is `String(number)`
/// and its input is `Number(string)`. Every value Sidestat puts on a Graphite line goes through `append`.
public enum JSNumber {
    // MARK: - Printing

    /// Appends `value` as JavaScript's `Number.prototype.toString()` prints it (ECMA-262 Number::toString):
    /// integers without `.0`, the shortest digits that round-trip, exponent form below 1e-6 and from 1e21 on,
    /// and `-0` as `0`.
    @inlinable
    public static func append(_ value: Double, to out: inout [UInt8]) {
        if value == value.rounded(.towardZero), abs(value) < 9_007_199_254_740_992 {
            // Exact integers: the common case for counters, counts and most gauges.
            appendInteger(Int64(value), to: &out)
            return
        }
        appendSlow(value, to: &out)
    }

    /// The JavaScript string of `value`.
    public static func string(_ value: Double) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(24)
        append(value, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Writes `value` as `appendInteger` does, at `out` (room for 20 bytes), and returns the length.
    @inlinable @inline(__always)
    public static func writeInteger(_ value: Int64, to out: UnsafeMutablePointer<UInt8>) -> Int {
        var magnitude = value.magnitude
        var length = 0
        if value < 0 {
            out[0] = UInt8(ascii: "-")
            length = 1
        }
        var digits = 1
        var scale: UInt64 = 10
        while digits < 20, magnitude >= scale {
            digits &+= 1
            scale = scale &* 10
        }
        var index = length &+ digits
        length = index
        repeat {
            index &-= 1
            out[index] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: magnitude % 10)
            magnitude /= 10
        } while magnitude > 0
        return length
    }

    @inlinable
    public static func appendInteger(_ value: Int64, to out: inout [UInt8]) {
        if value == 0 {
            out.append(UInt8(ascii: "0"))
            return
        }
        var magnitude = value.magnitude
        if value < 0 { out.append(UInt8(ascii: "-")) }
        // At most 20 digits; write them backwards into a small fixed buffer.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var index = 20
            while magnitude > 0 {
                index -= 1
                digits[index] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: magnitude % 10)
                magnitude /= 10
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: digits[index..<20]))
        }
    }

    @usableFromInline
    static func appendSlow(_ value: Double, to out: inout [UInt8]) {
        if value.isNaN {
            out.append(contentsOf: "NaN".utf8)
            return
        }
        if value.isInfinite {
            out.append(contentsOf: (value < 0 ? "-Infinity" : "Infinity").utf8)
            return
        }
        if value < 0 { out.append(UInt8(ascii: "-")) }
        // Swift's description holds the shortest round-trip digits; only the layout differs from JavaScript's.
        // (A description of up to 15 bytes is stored inline: no allocation.)
        let text = abs(value).description
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32) { digits in
            var digitCount = 0
            var pointPosition: Int? = nil  // digits seen before the '.'
            var exponent = 0
            var exponentSign = 1
            var inExponent = false
            for byte in text.utf8 {
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"):
                    if inExponent {
                        exponent = exponent * 10 + Int(byte - UInt8(ascii: "0"))
                    } else if digitCount < 32 {
                        digits[digitCount] = byte
                        digitCount += 1
                    }
                case UInt8(ascii: "."):
                    pointPosition = digitCount
                case UInt8(ascii: "e"), UInt8(ascii: "E"):
                    inExponent = true
                case UInt8(ascii: "-"):
                    exponentSign = -1
                default:
                    break
                }
            }
            // value = 0.d1d2...dk × 10^n, with n counted from the start of `digits`.
            var n = (pointPosition ?? digitCount) + exponentSign * exponent
            // Strip leading zeros (each one moves the point) and trailing zeros.
            var start = 0
            while start < digitCount - 1, digits[start] == UInt8(ascii: "0") {
                start += 1
                n -= 1
            }
            var end = digitCount
            while end > start + 1, digits[end - 1] == UInt8(ascii: "0") { end -= 1 }
            let significant = UnsafeBufferPointer(rebasing: digits[start..<end])
            let k = significant.count
            if k <= n, n <= 21 {
                out.append(contentsOf: significant)
                for _ in 0..<(n - k) { out.append(UInt8(ascii: "0")) }
            } else if 0 < n, n <= 21 {
                out.append(contentsOf: UnsafeBufferPointer(rebasing: significant[0..<n]))
                out.append(UInt8(ascii: "."))
                out.append(contentsOf: UnsafeBufferPointer(rebasing: significant[n...]))
            } else if -6 < n, n <= 0 {
                out.append(UInt8(ascii: "0"))
                out.append(UInt8(ascii: "."))
                for _ in 0..<(-n) { out.append(UInt8(ascii: "0")) }
                out.append(contentsOf: significant)
            } else {
                let e = n - 1
                out.append(significant[0])
                if k > 1 {
                    out.append(UInt8(ascii: "."))
                    out.append(contentsOf: UnsafeBufferPointer(rebasing: significant[1...]))
                }
                out.append(UInt8(ascii: "e"))
                out.append(e < 0 ? UInt8(ascii: "-") : UInt8(ascii: "+"))
                appendInteger(Int64(abs(e)), to: &out)
            }
        }
    }

    // MARK: - Reading

    /// Reads `bytes` as JavaScript's `Number(string)` does: surrounding whitespace is ignored, an empty or
    /// all-white string is 0, and `0x`, `0o`, `0b`, exponents, `.5`, `5.` and `Infinity` are accepted.
    /// Returns nil where JavaScript would give NaN.
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> Double? {
        let trimmed = JSWhitespace.trim(bytes)
        if trimmed.isEmpty { return 0 }
        let b = UnsafeRawBufferPointer(rebasing: bytes[trimmed])
        if b.count > 2, b[0] == UInt8(ascii: "0") {
            switch b[1] {
            case UInt8(ascii: "x"), UInt8(ascii: "X"): return parseRadix(b, from: 2, radix: 16)
            case UInt8(ascii: "o"), UInt8(ascii: "O"): return parseRadix(b, from: 2, radix: 8)
            case UInt8(ascii: "b"), UInt8(ascii: "B"): return parseRadix(b, from: 2, radix: 2)
            default: break
            }
        }
        var index = 0
        var negative = false
        if b[0] == UInt8(ascii: "+") || b[0] == UInt8(ascii: "-") {
            negative = b[0] == UInt8(ascii: "-")
            index = 1
        }
        if b.count - index == 8, matchesInfinity(b, from: index) {
            return negative ? -.infinity : .infinity
        }
        guard let magnitude = parseUnsignedDecimal(UnsafeRawBufferPointer(rebasing: b[index...])) else {
            return nil
        }
        return negative ? -magnitude : magnitude
    }

    private static func matchesInfinity(_ b: UnsafeRawBufferPointer, from index: Int) -> Bool {
        let word: StaticString = "Infinity"
        return word.withUTF8Buffer { w in
            for i in 0..<8 where b[index + i] != w[i] { return false }
            return true
        }
    }

    private static func parseRadix(_ b: UnsafeRawBufferPointer, from start: Int, radix: UInt64) -> Double? {
        var exact: UInt64 = 0
        var approximate: Double = 0
        var overflowed = false
        for index in start..<b.count {
            let byte = b[index]
            let digit: UInt64
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt64(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt64(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt64(byte - UInt8(ascii: "A") + 10)
            default: return nil
            }
            if digit >= radix { return nil }
            if !overflowed {
                let (product, o1) = exact.multipliedReportingOverflow(by: radix)
                let (sum, o2) = product.addingReportingOverflow(digit)
                if o1 || o2 {
                    overflowed = true
                    approximate = Double(exact) * Double(radix) + Double(digit)
                } else {
                    exact = sum
                }
            } else {
                approximate = approximate * Double(radix) + Double(digit)
            }
        }
        return overflowed ? approximate : Double(exact)
    }

    /// An unsigned decimal literal: `digits[.digits][e[+-]digits]` or `.digits[e...]`, correctly rounded.
    /// Returns nil for anything else (no whitespace, sign, hex or `Infinity`).
    public static func parseUnsignedDecimal(_ b: UnsafeRawBufferPointer) -> Double? {
        var index = 0
        let count = b.count
        var mantissa: UInt64 = 0
        var significantDigits = 0
        var droppedDigits = 0  // integer digits beyond 19 significant ones
        var fractionDigits = 0
        var sawDigit = false
        var inexact = false
        /// A run of digits into the mantissa: 19 significant ones at most (leading zeros do not count); past them an
        /// integer digit still scales the value (`droppedDigits`) and a fraction digit only makes it inexact.
        @inline(__always) func readDigits(fraction: Bool) {
            while index < count, b[index] &- UInt8(ascii: "0") < 10 {
                sawDigit = true
                let digit = UInt64(b[index] &- UInt8(ascii: "0"))
                if significantDigits < 19 {
                    if mantissa != 0 || digit != 0 {
                        mantissa = mantissa &* 10 &+ digit
                        significantDigits += 1
                    }
                    if fraction { fractionDigits += 1 }
                } else {
                    if !fraction { droppedDigits += 1 }
                    if digit != 0 { inexact = true }
                }
                index += 1
            }
        }
        readDigits(fraction: false)
        if index < count, b[index] == UInt8(ascii: ".") {
            index += 1
            readDigits(fraction: true)
        }
        guard sawDigit else { return nil }
        var exponent = 0
        if index < count, b[index] == UInt8(ascii: "e") || b[index] == UInt8(ascii: "E") {
            index += 1
            var exponentNegative = false
            if index < count, b[index] == UInt8(ascii: "+") || b[index] == UInt8(ascii: "-") {
                exponentNegative = b[index] == UInt8(ascii: "-")
                index += 1
            }
            var exponentDigits = 0
            while index < count, b[index] &- UInt8(ascii: "0") < 10 {
                if exponent < 100_000 { exponent = exponent * 10 + Int(b[index] &- UInt8(ascii: "0")) }
                exponentDigits += 1
                index += 1
            }
            guard exponentDigits > 0 else { return nil }
            if exponentNegative { exponent = -exponent }
        }
        guard index == count else { return nil }
        if mantissa == 0 && !inexact { return 0 }
        let decimalExponent = exponent - fractionDigits + droppedDigits
        // Clinger's fast path: both operands exact, so one IEEE operation rounds correctly.
        if !inexact, mantissa < (1 << 53), decimalExponent >= -22, decimalExponent <= 22 {
            let m = Double(mantissa)
            return decimalExponent >= 0
                ? m * ByteScan.powerOfTen(decimalExponent) : m / ByteScan.powerOfTen(-decimalExponent)
        }
        return strtodFallback(b)
    }

    private static func strtodFallback(_ b: UnsafeRawBufferPointer) -> Double? {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: b.count + 1) { buffer in
            for index in 0..<b.count { buffer[index] = CChar(bitPattern: b[index]) }
            buffer[b.count] = 0
            return strtod(buffer.baseAddress!, nil)
        }
    }
}

/// JavaScript's white space and line terminators (`\s` in a regular expression, and what `trim()` removes),
/// read from UTF-8 bytes.
public enum JSWhitespace {
    /// The number of bytes of the white-space character that starts at `index`, or 0 if there is none.
    @inlinable
    public static func length(_ b: UnsafeRawBufferPointer, at index: Int) -> Int {
        let byte = b[index]
        if byte < 0x80 {
            return (byte == 0x20 || (byte >= 0x09 && byte <= 0x0D)) ? 1 : 0
        }
        return multibyteLength(b, at: index)
    }

    @usableFromInline
    static func multibyteLength(_ b: UnsafeRawBufferPointer, at index: Int) -> Int {
        let remaining = b.count - index
        let b0 = b[index]
        if b0 == 0xC2, remaining >= 2, b[index + 1] == 0xA0 { return 2 }  // U+00A0
        guard remaining >= 3 else { return 0 }
        let b1 = b[index + 1]
        let b2 = b[index + 2]
        switch (b0, b1) {
        case (0xE1, 0x9A): return b2 == 0x80 ? 3 : 0  // U+1680
        case (0xE2, 0x80):  // U+2000...U+200A, U+2028, U+2029, U+202F
            return (b2 >= 0x80 && b2 <= 0x8A) || b2 == 0xA8 || b2 == 0xA9 || b2 == 0xAF ? 3 : 0
        case (0xE2, 0x81): return b2 == 0x9F ? 3 : 0  // U+205F
        case (0xE3, 0x80): return b2 == 0x80 ? 3 : 0  // U+3000
        case (0xEF, 0xBB): return b2 == 0xBF ? 3 : 0  // U+FEFF
        default: return 0
        }
    }

    /// The range of `b` without leading and trailing white space.
    public static func trim(_ b: UnsafeRawBufferPointer) -> Range<Int> {
        var start = 0
        while start < b.count {
            let length = length(b, at: start)
            if length == 0 { break }
            start += length
        }
        var end = b.count
        while end > start {
            // ASCII first; multibyte white space ends in 0x80...0xBF.
            let last = b[end - 1]
            if last < 0x80 {
                if last == 0x20 || (last >= 0x09 && last <= 0x0D) {
                    end -= 1
                    continue
                }
                break
            }
            if end - 2 >= start, length(b, at: end - 2) == 2 {
                end -= 2
                continue
            }
            if end - 3 >= start, length(b, at: end - 3) == 3 {
                end -= 3
                continue
            }
            break
        }
        return start..<end
    }
}
