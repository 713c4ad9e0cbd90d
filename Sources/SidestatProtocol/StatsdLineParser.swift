//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import CSidestat

/// The four kinds of aggregate statsd keeps. Every type other than `ms`, `g` and `s` is a counter,
/// as in Etsy statsd (`h`, `x`, `C` and the empty type included).
public enum MetricKind: UInt8, Sendable, Hashable, CaseIterable {
    case counter = 0
    case timer = 1
    case gauge = 2
    case set = 3
}

/// Takes the lines of the parser's hot path: a whole line `key:value|type[|@rate]` with one counter, timer or
/// gauge value and a key whose bytes have not been checked. The sink records it (as `StatsdSampleSink.lineSeen` and
/// the value's call would) only when it already holds `key` for that kind, a key it holds being clean, and says
/// whether it did; when it did not, the parser takes the line the general way. `inverseRate` is statsd's
/// `1 / sampleRate`, computed only for a line that has a rate (1 otherwise), so the common line costs no division.
public protocol StatsdKnownKeySink {
    mutating func knownKeyLine(
        kind: MetricKind, key: ScannedKey, value: Double, inverseRate: Double, isDelta: Bool
    ) -> Bool
}

/// Receives what the parser finds in a datagram. All buffers point into the datagram or the parser's scratch
/// memory and are valid only during the call.
public protocol StatsdSampleSink: StatsdKnownKeySink {
    /// A non-empty line was seen (`metrics_received`); `key` is the sanitized key with its tags.
    mutating func lineSeen(_ line: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer)
    mutating func counter(key: UnsafeRawBufferPointer, value: Double, sampleRate: Double)
    mutating func timer(key: UnsafeRawBufferPointer, value: Double, sampleRate: Double)
    /// A DogStatsD distribution sample (`|d`): a timer's sample that is not a duration, so it may be negative.
    mutating func distribution(key: UnsafeRawBufferPointer, value: Double, sampleRate: Double)
    /// `isDelta`: the value was written with a leading `+` or `-`.
    mutating func gauge(key: UnsafeRawBufferPointer, value: Double, isDelta: Bool)
    /// `member` is the raw member (an empty member arrives as `0`).
    mutating func set(key: UnsafeRawBufferPointer, member: UnsafeRawBufferPointer)
    /// One bad value (`bad_lines_seen`): `fields` is the value's text, `line` the whole line.
    mutating func badValue(line: UnsafeRawBufferPointer, fields: UnsafeRawBufferPointer)
    /// A well-formed DogStatsD event (`_e{...}`) or service check (`_sc|...`): not a metric, not a bad line.
    mutating func dogStatsDEvent(_ line: UnsafeRawBufferPointer, isServiceCheck: Bool)
    /// The line's DogStatsD timestamp (`|T<unix seconds>`), reported after `lineSeen` and before its values.
    mutating func pointTimestamp(_ unixSeconds: Int)
}

extension StatsdSampleSink {
    /// By default a distribution's sample is a timer's.
    @inlinable
    public mutating func distribution(key: UnsafeRawBufferPointer, value: Double, sampleRate: Double) {
        self.timer(key: key, value: value, sampleRate: sampleRate)
    }

    /// By default a sample sink ignores events and service checks.
    @inlinable
    public mutating func dogStatsDEvent(_ line: UnsafeRawBufferPointer, isServiceCheck: Bool) {}

    /// By default a sample sink ignores timestamps.
    @inlinable
    public mutating func pointTimestamp(_ unixSeconds: Int) {}

    /// By default a sample sink takes no line on the hot path.
    @inlinable @inline(__always)
    public mutating func knownKeyLine(
        kind: MetricKind, key: ScannedKey, value: Double, inverseRate: Double, isDelta: Bool
    ) -> Bool {
        false
    }
}

/// The statsd line protocol as Etsy statsd reads it, with DogStatsD tags, over raw bytes.
///
/// `key:value|type[|@rate][|#tag,tag]`, several `:value|type` groups per line, several lines per datagram.
/// No `String` is built per line: keys that need no sanitizing are passed straight from the datagram,
/// others are rewritten into scratch memory owned by the parser, allocated once.
/// Not thread-safe: each ingest shard owns one parser and uses it only under the shard's lock. It is marked
/// `@unchecked Sendable` so that it can live inside that lock.
public final class StatsdLineParser: @unchecked Sendable {
    /// Etsy statsd's `keyNameSanitize`.
    public let sanitizeKeys: Bool

    @usableFromInline let keyScratch: UnsafeMutableRawBufferPointer
    @usableFromInline let memberScratch: UnsafeMutableRawBufferPointer
    @usableFromInline let constants: UnsafeMutableRawBufferPointer
    /// The hot path's copy of a datagram: its bytes, a '\n' and 16 more readable bytes (`terminatedCopy`).
    @usableFromInline let copyBuffer: UnsafeMutableRawBufferPointer
    /// 256 flags: 1 for the bytes statsd keeps in a key (a table the parser owns: no global on the hot path).
    @usableFromInline let keyBytes: UnsafeMutablePointer<UInt8>

    /// The longest key Sidestat builds (key plus tags), in bytes; a datagram is at most 65,507 bytes.
    public static let maximumKeyLength = 3 * 65_536
    /// The longest datagram or chunk `terminatedCopy` takes (longer TCP chunks are parsed the general way).
    public static let maximumCopyLength = 65_536

    public init(sanitizeKeys: Bool = true) {
        self.sanitizeKeys = sanitizeKeys
        self.keyScratch = .allocate(byteCount: Self.maximumKeyLength, alignment: 8)
        self.memberScratch = .allocate(byteCount: Self.maximumKeyLength, alignment: 8)
        self.constants = .allocate(byteCount: 2, alignment: 1)
        self.constants[0] = UInt8(ascii: "1")
        self.constants[1] = UInt8(ascii: "0")
        self.copyBuffer = .allocate(byteCount: Self.maximumCopyLength + 32, alignment: 16)
        self.copyBuffer.initializeMemory(as: UInt8.self, repeating: 0)
        self.keyBytes = .allocate(capacity: 256)
        for byte in 0..<256 { self.keyBytes[byte] = ByteScan.isKeyByte(UInt8(byte)) ? 1 : 0 }
    }

    deinit {
        self.keyScratch.deallocate()
        self.memberScratch.deallocate()
        self.constants.deallocate()
        self.copyBuffer.deallocate()
        self.keyBytes.deallocate()
    }

    /// Copies `datagram` into the parser's buffer, followed by a '\n' and 16 more readable bytes, as the hot path
    /// (`parseKnownKeyLines`) needs: it then reads whole 16-byte blocks and needs no bounds check within a line.
    /// The copy is valid until the next call. Returns nil for an empty datagram or one longer than
    /// `maximumCopyLength`, which are parsed the general way.
    @inlinable
    public func terminatedCopy(_ datagram: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        let count = datagram.count
        guard count > 0, count <= Self.maximumCopyLength, let source = datagram.baseAddress,
            let target = self.copyBuffer.baseAddress
        else { return nil }
        target.copyMemory(from: source, byteCount: count)
        target.storeBytes(of: UInt8(ascii: "\n"), toByteOffset: count, as: UInt8.self)
        return UnsafeRawBufferPointer(start: target, count: count)
    }

    /// Parses one datagram (or one chunk of complete TCP lines) and reports every line and value to `sink`.
    @inlinable
    public func parse<Sink: StatsdSampleSink>(_ datagram: UnsafeRawBufferPointer, into sink: inout Sink) {
        guard let base = datagram.baseAddress else { return }
        var start = 0
        let count = datagram.count
        if let copy = self.terminatedCopy(datagram) {
            while start < count {
                let next = self.parseKnownKeyLines(copy, from: start, into: &sink)
                if next < count { start = self.parseLine(copy, at: next, into: &sink) } else { start = next }
            }
        } else {
            while start < count { start = self.parseAnyLine(base, from: start, to: count, into: &sink) }
        }
    }

    /// Parses the one line that starts at `start` the general way and returns the index after it.
    @inlinable
    public func parseLine<Sink: StatsdSampleSink>(
        _ datagram: UnsafeRawBufferPointer, at start: Int, into sink: inout Sink
    ) -> Int {
        guard let base = datagram.baseAddress else { return datagram.count }
        return self.parseAnyLine(base, from: start, to: datagram.count, into: &sink)
    }

    /// Parses the line that starts at `start` the general way and returns the index after it. Kept out of line,
    /// so that the loop around the hot path stays small.
    @inlinable @inline(never)
    func parseAnyLine<Sink: StatsdSampleSink>(
        _ base: UnsafeRawPointer, from start: Int, to count: Int, into sink: inout Sink
    ) -> Int {
        let (end, hasHash) = ByteScan.lineEnd(base: base, from: start, to: count)
        if end > start {
            let line = UnsafeRawBufferPointer(start: base + start, count: end &- start)
            if hasHash || !self.parseCommonLine(line, into: &sink) {
                self.parseLine(line, into: &sink)
            }
        }
        return end &+ 1
    }

    /// The fast path for the lines clients send nearly always: a clean key, no tags, and values of the form
    /// `[-]digits|c`, `|ms` or `|g`, optionally with `|@rate`. It reads the line once and gives exactly what the
    /// general path gives; a value it does not recognise is handed to the general value parser, and a line it
    /// cannot take whole (unclean key, tags, a trailing `\r`, a DogStatsD event) returns false before reporting
    /// anything.
    @inlinable @inline(__always)
    func parseCommonLine<Sink: StatsdSampleSink>(_ line: UnsafeRawBufferPointer, into sink: inout Sink) -> Bool {
        let n = line.count
        let p = line.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let last = p[n - 1]
        if last == UInt8(ascii: "\r") || last == UInt8(ascii: " ") || p[0] == UInt8(ascii: "_") { return false }
        // The caller has checked that the line holds no '#' (no tags).
        let table = self.keyBytes
        var clean: UInt8 = 1
        var colon = 0
        while colon < n {
            let byte = p[colon]
            if byte == UInt8(ascii: ":") { break }
            clean &= table[Int(byte)]
            colon &+= 1
        }
        if colon == n || clean == 0 { return false }
        let key = UnsafeRawBufferPointer(start: p, count: colon)
        sink.lineSeen(line, key: key)
        var start = colon &+ 1
        while true {
            let (integer, negative, digits, index) = Self.signedDigits(p, from: start, to: n)
            var end = n
            fast: do {
                guard digits > 0, digits <= 15, index < n, p[index] == UInt8(ascii: "|") else { break fast }
                let type = index &+ 1
                guard type < n else { break fast }
                var kind = MetricKind.set
                var typeEnd = type &+ 1
                switch p[type] {
                case UInt8(ascii: "c"): kind = .counter
                case UInt8(ascii: "g"): kind = .gauge
                case UInt8(ascii: "m"):
                    guard typeEnd < n, p[typeEnd] == UInt8(ascii: "s"), !negative else { break fast }
                    kind = .timer
                    typeEnd &+= 1
                default: break fast
                }
                var sampleRate = 1.0
                end = typeEnd
                if typeEnd < n, p[typeEnd] == UInt8(ascii: "|"), Self.isDogStatsDExtension(line, at: typeEnd) {
                    end = n  // `|T...`, `|c:...`, `|e:...` end the line's values
                    if let seconds = Self.dogStatsDTimestamp(line, from: typeEnd) { sink.pointTimestamp(seconds) }
                } else if typeEnd < n, p[typeEnd] == UInt8(ascii: "|") {
                    var rateEnd = typeEnd &+ 1
                    while rateEnd < n, p[rateEnd] != UInt8(ascii: ":"), p[rateEnd] != UInt8(ascii: "|") { rateEnd &+= 1 }
                    guard rateEnd == n || p[rateEnd] == UInt8(ascii: ":"),
                        let rate = Self.parseSampleRate(
                            UnsafeRawBufferPointer(start: p + (typeEnd &+ 1), count: rateEnd &- typeEnd &- 1))
                    else { break fast }
                    sampleRate = rate
                    end = rateEnd
                }
                guard end == n || p[end] == UInt8(ascii: ":") else { break fast }
                let value = negative ? -Double(integer) : Double(integer)
                switch kind {
                case .counter: sink.counter(key: key, value: value, sampleRate: sampleRate)
                case .timer: sink.timer(key: key, value: value, sampleRate: sampleRate)
                default: sink.gauge(key: key, value: value, isDelta: negative)
                }
                if end >= n { return true }
                start = end &+ 1
                continue
            }
            // Anything else in this value: the general value parser, on the same bytes (up to DogStatsD's trailing
            // fields, if any).
            let bar = ByteScan.firstIndex(of: UInt8(ascii: "|"), base: UnsafeRawPointer(p), from: start, to: n)
            let bodyEnd = bar < n ? Self.dogStatsDExtensionStart(line, from: bar, to: n) : n
            if bodyEnd < n, let seconds = Self.dogStatsDTimestamp(line, from: bodyEnd) { sink.pointTimestamp(seconds) }
            end = ByteScan.firstIndex(of: UInt8(ascii: ":"), base: UnsafeRawPointer(p), from: start, to: bodyEnd)
            self.parseValue(
                UnsafeRawBufferPointer(start: p + start, count: end &- start), bar: min(bar, end) &- start, key: key,
                line: line, into: &sink)
            if end >= bodyEnd { return true }
            start = end &+ 1
        }
    }

    @inlinable @inline(__always)
    func parseLine<Sink: StatsdSampleSink>(_ rawLine: UnsafeRawBufferPointer, into sink: inout Sink) {
        // CRLF clients and trailing spaces: trimmed before the type is read (DEVIATIONS #6).
        var lineEnd = rawLine.count
        while lineEnd > 0, rawLine[lineEnd - 1] == UInt8(ascii: "\r") || rawLine[lineEnd - 1] == UInt8(ascii: " ") {
            lineEnd -= 1
        }
        let line = UnsafeRawBufferPointer(rebasing: rawLine[0..<lineEnd])
        // DogStatsD events (`_e{...}`) and service checks (`_sc|...`) carry no metric.
        if Self.isDogStatsDEventOrCheck(line) {
            sink.lineSeen(rawLine, key: UnsafeRawBufferPointer(start: nil, count: 0))
            if Self.isWellFormedEventOrCheck(line) {
                sink.dogStatsDEvent(line, isServiceCheck: line[1] == UInt8(ascii: "s"))
            } else {
                sink.badValue(line: rawLine, fields: line)
            }
            return
        }
        // `body|#tags`: the tags end at the next `|` (DogStatsD's container and timestamp fields follow them).
        var bodyEnd = line.count
        var tags: Range<Int>? = nil
        // Most lines have no '#' at all: one fast scan rules tags out.
        var index = ByteScan.firstIndex(of: UInt8(ascii: "#"), in: line, from: 0, to: line.count) == line.count ? line.count : 0
        while index + 1 < line.count {
            if line[index] == UInt8(ascii: "|"), line[index + 1] == UInt8(ascii: "#") {
                bodyEnd = index
                var tagEnd = index + 2
                while tagEnd < line.count, line[tagEnd] != UInt8(ascii: "|") { tagEnd += 1 }
                if tagEnd > index + 2 { tags = (index + 2)..<tagEnd }
                break
            }
            index += 1
        }
        let colon = ByteScan.firstIndex(of: UInt8(ascii: ":"), in: line, from: 0, to: bodyEnd)
        bodyEnd = Self.dogStatsDExtensionStart(line, from: colon, to: bodyEnd)
        let rawKey = UnsafeRawBufferPointer(rebasing: line[0..<colon])
        let key = self.buildKey(rawKey, tags: tags.map { UnsafeRawBufferPointer(rebasing: line[$0]) })
        sink.lineSeen(rawLine, key: key)
        if bodyEnd < line.count, let seconds = Self.dogStatsDTimestamp(line, from: bodyEnd) { sink.pointTimestamp(seconds) }
        if colon >= bodyEnd {
            // `foo` alone: statsd reads it as `foo:1`, which has no type.
            sink.badValue(line: rawLine, fields: self.implicitValue)
            return
        }
        var valueStart = colon + 1
        while valueStart <= bodyEnd {
            let valueEnd = ByteScan.firstIndex(of: UInt8(ascii: ":"), in: line, from: valueStart, to: bodyEnd)
            self.parseValue(
                UnsafeRawBufferPointer(rebasing: line[valueStart..<valueEnd]), key: key, line: rawLine, into: &sink)
            valueStart = valueEnd + 1
        }
    }

    /// `1`: the value statsd assumes for a line without one.
    @usableFromInline
    var implicitValue: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: self.constants[0..<1]) }

    /// `0`: the member statsd stores for an empty set value.
    @usableFromInline
    var zeroMember: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: self.constants[1..<2]) }

    /// One `value|type[|@rate]...` group.
    @inlinable @inline(__always)
    func parseValue<Sink: StatsdSampleSink>(
        _ fields: UnsafeRawBufferPointer, bar knownBar: Int? = nil, key: UnsafeRawBufferPointer,
        line: UnsafeRawBufferPointer, into sink: inout Sink
    ) {
        // `knownBar`: where the caller already found the first `|` (fields.count for none).
        let bar = knownBar ?? ByteScan.firstIndex(of: UInt8(ascii: "|"), in: fields, from: 0, to: fields.count)
        guard bar < fields.count else {
            sink.badValue(line: line, fields: fields)
            return
        }
        let value = UnsafeRawBufferPointer(rebasing: fields[0..<bar])
        let typeEnd = ByteScan.firstIndex(of: UInt8(ascii: "|"), in: fields, from: bar + 1, to: fields.count)
        var sampleRate = 1.0
        if typeEnd < fields.count {
            let rateEnd = ByteScan.firstIndex(of: UInt8(ascii: "|"), in: fields, from: typeEnd + 1, to: fields.count)
            guard let rate = Self.parseSampleRate(UnsafeRawBufferPointer(rebasing: fields[(typeEnd + 1)..<rateEnd]))
            else {
                sink.badValue(line: line, fields: fields)
                return
            }
            sampleRate = rate
        }
        let type = Self.trimASCIIWhitespace(UnsafeRawBufferPointer(rebasing: fields[(bar + 1)..<typeEnd]))
        let kind = Self.kind(of: type)
        if kind == .set {
            let member: UnsafeRawBufferPointer = value.isEmpty ? self.zeroMember : self.normalizedMember(value)
            sink.set(key: key, member: member)
            return
        }
        // `Number("")` is 0, but statsd rejects an empty value; JavaScript trims the rest.
        guard !value.isEmpty, let number = ByteScan.simpleInteger(value) ?? JSNumber.parse(value), number.isFinite
        else {
            sink.badValue(line: line, fields: fields)
            return
        }
        switch kind {
        case .counter:
            sink.counter(key: key, value: number, sampleRate: sampleRate)
        case .timer:
            if type.count == 1 {
                sink.distribution(key: key, value: number, sampleRate: sampleRate)
                return
            }
            guard number >= 0 else {
                sink.badValue(line: line, fields: fields)
                return
            }
            sink.timer(key: key, value: number, sampleRate: sampleRate)
        case .gauge:
            // Spaces around the value are ignored before the sign is read (DEVIATIONS #8).
            let trimmed = JSWhitespace.trim(value)
            let first = trimmed.isEmpty ? 0 : value[trimmed.lowerBound]
            sink.gauge(key: key, value: number, isDelta: first == UInt8(ascii: "+") || first == UInt8(ascii: "-"))
        case .set:
            break
        }
    }

    @inlinable @inline(__always)
    static func kind(of type: UnsafeRawBufferPointer) -> MetricKind {
        switch type.count {
        case 1:
            if type[0] == UInt8(ascii: "g") { return .gauge }
            if type[0] == UInt8(ascii: "s") { return .set }
            // DogStatsD's distribution: samples, aggregated as a timer's (statsd counts it; `h` stays a counter).
            if type[0] == UInt8(ascii: "d") { return .timer }
            return .counter
        case 2:
            return type[0] == UInt8(ascii: "m") && type[1] == UInt8(ascii: "s") ? .timer : .counter
        default:
            return .counter
        }
    }

    @inlinable @inline(__always)
    static func trimASCIIWhitespace(_ b: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        var start = 0
        var end = b.count
        while start < end, b[start] == 0x20 || (b[start] >= 0x09 && b[start] <= 0x0D) { start += 1 }
        while end > start, b[end - 1] == 0x20 || (b[end - 1] >= 0x09 && b[end - 1] <= 0x0D) { end -= 1 }
        return UnsafeRawBufferPointer(rebasing: b[start..<end])
    }

    /// `@` and a decimal number above 0 (exponent allowed). Hex, signs, white space, `0`, and anything
    /// not finite are rejected (DEVIATIONS #1, #4, #5).
    @inlinable @inline(__always)
    public static func parseSampleRate(_ field: UnsafeRawBufferPointer) -> Double? {
        guard field.count > 1, field[0] == UInt8(ascii: "@") else { return nil }
        guard let rate = JSNumber.parseUnsignedDecimal(UnsafeRawBufferPointer(rebasing: field[1...])),
            rate > 0, rate.isFinite
        else { return nil }
        return rate
    }

    // MARK: - Keys

    /// The key as statsd stores it: tags appended as `;name=value`, then sanitized when `sanitizeKeys` is on.
    @inlinable @inline(__always)
    func buildKey(_ raw: UnsafeRawBufferPointer, tags: UnsafeRawBufferPointer?) -> UnsafeRawBufferPointer {
        if tags == nil {
            if self.sanitizeKeys {
                let table = self.keyBytes
                var clean: UInt8 = 1
                for byte in raw { clean &= table[Int(byte)] }
                if clean == 1 { return raw }
            } else if UTF8Repair.isASCII(raw) {
                return raw
            }
        }
        return self.buildKeySlow(raw, tags: tags)
    }

    @usableFromInline
    func buildKeySlow(_ raw: UnsafeRawBufferPointer, tags: UnsafeRawBufferPointer?) -> UnsafeRawBufferPointer {
        // Compose `key;tag1;tag2` in the member scratch, then sanitize (or repair UTF-8) into the key scratch.
        let composed = self.memberScratch
        var length = 0
        func append(_ byte: UInt8) {
            if length < composed.count {
                composed[length] = byte
                length += 1
            }
        }
        for byte in raw { append(byte) }
        if let tags {
            var index = 0
            while index <= tags.count {
                var tagEnd = index
                while tagEnd < tags.count, tags[tagEnd] != UInt8(ascii: ",") { tagEnd += 1 }
                append(UInt8(ascii: ";"))
                // Each tag: the first ';' becomes '_', then the first ':' becomes '='.
                var replacedSemicolon = false
                let tagStart = length
                for position in index..<tagEnd {
                    var byte = tags[position]
                    if byte == UInt8(ascii: ";"), !replacedSemicolon {
                        byte = UInt8(ascii: "_")
                        replacedSemicolon = true
                    }
                    append(byte)
                }
                for position in tagStart..<length where composed[position] == UInt8(ascii: ":") {
                    composed[position] = UInt8(ascii: "=")
                    break
                }
                index = tagEnd + 1
            }
        }
        let source = UnsafeRawBufferPointer(rebasing: composed[0..<length])
        if self.sanitizeKeys {
            let count = KeySanitizer.sanitize(source, into: self.keyScratch)
            return UnsafeRawBufferPointer(rebasing: self.keyScratch[0..<count])
        }
        let count = UTF8Repair.repair(source, into: self.keyScratch)
        return UnsafeRawBufferPointer(rebasing: self.keyScratch[0..<count])
    }

    /// Set members are kept as the client sent them, except that invalid UTF-8 becomes U+FFFD, as node decodes it.
    @inlinable @inline(__always)
    func normalizedMember(_ member: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        if UTF8Repair.isASCII(member) { return member }
        let count = UTF8Repair.repair(member, into: self.memberScratch)
        return UnsafeRawBufferPointer(rebasing: self.memberScratch[0..<count])
    }
}
