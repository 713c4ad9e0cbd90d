//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatAggregation
import SidestatProtocol
import Testing

/// The parser's known-key hot path (`StatsdLineParser.parseKnownKeyLine` with `MetricStore.knownKeyLine`) must give
/// exactly what the general path gives. An aggregator made with `hotPath: false` never takes it, so the two are
/// compared on the same datagrams, each sent twice (the second time, most keys are known).
struct HotPathTests {
    /// A small seeded generator, so that a failure can be replayed.
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            self.state &+= 0x9E37_79B9_7F4A_7C15
            var z = self.state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// Keys of every length around the hot path's word boundaries, and keys it must leave alone.
    static let keys = [
        "a", "abcdefg", "abcdefgh", "abcdefghi", "abcdefghijklmno", "abcdefghijklmnop", "abcdefghijklmnopq",
        "abcdefghijklmnopqrstuvw", "abcdefghijklmnopqrstuvwx", "abcdefghijklmnopqrstuvwxyz.0123456789",
        "my.app.requests", "perf.c.k42", "with space", "slash/key", "ünï", "_e{1,1}", "", "k#x", "k\r", "k@", "x|y",
        "a;b=c", "-.-", "_under",
    ]
    static let values = [
        "1", "-1", "0", "-0", "42", "007", "123456789012345", "1234567890123456", "1.5", "1e3", "", "+3", " 2",
        "abc", "-", "9",
    ]
    static let types = ["c", "ms", "g", "s", "h", "x", "", "cc", "m", "ms ", "c ", "g\r", "msx"]
    static let rates = [
        "", "", "", "|@0.5", "|@1", "|@0", "|@-1", "|@1e-1", "|@abc", "|@0.5|#t:v", "|#tag:v", "|#a,b", "|@", "|@0.25:",
    ]

    static func line(using random: inout SplitMix) -> String {
        var line = Self.keys.randomElement(using: &random)!
        let groups = Int.random(in: 0..<8, using: &random) == 0 ? 2 : 1
        for _ in 0..<groups {
            if Int.random(in: 0..<20, using: &random) == 0 { break }  // a key alone
            line += ":" + Self.values.randomElement(using: &random)! + "|" + Self.types.randomElement(using: &random)!
            line += Self.rates.randomElement(using: &random)!
        }
        return line
    }

    static func datagram(using random: inout SplitMix) -> [UInt8] {
        var text = ""
        for index in 0..<Int.random(in: 1...12, using: &random) {
            if index > 0 { text += ["\n", "\n", "\n", "\r\n", "\n\n"].randomElement(using: &random)! }
            text += Self.line(using: &random)
        }
        if Bool.random(using: &random) { text += "\n" }
        return Array(text.utf8)
    }

    struct Totals: Equatable {
        var counters: [String: Double] = [:]
        var timers: [String: [Double]] = [:]
        var timerCounts: [String: Double] = [:]
        var gauges: [String: Double] = [:]
        var sets: [String: Set<String>] = [:]
        var metricsReceived = 0
        var badLinesSeen = 0

        init(_ snapshot: MetricSnapshot) {
            for entry in snapshot.counters { self.counters[snapshot.string(entry.key)] = entry.value }
            for entry in snapshot.timers {
                self.timers[snapshot.string(entry.key)] = Array(snapshot.timerSamples[entry.samples])
                self.timerCounts[snapshot.string(entry.key)] = entry.count
            }
            for entry in snapshot.gauges { self.gauges[snapshot.string(entry.key)] = entry.value }
            for entry in snapshot.sets {
                self.sets[snapshot.string(entry.key)] = Set(snapshot.setMembers[entry.members].map(snapshot.string))
            }
            self.metricsReceived = snapshot.counts.metricsReceived
            self.badLinesSeen = snapshot.counts.badLinesSeen
        }
    }

    @Test("the known-key hot path gives what the general path gives", arguments: [1, 2, 3, 4] as [UInt64])
    func sameAsGeneralPath(seed: UInt64) {
        var random = SplitMix(state: seed)
        for sanitize in [true, false] {
            let fast = Aggregator(shardCount: 1, sanitizeKeys: sanitize)
            let general = Aggregator(shardCount: 1, sanitizeKeys: sanitize, hotPath: false)
            for _ in 0..<40 {
                for _ in 0..<25 {
                    var datagram = Self.datagram(using: &random)
                    for _ in 0..<2 {
                        datagram.withUnsafeMutableBytes { bytes in
                            fast.ingest(UnsafeRawBufferPointer(bytes), shard: 0)
                            general.ingest(UnsafeRawBufferPointer(bytes), shard: 0)
                        }
                    }
                }
                let expected = Totals(general.takeSnapshot(policy: RetentionPolicy()))
                let got = Totals(fast.takeSnapshot(policy: RetentionPolicy()))
                #expect(got == expected, "seed \(seed), sanitizeKeys \(sanitize)")
                #expect(expected.metricsReceived > 0)
            }
        }
    }

    /// Inputs the fuzzer (`scripts/fuzz`, FuzzLineParser) reported, kept here so that each stays fixed. The first
    /// was an AddressSanitizer report of a key-hash word read past a buffer's end within its page (harmless outside
    /// ASan, where the extra bytes are masked; under `SIDESTAT_SANITIZE` the reads stop at the end).
    static let fuzzFindings: [[UInt8]] = [
        [
            0x61, 0x2e, 0x62, 0x3a, 0xca, 0x83, 0x9c, 0xf5, 0x2c, 0x2e, 0x62, 0x0a, 0x74, 0x3a, 0x31, 0x7c, 0x6d, 0x73,
            0x0a, 0x74, 0x3a, 0x7e, 0x32, 0x7c, 0x6d, 0x73, 0x0a, 0x74, 0x3a, 0x33, 0x7c, 0x6d, 0x73, 0x0a, 0xe7, 0xe7,
            0xe7, 0x2a, 0x2a, 0x2a, 0x2a, 0x2a, 0x2a, 0x2a, 0x2a, 0x2a, 0x2a, 0x2a, 0x2a, 0x2a, 0x2a, 0x2a, 0x2a, 0x2a,
        ] + [UInt8](repeating: 0xe7, count: 47)
            + Array("t:4|ms\ng:-3|g\u{02}t:!|mmt\n6s:|s\nt:7|ms\nt:8|ms\n".utf8),
    ]

    @Test("fuzz findings: both paths agree and nothing is lost", arguments: HotPathTests.fuzzFindings)
    func fuzzFinding(datagram: [UInt8]) {
        for sanitize in [true, false] {
            let fast = Aggregator(shardCount: 1, sanitizeKeys: sanitize)
            let general = Aggregator(shardCount: 1, sanitizeKeys: sanitize, hotPath: false)
            for _ in 0..<2 {
                datagram.withUnsafeBytes { bytes in
                    _ = fast.ingest(bytes, shard: 0)
                    _ = general.ingest(bytes, shard: 0)
                }
            }
            let expected = Totals(general.takeSnapshot(policy: RetentionPolicy()))
            #expect(Totals(fast.takeSnapshot(policy: RetentionPolicy())) == expected)
            // Sanitized, `***ççç…t` is `t` too.
            let t: [Double] = sanitize ? [1, 3, 4, 7, 8] : [1, 3, 7, 8]
            #expect(expected.timers["t"] == t + t)
        }
    }

    @Test("a datagram sent twice counts twice: new keys on the general path, then known keys on the hot path")
    func knownKeysCount() {
        let aggregator = Aggregator(shardCount: 1)
        let text =
            "short:1|c\nexactly8:2|c\nnine.char:3|ms\nsixteen.bytes.ok:4|g\nlonger.than.sixteen.bytes:-5|c|@0.5\nlast:-1|g"
        var datagram = Array(text.utf8)
        for _ in 0..<2 {
            _ = datagram.withUnsafeMutableBytes { aggregator.ingest(UnsafeRawBufferPointer($0), shard: 0) }
        }
        let totals = Totals(aggregator.takeSnapshot(policy: RetentionPolicy()))
        #expect(totals.counters == ["short": 2, "exactly8": 4, "longer.than.sixteen.bytes": -20])
        #expect(totals.timers == ["nine.char": [3, 3]])
        // The second `last:-1|g` is a delta on -1.
        #expect(totals.gauges == ["sixteen.bytes.ok": 4, "last": -2])
        #expect(totals.metricsReceived == 12 && totals.badLinesSeen == 0)
    }

    /// Takes every line the hot path offers and records what it was given.
    struct RecordingSink: StatsdKnownKeySink {
        struct Line: Equatable {
            var key: [UInt8]
            var hash: UInt64
            var prefix0: UInt64
            var prefix1: UInt64
            var kind: MetricKind
            var value: Double
            var inverseRate: Double
        }
        var lines: [Line] = []
        mutating func knownKeyLine(
            kind: MetricKind, key: ScannedKey, value: Double, inverseRate: Double, isDelta: Bool
        ) -> Bool {
            self.lines.append(
                Line(
                    key: Array(key.bytes), hash: key.hash, prefix0: key.prefix0, prefix1: key.prefix1, kind: kind,
                    value: value, inverseRate: inverseRate))
            return true
        }
    }

    @Test("the hot path reads keys of every length as ScannedKey does, and takes every well-formed line")
    func hotPathKeys() {
        let parser = StatsdLineParser()
        var random = SplitMix(state: 7)
        let forms: [(String, MetricKind, Double, Double)] = [
            ("1|c", .counter, 1, 1), ("-12|c", .counter, -12, 1), ("250|ms", .timer, 250, 1), ("3|g", .gauge, 3, 1),
            ("-4|g", .gauge, -4, 1), ("5|c|@0.5", .counter, 5, 2), ("6|ms|@0.25", .timer, 6, 4),
        ]
        for _ in 0..<300 {
            // Lines with keys of 1 to 48 bytes, one datagram; the last line has no '\n' half of the time.
            var expected: [RecordingSink.Line] = []
            var text = ""
            for _ in 0..<Int.random(in: 1...8, using: &random) {
                let length = Int.random(in: 1...48, using: &random)
                let key = String((0..<length).map { _ in "abcxyz.-_019ABZ".randomElement(using: &random)! })
                let (value, kind, number, inverseRate) = forms.randomElement(using: &random)!
                text += key + ":" + value + "\n"
                let bytes = Array(key.utf8)
                let scanned = bytes.withUnsafeBytes { ScannedKey($0) }
                expected.append(
                    RecordingSink.Line(
                        key: bytes, hash: scanned.hash, prefix0: scanned.prefix0, prefix1: scanned.prefix1, kind: kind,
                        value: number, inverseRate: inverseRate))
            }
            if Bool.random(using: &random) { text.removeLast() }
            var sink = RecordingSink()
            let datagram = Array(text.utf8)
            let stop = datagram.withUnsafeBytes { bytes in
                parser.parseKnownKeyLines(parser.terminatedCopy(bytes)!, from: 0, into: &sink)
            }
            #expect(stop == datagram.count, "\(text)")
            #expect(sink.lines == expected, "\(text)")
        }
    }

    @Test("a table finds keys of every length, also after removals compact its arena")
    func tableKeyLengths() {
        var table = ByteKeyTable<Int>()
        let keys = (0...40).map { length in
            String((0..<length).map { Character(UnicodeScalar(97 + ($0 * 7 + length) % 26)!) })
        }
        for (index, key) in keys.enumerated() {
            var bytes = Array(key.utf8)
            #expect(bytes.withUnsafeMutableBytes { table.findOrInsert(UnsafeRawBufferPointer($0)) { index } } == index)
        }
        table.removeAll { index, _ in index % 3 == 0 }
        for (index, key) in keys.enumerated() {
            var bytes = Array(key.utf8)
            let found = bytes.withUnsafeMutableBytes { table.find(UnsafeRawBufferPointer($0)) }
            #expect((found.map { table[valueAt: $0] }) == (index % 3 == 0 ? nil : index), "length \(index)")
            // A key one byte longer or shorter is another key.
            var longer = bytes + [UInt8(ascii: "z")]
            let other = longer.withUnsafeMutableBytes { table.find(UnsafeRawBufferPointer($0)) }
            #expect(other.map { table[valueAt: $0] } != index)
        }
    }
}
