//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// Byte searches for the parser's hot path: eight bytes at a time (SWAR), with no lookup tables, so that nothing
/// on the ingest path touches a lazily initialized global.
public enum ByteScan {
    /// The index of the first `byte` in `bytes[start..<end]`, or `end`.
    @inlinable @inline(__always)
    public static func firstIndex(of byte: UInt8, in bytes: UnsafeRawBufferPointer, from start: Int, to end: Int) -> Int {
        guard let base = bytes.baseAddress else { return end }
        return firstIndex(of: byte, base: base, from: start, to: end)
    }

    /// The index of the first `byte` in `base[start..<end]`, or `end`. Reads whole 8-byte words, also past
    /// `end` when the word stays inside the same memory page (so it can never fault), and masks what lies beyond.
    @inlinable @inline(__always)
    public static func firstIndex(of byte: UInt8, base: UnsafeRawPointer, from start: Int, to end: Int) -> Int {
        let pattern = UInt64(byte) &* 0x0101_0101_0101_0101
        var index = start
        while index < end {
            let address = UInt(bitPattern: base + index)
            if address & 4095 <= 4088 {
                let word = base.loadUnaligned(fromByteOffset: index, as: UInt64.self) ^ pattern
                // A zero byte in `word` is a match; the lowest flagged byte is exact.
                var found = (word &- 0x0101_0101_0101_0101) & ~word & 0x8080_8080_8080_8080
                let remaining = end &- index
                if remaining < 8 { found &= (1 &<< UInt64(remaining &* 8)) &- 1 }
                if found != 0 { return index &+ found.trailingZeroBitCount / 8 }
                index &+= 8
            } else {
                if base.load(fromByteOffset: index, as: UInt8.self) == byte { return index }
                index &+= 1
            }
        }
        return end
    }

    /// The end of the line that starts at `start` (the index of the next `\n`, or `end`) and whether the line holds
    /// a `#` (so DogStatsD tags are possible). One pass, eight bytes at a time.
    @inlinable @inline(__always)
    public static func lineEnd(base: UnsafeRawPointer, from start: Int, to end: Int) -> (end: Int, hasHash: Bool) {
        let newlines: UInt64 = 0x0A0A_0A0A_0A0A_0A0A
        let hashes: UInt64 = 0x2323_2323_2323_2323
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        var index = start
        var hasHash = false
        while index &+ 8 <= end {
            let word = base.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            let n = word ^ newlines
            let h = word ^ hashes
            let newline = (n &- ones) & ~n & highs
            let hash = (h &- ones) & ~h & highs
            if newline != 0 {
                let position = newline.trailingZeroBitCount / 8
                // The lowest flagged byte is always a true match, so a flag below the newline is a real '#'.
                if hash & ((1 &<< UInt64(position &* 8)) &- 1) != 0 { hasHash = true }
                return (index &+ position, hasHash)
            }
            if hash != 0 { hasHash = true }
            index &+= 8
        }
        while index < end {
            let byte = base.load(fromByteOffset: index, as: UInt8.self)
            if byte == 0x0A { return (index, hasHash) }
            if byte == 0x23 { hasHash = true }
            index &+= 1
        }
        return (end, hasHash)
    }

    /// True when `byte` is in `[a-zA-Z0-9_.;=-]`, the characters statsd keeps in a key.
    @inlinable @inline(__always)
    public static func isKeyByte(_ byte: UInt8) -> Bool {
        // Bit n of `low` is byte n (0...63), of `high` byte n + 64: '-' '.' '0'-'9' ';' '=' and 'A'-'Z' '_' 'a'-'z'.
        let low: UInt64 = 0x2BFF_6000_0000_0000
        let high: UInt64 = 0x07FF_FFFE_87FF_FFFE
        if byte < 64 { return (low >> UInt64(byte)) & 1 == 1 }
        if byte < 128 { return (high >> UInt64(byte - 64)) & 1 == 1 }
        return false
    }

    /// 10^exponent for 0...22, where every power is exact in a Double.
    @inlinable @inline(__always)
    public static func powerOfTen(_ exponent: Int) -> Double {
        switch exponent {
        case 0: return 1
        case 1: return 1e1
        case 2: return 1e2
        case 3: return 1e3
        case 4: return 1e4
        case 5: return 1e5
        case 6: return 1e6
        case 7: return 1e7
        case 8: return 1e8
        case 9: return 1e9
        case 10: return 1e10
        case 11: return 1e11
        case 12: return 1e12
        case 13: return 1e13
        case 14: return 1e14
        case 15: return 1e15
        case 16: return 1e16
        case 17: return 1e17
        case 18: return 1e18
        case 19: return 1e19
        case 20: return 1e20
        case 21: return 1e21
        default: return 1e22
        }
    }

    /// The common statsd value: an optional `-` and at most 15 digits, read exactly. Nil for anything else.
    @inlinable @inline(__always)
    public static func simpleInteger(_ bytes: UnsafeRawBufferPointer) -> Double? {
        var index = 0
        let count = bytes.count
        var negative = false
        if count > 0, bytes[0] == UInt8(ascii: "-") {
            negative = true
            index = 1
        }
        guard count > index, count - index <= 15 else { return nil }
        var value: Int64 = 0
        while index < count {
            let digit = bytes[index] &- UInt8(ascii: "0")
            if digit > 9 { return nil }
            value = value &* 10 &+ Int64(digit)
            index += 1
        }
        return negative ? -Double(value) : Double(value)
    }
}
