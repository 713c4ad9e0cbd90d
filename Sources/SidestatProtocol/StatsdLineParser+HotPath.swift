//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import CSidestat

/// The known-key hot path: lines whose key the sink already holds, read sixteen bytes at a time.
extension StatsdLineParser {
    /// Parses lines from `start` on for as long as `sink` takes them on the hot path, and returns where it stopped:
    /// the start of the first line it did not take, or the end of the datagram. `datagram` must be followed by a
    /// '\n' and 16 more readable bytes (`terminatedCopy` makes such a copy).
    @inlinable
    public func parseKnownKeyLines<Sink: StatsdKnownKeySink>(
        _ datagram: UnsafeRawBufferPointer, from start: Int, into sink: inout Sink
    ) -> Int {
        guard let base = datagram.baseAddress else { return datagram.count }
        let bytes = base.assumingMemoryBound(to: UInt8.self)
        let count = datagram.count
        var start = start
        while start < count {
            let next = self.parseKnownKeyLine(bytes, from: start, to: count, into: &sink)
            if next < 0 { break }
            start = next
        }
        // The last line's end is the '\n' after the datagram.
        return min(start, count)
    }

    /// The hot path for a line whose key the sink already holds: `key:[-]digits|c`, `|ms` or `|g`, optionally
    /// with `|@rate`, ending at `\n` or at the end of the datagram, which is followed by a '\n' and 16 readable
    /// bytes. Finds the `:` sixteen bytes at a time with one vector compare, reads the value once and offers the
    /// line to the sink, which takes it only for a key it holds (and therefore a clean one): no per-byte key check,
    /// no separate search for the line's end and no bounds checks (the '\n' after the datagram ends every scan).
    /// Returns the index after the line, or -1, having reported nothing, for every other line (the general paths
    /// then give the same result).
    @inlinable @inline(__always)
    func parseKnownKeyLine<Sink: StatsdKnownKeySink>(
        _ p: UnsafePointer<UInt8>, from start: Int, to n: Int, into sink: inout Sink
    ) -> Int {
        let raw = UnsafeRawPointer(p)
        var stops = sidestat_colons_newlines16(raw + start)
        var word0 = raw.loadUnaligned(fromByteOffset: start, as: UInt64.self)
        var word1 = raw.loadUnaligned(fromByteOffset: start &+ 8, as: UInt64.self)
        let key: ScannedKey
        let colon: Int
        if stops != 0 {
            // A key of at most 15 bytes: its bytes are those of the two words below the first stop.
            let offset = stops.trailingZeroBitCount
            colon = start &+ offset
            if offset == 0 || p[colon] != UInt8(ascii: ":") { return -1 }
            let inSecond = offset >= 8
            let low = (1 &<< UInt64(truncatingIfNeeded: (offset & 7) &* 8)) &- 1
            let prefix0 = inSecond ? word0 : word0 & low
            let prefix1 = inSecond ? word1 & low : 0
            let hash = inSecond ? ByteScan.hashWord(ByteScan.hashSeed, prefix0) : ByteScan.hashSeed
            key = ScannedKey(
                bytes: UnsafeRawBufferPointer(start: p + start, count: offset),
                hash: ByteScan.hashFinish(hash, tail: inSecond ? prefix1 : prefix0, count: offset),
                prefix0: prefix0, prefix1: prefix1)
        } else {
            // A longer key: its words go into the hash as they are passed; the first two are kept whole.
            let prefix0 = word0
            let prefix1 = word1
            var hash = ByteScan.hashSeed
            var index = start
            repeat {
                hash = ByteScan.hashWord(ByteScan.hashWord(hash, word0), word1)
                index &+= 16
                stops = sidestat_colons_newlines16(raw + index)
                word0 = raw.loadUnaligned(fromByteOffset: index, as: UInt64.self)
                word1 = raw.loadUnaligned(fromByteOffset: index &+ 8, as: UInt64.self)
            } while stops == 0
            let offset = stops.trailingZeroBitCount
            colon = index &+ offset
            if p[colon] != UInt8(ascii: ":") { return -1 }
            let inSecond = offset >= 8
            let low = (1 &<< UInt64(truncatingIfNeeded: (offset & 7) &* 8)) &- 1
            if inSecond { hash = ByteScan.hashWord(hash, word0) }
            key = ScannedKey(
                bytes: UnsafeRawBufferPointer(start: p + start, count: colon &- start),
                hash: ByteScan.hashFinish(hash, tail: (inSecond ? word1 : word0) & low, count: colon &- start),
                prefix0: prefix0, prefix1: prefix1)
        }
        return self.parseKnownKeyValue(p, key: key, colon: colon, to: n, into: &sink)
    }

    /// The hot path's value: `[-]digits|c`, `|ms` or `|g`, optionally with `|@rate`, then the line's end. Reads
    /// past the line only up to its '\n' (the one after the datagram at the latest) and the three bytes after.
    @inlinable @inline(__always)
    func parseKnownKeyValue<Sink: StatsdKnownKeySink>(
        _ p: UnsafePointer<UInt8>, key: ScannedKey, colon: Int, to n: Int, into sink: inout Sink
    ) -> Int {
        var i = colon &+ 1
        let negative = p[i] == UInt8(ascii: "-")
        if negative { i &+= 1 }
        let digitsStart = i
        var integer: Int64 = 0
        while true {
            let digit = p[i] &- UInt8(ascii: "0")
            if digit > 9 { break }
            integer = integer &* 10 &+ Int64(digit)
            i &+= 1
        }
        let digits = i &- digitsStart
        guard digits > 0, digits <= 15 else { return -1 }
        // The type and the line's end in one 4-byte compare: "|c\n", "|g\n" or "|ms\n".
        let tail = UnsafeRawPointer(p).loadUnaligned(fromByteOffset: i, as: UInt32.self)
        let kind: MetricKind
        var inverseRate = 1.0
        if tail & 0xFF_FFFF == 0x0A_637C {
            kind = .counter
            i &+= 3
        } else if tail == 0x0A73_6D7C {
            if negative { return -1 }
            kind = .timer
            i &+= 4
        } else if tail & 0xFF_FFFF == 0x0A_677C {
            kind = .gauge
            i &+= 3
        } else {
            // `|@rate`, or not a hot-path line.
            guard p[i] == UInt8(ascii: "|") else { return -1 }
            i &+= 1
            switch p[i] {
            case UInt8(ascii: "c"): kind = .counter
            case UInt8(ascii: "g"): kind = .gauge
            case UInt8(ascii: "m"):
                guard p[i &+ 1] == UInt8(ascii: "s"), !negative else { return -1 }
                kind = .timer
                i &+= 1
            default: return -1
            }
            i &+= 1
            guard p[i] == UInt8(ascii: "|") else { return -1 }
            var rateEnd = i &+ 1
            while p[rateEnd] != UInt8(ascii: "\n"), p[rateEnd] != UInt8(ascii: ":"), p[rateEnd] != UInt8(ascii: "|") {
                rateEnd &+= 1
            }
            guard p[rateEnd] == UInt8(ascii: "\n"), rateEnd <= n,
                let rate = Self.parseSampleRate(UnsafeRawBufferPointer(start: p + (i &+ 1), count: rateEnd &- i &- 1))
            else { return -1 }
            inverseRate = 1 / rate
            i = rateEnd &+ 1
        }
        let value = negative ? -Double(integer) : Double(integer)
        guard sink.knownKeyLine(kind: kind, key: key, value: value, inverseRate: inverseRate, isDelta: negative) else {
            return -1
        }
        return i
    }

    /// `[-]digits` from `index`: the digits' value (exact up to 18 digits), the sign, how many digits there are, and
    /// the index after them.
    @inlinable @inline(__always)
    static func signedDigits(_ p: UnsafePointer<UInt8>, from index: Int, to n: Int) -> (
        integer: Int64, negative: Bool, digits: Int, end: Int
    ) {
        var i = index
        var negative = false
        if i < n, p[i] == UInt8(ascii: "-") {
            negative = true
            i &+= 1
        }
        let digitsStart = i
        var integer: Int64 = 0
        while i < n {
            let digit = p[i] &- UInt8(ascii: "0")
            if digit > 9 { break }
            integer = integer &* 10 &+ Int64(digit)
            i &+= 1
        }
        return (integer, negative, i &- digitsStart, i)
    }
}
