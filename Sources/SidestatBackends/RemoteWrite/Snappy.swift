//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// Snappy's block format (not the framed one), as Remote-Write requires: the uncompressed length as a varint, then
/// literals and back-references. The input is compressed in independent blocks of 64 KiB, each with a hash table of
/// 4-byte sequences (16,384 entries), so that every back-reference is less than 64 KiB away and fits a 2-byte
/// offset. Written from the format's description (google/snappy, `format_description.txt`).
public enum Snappy {
    /// The most bytes `compress` can produce for `count` input bytes (the format's worst case: literals only).
    public static func maximumCompressedLength(_ count: Int) -> Int { 32 + count + count / 6 }

    static let blockSize = 1 << 16
    static let tableBits = 14
    /// A block shorter than this is sent as one literal; the matcher also stops this far before a block's end, so
    /// that its 8-byte loads stay inside the input.
    static let inputMargin = 16 - 1
    static let minimumBlockForMatching = 1 + 1 + 15

    /// `input` compressed.
    public static func compress(_ input: [UInt8]) -> [UInt8] {
        input.withUnsafeBytes { Self.compress($0) }
    }

    public static func compress(_ input: UnsafeRawBufferPointer) -> [UInt8] {
        let capacity = Self.maximumCompressedLength(input.count)
        return [UInt8](unsafeUninitializedCapacity: capacity) { output, count in
            count = Self.compress(input, into: UnsafeMutableRawBufferPointer(output))
        }
    }

    /// Compresses `input` into `output` (at least `maximumCompressedLength(input.count)` bytes); returns the length.
    public static func compress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) -> Int {
        precondition(output.count >= Self.maximumCompressedLength(input.count), "Snappy: output too small")
        var writer = Writer(base: output.baseAddress!)
        var length = UInt64(input.count)
        while length >= 0x80 {
            writer.byte(UInt8(truncatingIfNeeded: length) | 0x80)
            length >>= 7
        }
        writer.byte(UInt8(length))
        guard input.count > 0 else { return writer.position }
        let table = UnsafeMutablePointer<UInt16>.allocate(capacity: 1 << Self.tableBits)
        defer { table.deallocate() }
        var start = 0
        while start < input.count {
            let end = min(start + Self.blockSize, input.count)
            let block = UnsafeRawBufferPointer(rebasing: input[start..<end])
            if block.count < Self.minimumBlockForMatching {
                writer.literal(block.baseAddress!, block.count)
            } else {
                table.initialize(repeating: 0, count: 1 << Self.tableBits)
                Self.compressBlock(block, table: table, writer: &writer)
            }
            start = end
        }
        return writer.position
    }

    @inline(__always)
    static func load32(_ base: UnsafeRawPointer, _ offset: Int) -> UInt32 {
        UInt32(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    @inline(__always)
    static func load64(_ base: UnsafeRawPointer, _ offset: Int) -> UInt64 {
        UInt64(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    @inline(__always)
    static func hash(_ value: UInt32) -> Int {
        Int((value &* 0x1E35_A7BD) >> UInt32(32 - Self.tableBits))
    }

    /// One block: greedy matching through the hash table, looking further apart the longer nothing matches (so
    /// that incompressible data passes quickly).
    static func compressBlock(_ block: UnsafeRawBufferPointer, table: UnsafeMutablePointer<UInt16>, writer: inout Writer) {
        let source = block.baseAddress!
        let count = block.count
        let limit = count - Self.inputMargin
        var nextEmit = 0
        var position = 1
        var nextHash = Self.hash(Self.load32(source, position))
        outer: while true {
            // Find a 4-byte match.
            var skip = 32
            var next = position
            var candidate = 0
            while true {
                position = next
                let step = skip >> 5
                next = position + step
                skip += step
                if next > limit { break outer }
                candidate = Int(table[nextHash])
                table[nextHash] = UInt16(truncatingIfNeeded: position)
                nextHash = Self.hash(Self.load32(source, next))
                if Self.load32(source, position) == Self.load32(source, candidate) { break }
            }
            writer.literal(source + nextEmit, position - nextEmit)
            // Emit the match, and the matches that follow it at once.
            while true {
                let base = position
                var matched = candidate + 4
                position += 4
                while position < count, source.load(fromByteOffset: matched, as: UInt8.self)
                    == source.load(fromByteOffset: position, as: UInt8.self)
                {
                    matched += 1
                    position += 1
                }
                writer.copy(offset: base - candidate, length: position - base)
                nextEmit = position
                if position >= limit { break outer }
                let word = Self.load64(source, position - 1)
                table[Self.hash(UInt32(truncatingIfNeeded: word))] = UInt16(truncatingIfNeeded: position - 1)
                let current = Self.hash(UInt32(truncatingIfNeeded: word >> 8))
                candidate = Int(table[current])
                table[current] = UInt16(truncatingIfNeeded: position)
                if UInt32(truncatingIfNeeded: word >> 8) != Self.load32(source, candidate) {
                    nextHash = Self.hash(UInt32(truncatingIfNeeded: word >> 16))
                    position += 1
                    break
                }
            }
        }
        if nextEmit < count { writer.literal(source + nextEmit, count - nextEmit) }
    }

    /// Appends Snappy elements to a buffer known to be large enough.
    struct Writer {
        let base: UnsafeMutableRawPointer
        var position = 0

        @inline(__always)
        mutating func byte(_ value: UInt8) {
            self.base.storeBytes(of: value, toByteOffset: self.position, as: UInt8.self)
            self.position += 1
        }

        /// A literal of `count` bytes (1 to 65,536: a block at most).
        mutating func literal(_ bytes: UnsafeRawPointer, _ count: Int) {
            guard count > 0 else { return }
            let n = count - 1
            if n < 60 {
                self.byte(UInt8(n << 2))
            } else if n < 1 << 8 {
                self.byte(60 << 2)
                self.byte(UInt8(n))
            } else {
                self.byte(61 << 2)
                self.byte(UInt8(truncatingIfNeeded: n))
                self.byte(UInt8(truncatingIfNeeded: n >> 8))
            }
            (self.base + self.position).copyMemory(from: bytes, byteCount: count)
            self.position += count
        }

        /// A back-reference of `length` bytes (4 or more) from `offset` bytes back (less than 65,536).
        mutating func copy(offset: Int, length: Int) {
            var length = length
            // A copy element holds at most 64 bytes; keep the last piece at 4 or more.
            while length >= 68 {
                self.copy2(offset: offset, length: 64)
                length -= 64
            }
            if length > 64 {
                self.copy2(offset: offset, length: 60)
                length -= 60
            }
            if length >= 12 || offset >= 2048 {
                self.copy2(offset: offset, length: length)
            } else {
                // 1-byte offset form: lengths 4 to 11, offsets below 2,048.
                self.byte(UInt8(truncatingIfNeeded: (offset >> 8) << 5 | (length - 4) << 2 | 1))
                self.byte(UInt8(truncatingIfNeeded: offset))
            }
        }

        @inline(__always)
        mutating func copy2(offset: Int, length: Int) {
            self.byte(UInt8(truncatingIfNeeded: (length - 1) << 2 | 2))
            self.byte(UInt8(truncatingIfNeeded: offset))
            self.byte(UInt8(truncatingIfNeeded: offset >> 8))
        }
    }
}
