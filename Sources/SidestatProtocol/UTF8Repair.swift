//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// UTF-8 decoding with replacement, as node decodes a datagram: each invalid sequence becomes U+FFFD.
public enum UTF8Repair {
    @inlinable
    public static func isASCII(_ bytes: UnsafeRawBufferPointer) -> Bool {
        for byte in bytes where byte >= 0x80 { return false }
        return true
    }

    /// Writes the repaired bytes into `output` (room for 3 × input is enough) and returns their length: valid
    /// sequences are copied as they are (ASCII eight bytes at a time), and each maximal invalid subpart becomes
    /// U+FFFD, as Unicode recommends and as node (WHATWG) and Swift's `String(decoding:as:)` decode.
    public static func repair(_ bytes: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) -> Int {
        let count = bytes.count
        guard count > 0, let input = bytes.baseAddress, let out = output.baseAddress else { return 0 }
        let capacity = output.count
        var index = 0
        var length = 0
        while index < count {
            // ASCII runs, a word at a time.
            while index + 8 <= count, length + 8 <= capacity,
                input.loadUnaligned(fromByteOffset: index, as: UInt64.self) & 0x8080_8080_8080_8080 == 0
            {
                out.storeBytes(
                    of: input.loadUnaligned(fromByteOffset: index, as: UInt64.self), toByteOffset: length,
                    as: UInt64.self)
                index += 8
                length += 8
            }
            guard index < count else { break }
            let lead = input.load(fromByteOffset: index, as: UInt8.self)
            if lead < 0x80 {
                guard length < capacity else { break }
                out.storeBytes(of: lead, toByteOffset: length, as: UInt8.self)
                index += 1
                length += 1
                continue
            }
            let valid = validSequenceLength(input, at: index, count: count)
            if valid.isComplete {
                guard length + valid.length <= capacity else { break }
                out.advanced(by: length).copyMemory(from: input.advanced(by: index), byteCount: valid.length)
                length += valid.length
            } else {
                guard length + 3 <= capacity else { break }
                out.storeBytes(of: 0xEF, toByteOffset: length, as: UInt8.self)
                out.storeBytes(of: 0xBF, toByteOffset: length + 1, as: UInt8.self)
                out.storeBytes(of: 0xBD, toByteOffset: length + 2, as: UInt8.self)
                length += 3
            }
            index += valid.length
        }
        return length
    }

    /// The multi-byte sequence that starts at `index` (its lead byte is not ASCII): its length when it is complete
    /// and valid, otherwise the length of its maximal invalid subpart (at least 1), which becomes one U+FFFD.
    @usableFromInline
    static func validSequenceLength(_ input: UnsafeRawPointer, at index: Int, count: Int) -> (
        length: Int, isComplete: Bool
    ) {
        let lead = input.load(fromByteOffset: index, as: UInt8.self)
        let needed: Int
        var low: UInt8 = 0x80
        var high: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: needed = 1
        case 0xE0: needed = 2; low = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: needed = 2
        case 0xED: needed = 2; high = 0x9F
        case 0xF0: needed = 3; low = 0x90
        case 0xF1...0xF3: needed = 3
        case 0xF4: needed = 3; high = 0x8F
        default: return (1, false)
        }
        var taken = 1
        while taken <= needed {
            guard index + taken < count else { return (taken, false) }
            let byte = input.load(fromByteOffset: index + taken, as: UInt8.self)
            guard byte >= low, byte <= high else { return (taken, false) }
            low = 0x80
            high = 0xBF
            taken += 1
        }
        return (taken, true)
    }
}
