//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatAggregation
import SidestatBackends
import SidestatConfiguration
import Testing

struct GraphiteEncoderTests {
    func flush(counters: [(String, Double)] = [], gauges: [(String, Double)] = []) -> FlushData {
        var snapshot = MetricSnapshot()
        for (key, value) in counters {
            let range = snapshot.store(key)
            snapshot.counters.append(.init(key: range, value: value))
        }
        for (key, value) in gauges {
            let range = snapshot.store(key)
            snapshot.gauges.append(.init(key: range, value: value, updated: 0))
        }
        let statistics = TimerStatisticsConfiguration(
            percentThreshold: [90], histogram: [], calculatedTimerMetrics: nil, flushIntervalSeconds: 10)
        return FlushData(
            timestamp: 1_700_000_000, snapshot: snapshot, flushInterval: .seconds(10),
            processingTime: .zero, timerStatistics: statistics, prefixStats: "statsd", percentThreshold: [90],
            isFinal: false)
    }

    func encode(_ data: FlushData, _ configuration: GraphiteConfiguration = GraphiteConfiguration(), chunkSize: Int = 1 << 20)
        -> [UInt8]
    {
        var encoder = GraphiteEncoder(
            data: data, configuration: configuration, sanitizeNames: false,
            previous: GraphiteStatistics(startupTime: 1_699_999_990), chunkSize: chunkSize, now: { 0 })
        return encoder.encodeAll()
    }

    @Test("plaintext: statsd's names, JavaScript numbers, one timestamp, a newline after every line")
    func plaintext() {
        let text = String(decoding: self.encode(self.flush(counters: [("hits;env=prod", 25)], gauges: [("g", 0.5)])), as: UTF8.self)
        #expect(text.hasPrefix("stats.hits;env=prod 2.5 1700000000\nstats_counts.hits;env=prod 25 1700000000\nstats.gauges.g 0.5 1700000000\n"))
        #expect(text.contains("\nstatsd.numStats 2 1700000000\n"))
        #expect(text.hasSuffix("stats.statsd.graphiteStats.flush_length 0 1700000000\n"))
    }

    @Test("a value that is not an integer is written as JavaScript prints it, also when it repeats or alternates")
    func repeatedFractions() {
        let values: [Double] = [0.1, 0.1, 2.5, 0.1, -0.1, 1e21, 1e21, 0.000001, 1e-7, 3, 0.1, -0.0, 123456.789]
        let expected = ["0.1", "0.1", "2.5", "0.1", "-0.1", "1e+21", "1e+21", "0.000001", "1e-7", "3", "0.1", "0", "123456.789"]
        let gauges = values.enumerated().map { ("g\($0.offset)", $0.element) }
        let text = String(decoding: self.encode(self.flush(gauges: gauges)), as: UTF8.self)
        let lines = text.split(separator: "\n").prefix(values.count).map(String.init)
        #expect(lines == expected.enumerated().map { "stats.gauges.g\($0.offset) \($0.element) 1700000000" })
    }

    @Test("pickle: protocol-0 frames behind a 4-byte big-endian length, as statsd writes them")
    func pickle() {
        var configuration = GraphiteConfiguration()
        configuration.wireProtocol = .pickle
        let bytes = self.encode(self.flush(gauges: [("g", 1.5)]), configuration)
        let length = Int(bytes[0]) << 24 | Int(bytes[1]) << 16 | Int(bytes[2]) << 8 | Int(bytes[3])
        #expect(length == bytes.count - 4)
        let body = String(decoding: bytes[4...], as: UTF8.self)
        #expect(body.hasPrefix("(l(S'stats.gauges.g'\n(L1700000000L\nS'1.5'\ntta(S'statsd.numStats'\n"))
        #expect(body.hasSuffix("tta."))
    }

    @Test("a large flush comes in many chunks, and pickle frames hold at most 500 datapoints each")
    func chunks() {
        let data = self.flush(counters: (0..<5000).map { ("key.\($0)", Double($0)) })
        let whole = self.encode(data)
        #expect(self.encode(data, chunkSize: 4096) == whole)
        var pickle = GraphiteConfiguration()
        pickle.wireProtocol = .pickle
        let bytes = self.encode(data, pickle, chunkSize: 4096)
        var offset = 0
        var frames = 0
        while offset < bytes.count {
            let length = Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
            let items = String(decoding: bytes[(offset + 4)..<(offset + 4 + length)], as: UTF8.self).components("tta")
            #expect(items <= 500)
            offset += 4 + length
            frames += 1
        }
        #expect(offset == bytes.count)
        #expect(frames == (10_000 + 7 + 499) / 500)
    }

    @Test("NaN and infinite values are left out and counted")
    func nonFinite() {
        var encoder = GraphiteEncoder(
            data: self.flush(counters: [("inf", .infinity)], gauges: [("nan", .nan), ("ok", 1)]),
            configuration: GraphiteConfiguration(), sanitizeNames: false,
            previous: GraphiteStatistics(startupTime: 0), now: { 0 })
        let text = String(decoding: encoder.encodeAll(), as: UTF8.self)
        #expect(!text.contains("NaN") && !text.contains("Infinity"))
        #expect(text.contains("stats.gauges.ok 1 "))
        #expect(encoder.skippedNonFinite == 3)
    }
}

extension String {
    /// How many times `separator` occurs.
    func components(_ separator: String) -> Int {
        let text = Array(self.utf8)
        let needle = Array(separator.utf8)
        var count = 0
        var index = 0
        while index + needle.count <= text.count {
            if Array(text[index..<(index + needle.count)]) == needle {
                count += 1
                index += needle.count
            } else {
                index += 1
            }
        }
        return count
    }
}
