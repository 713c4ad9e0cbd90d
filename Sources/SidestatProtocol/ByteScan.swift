//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// Byte searches for the parser's hot path: eight bytes at a time (SWAR), with no lookup tables, so that nothing
/// on the ingest path touches a lazily initialized global.
public enum ByteScan {
    /// Whether word reads may go past the end of a buffer within its memory page (they never fault, and what lies
    /// beyond is masked). Off when built for AddressSanitizer (`scripts/fuzz` defines `SIDESTAT_SANITIZE`), which
    /// would report those bytes.
    #if SIDESTAT_SANITIZE
    public static let readsPastEnd = false
    #else
    public static let readsPastEnd = true
    #endif

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
            if end &- index >= 8 || (readsPastEnd && address & 4095 <= 4088) {
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

    /// The 8 bytes at `base + index`, little-endian, with the bytes at `end` and beyond read as 0. Past `end` it
    /// reads a whole word only when the word stays inside one memory page (so it cannot fault).
    @inlinable @inline(__always)
    public static func word(_ base: UnsafeRawPointer, at index: Int, end: Int) -> UInt64 {
        let remaining = end &- index
        if remaining >= 8 { return base.loadUnaligned(fromByteOffset: index, as: UInt64.self) }
        let address = base + index
        if readsPastEnd && UInt(bitPattern: address) & 4095 <= 4088 {
            return address.loadUnaligned(as: UInt64.self) & ((1 &<< UInt64(remaining &* 8)) &- 1)
        }
        var word: UInt64 = 0
        for offset in 0..<remaining {
            word |= UInt64(address.load(fromByteOffset: offset, as: UInt8.self)) &<< UInt64(offset &* 8)
        }
        return word
    }

    // MARK: Key hashing
    // The hash of the aggregation tables, defined here so that the parser can compute it from the words it loads
    // while it looks for a key's end: a multiply chain over the key's 8-byte words (little-endian), then its last
    // partial word (zero-filled) and its length, and one more multiply. The high bits of a product depend on every
    // bit of its operands, so tables take their slot and tag from the high bits; the low bits are weak.

    public static let hashSeed: UInt64 = 0x9E37_79B9_7F4A_7C15

    /// Mixes in one whole 8-byte word of the key.
    @inlinable @inline(__always)
    public static func hashWord(_ h: UInt64, _ word: UInt64) -> UInt64 {
        (h ^ word) &* 0xBF58_476D_1CE4_E5B9
    }

    /// Mixes in the key's last, partial word (0 to 7 bytes, the rest zero) and its length, and finishes. The length
    /// goes into the top byte, which a partial word leaves zero.
    @inlinable @inline(__always)
    public static func hashFinish(_ h: UInt64, tail: UInt64, count: Int) -> UInt64 {
        (h ^ tail ^ (UInt64(truncatingIfNeeded: count) &<< 56)) &* 0x94D0_49BB_1331_11EB
    }

    /// The hash of a whole key.
    @inlinable @inline(__always)
    public static func hashKey(_ key: UnsafeRawBufferPointer) -> UInt64 {
        ScannedKey(key).hash
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

/// A key as the aggregation tables look it up: its bytes, its hash (`ByteScan.hashKey`) and its first 16 bytes
/// as two little-endian words, zero past the key's end, so that most keys compare in two instructions. The parser's
/// hot path fills it in from the words it loads while it looks for the key's end.
public struct ScannedKey {
    public var bytes: UnsafeRawBufferPointer
    public var hash: UInt64
    public var prefix0: UInt64
    public var prefix1: UInt64

    @inlinable @inline(__always)
    public init(bytes: UnsafeRawBufferPointer, hash: UInt64, prefix0: UInt64, prefix1: UInt64) {
        self.bytes = bytes
        self.hash = hash
        self.prefix0 = prefix0
        self.prefix1 = prefix1
    }

    /// Reads `key` whole.
    @inlinable @inline(__always)
    public init(_ key: UnsafeRawBufferPointer) {
        let count = key.count
        var h = ByteScan.hashSeed
        var prefix0: UInt64 = 0
        var prefix1: UInt64 = 0
        var tail: UInt64 = 0
        if let base = key.baseAddress {
            var index = 0
            while index < count {
                let word = ByteScan.word(base, at: index, end: count)
                if index == 0 { prefix0 = word } else if index == 8 { prefix1 = word }
                if count &- index < 8 {
                    tail = word
                    break
                }
                h = ByteScan.hashWord(h, word)
                index &+= 8
            }
        }
        self.init(
            bytes: key, hash: ByteScan.hashFinish(h, tail: tail, count: count), prefix0: prefix0, prefix1: prefix1)
    }
}
