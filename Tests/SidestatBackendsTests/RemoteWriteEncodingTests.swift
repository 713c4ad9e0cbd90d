//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
@testable import SidestatBackends
import SidestatTestSupport
import Testing

/// Remote write's bytes, read back with the independent decoders of SidestatTestSupport (the end-to-end tests send
/// them to a real Prometheus and VictoriaMetrics).
struct RemoteWriteEncodingTests {
    func backend(_ histograms: RemoteWriteConfiguration.Histograms = .native, labels: [String: String] = [:])
        -> RemoteWriteBackend
    {
        var configuration = RemoteWriteConfiguration(url: "http://127.0.0.1:1/api/v1/write")
        configuration.histograms = histograms
        configuration.labels = labels
        configuration.buckets = [0.01, 0.1]
        return RemoteWriteBackend(configuration: configuration, instance: "web.1", startupTime: 0)
    }

    func decode(_ requests: [RemoteWriteRequest]) throws -> [DecodedWriteRequest.Series] {
        try requests.flatMap { try DecodedWriteRequest(SnappyDecoder.decode($0.body)).series }
    }

    // MARK: - Snappy

    @Test("Snappy: every size round-trips through an independent decoder, across the 64 KiB block boundary")
    func snappyRoundTrip() throws {
        var random = SplitMix64(seed: 7)
        let sizes = [0, 1, 4, 15, 16, 17, 18, 100, 65_535, 65_536, 65_537, 131_073, 300_000]
        for size in sizes {
            let noise = (0..<size).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            let text = (0..<size).map { UInt8(ascii: "a") + UInt8($0 % 7 == 0 ? 1 : 0) }
            var mixed = [UInt8]()
            while mixed.count < size {
                let run = Int(random.next() % 90) + 1
                if random.next() % 2 == 0 || mixed.count < 10 {
                    mixed += (0..<run).map { _ in UInt8(truncatingIfNeeded: random.next() % 4) }
                } else {
                    let start = Int(random.next() % UInt64(mixed.count))
                    mixed += mixed[start..<min(mixed.count, start + run)]
                }
            }
            mixed = Array(mixed.prefix(size))
            for input in [noise, text, mixed] {
                let compressed = Snappy.compress(input)
                #expect(compressed.count <= Snappy.maximumCompressedLength(input.count))
                #expect(try SnappyDecoder.decode(compressed) == input, "size \(size)")
            }
        }
    }

    @Test("Snappy: real compression (back-references), not literals only")
    func snappyCompresses() throws {
        let line = Array("http_requests_total{sidestat_instance=\"web.1\",route=\"/home\"} 12345\n".utf8)
        let input = (0..<2_000).flatMap { _ in line }
        let compressed = Snappy.compress(input)
        #expect(compressed.count * 20 < input.count, "\(input.count) → \(compressed.count)")
        #expect(try SnappyDecoder.decode(compressed) == input)
    }

    // MARK: - WriteRequest

    @Test("series: __name__ and labels sorted byte-wise, unique, none empty; counters cumulative; the flush's time in ms")
    func floatSeries() throws {
        let backend = self.backend(labels: ["Zone": "eu", "job": "shop"])
        _ = backend.encode(makeFlush(counters: [("hits;env=prod;env=canary;canary", 3)], timestamp: 1_700_000_000))
        let series = try self.decode(
            backend.encode(
                makeFlush(
                    counters: [("hits;env=prod;env=canary;canary", 4)], gauges: [("temp", 21.5)], sets: [("users", ["a", "b"])],
                    timestamp: 1_700_000_010)))
        let hits = try #require(series.first { $0.name == "hits_total" })
        #expect(hits.labels.map(\.name) == ["Zone", "__name__", "canary", "env", "job", "sidestat_instance"])
        #expect(hits.labels.map(\.value) == ["eu", "hits_total", "true", "canary", "shop", "web.1"])
        #expect(hits.samples.count == 1)
        #expect(hits.samples[0].value == 7)
        #expect(hits.samples[0].timestamp == 1_700_000_010_000)
        #expect(series.first { $0.name == "temp" }?.samples.first?.value == 21.5)
        #expect(series.first { $0.name == "users" }?.samples.first?.value == 2)
        for one in series {
            #expect(one.labels.map(\.name) == one.labels.map(\.name).sorted(), "\(one.labels)")
            #expect(Set(one.labels.map(\.name)).count == one.labels.count)
            #expect(one.labels.allSatisfy { !$0.value.isEmpty })
        }
    }

    @Test("two flushes in the same second get increasing timestamps (a receiver refuses a duplicate)")
    func increasingTimestamps() throws {
        let backend = self.backend()
        let first = try self.decode(backend.encode(makeFlush(counters: [("a", 1)], timestamp: 1_700_000_000)))
        let second = try self.decode(backend.encode(makeFlush(counters: [("a", 1)], timestamp: 1_700_000_000)))
        #expect(first[0].samples[0].timestamp == 1_700_000_000_000)
        #expect(second[0].samples[0].timestamp == 1_700_000_000_001)
    }

    @Test("native histograms: schema 3, every sample in its bucket, zero and negative buckets, reset hint then none")
    func nativeHistograms() throws {
        let backend = self.backend()
        let samples: [Double] = [0, 1, 2, 3, 10, 10, 500, 1000, 1000.5]
        _ = backend.encode(makeFlush(timers: [("lat", [1000])]))
        let series = try self.decode(
            backend.encode(makeFlush(timers: [("lat", samples)], distributions: [("bal", [-4, 8, 0, -4])])))
        let lat = try #require(series.first { $0.name == "lat_seconds" })
        #expect(lat.samples.isEmpty && lat.histograms.count == 1)
        let histogram = lat.histograms[0]
        #expect(histogram.schema == 3)
        #expect(histogram.count == UInt64(samples.count + 1))
        #expect(abs(histogram.sum - (samples.reduce(0, +) + 1000) / 1000) < 1e-12)
        #expect(histogram.zeroCount == 1)
        #expect(histogram.resetHint == 2, "NO: the series was sent before")
        #expect(histogram.timestamp == 1_700_000_000_001)
        // Bucket i holds (2^((i-1)/8), 2^(i/8)].
        var expected: [Int: Int64] = [:]
        for sample in samples + [1000] where sample > 0 {
            let seconds = sample / 1000
            let index = Int((log2(seconds) * 8).rounded(.up))
            #expect(pow(2, Double(index - 1) / 8) < seconds && seconds <= pow(2, Double(index) / 8) * (1 + 1e-12))
            expected[index, default: 0] += 1
        }
        #expect(histogram.positive == expected)
        let balance = try #require(series.first { $0.name == "bal" }?.histograms.first)
        #expect(balance.resetHint == 1, "YES: the first histogram of the series")
        #expect(balance.count == 4 && balance.sum == 0 && balance.zeroCount == 1)
        #expect(balance.negative == [16: 2])
        #expect(balance.positive == [24: 1])
    }

    @Test("native bucket index: exact at powers of two, and agrees with log2 away from bucket bounds")
    func bucketIndex() {
        #expect(NativeHistogram.bucketIndex(1) == 0)
        #expect(NativeHistogram.bucketIndex(2) == 8)
        #expect(NativeHistogram.bucketIndex(0.5) == -8)
        #expect(NativeHistogram.bucketIndex(1.0000001) == 1)
        #expect(NativeHistogram.bucketIndex(1024) == 80)
        var random = SplitMix64(seed: 3)
        for _ in 0..<10_000 {
            let value = exp2(Double(random.next() % 100_000) / 1000 - 50)
            let exact = log2(value) * 8
            guard abs(exact - exact.rounded()) > 1e-9 else { continue }
            #expect(NativeHistogram.bucketIndex(value) == Int(exact.rounded(.up)), "\(value)")
        }
    }

    @Test("spans and deltas: gaps of up to two empty buckets stay inside a span, longer ones start a new span")
    func spans() {
        var buckets = ExponentialBuckets()
        for index in [-3, -3, -1, 0, 5, 9, 9, 9] { buckets.add(index) }
        let (spans, deltas) = buckets.spansAndDeltas()
        #expect(spans.map(\.offset) == [-3, 4, 3])
        #expect(spans.map(\.length) == [4, 1, 1])
        #expect(deltas == [2, -2, 1, 0, 0, 2])
    }

    @Test("classic histograms: _bucket with le (cumulative, +Inf), _sum and _count, as float series")
    func classicHistograms() throws {
        let series = try self.decode(self.backend(.classic).encode(makeFlush(timers: [("lat", [5, 50, 500])])))
        func value(_ name: String, le: String? = nil) -> Double? {
            series.first { $0.name == name && $0.label("le") == le }?.samples.first?.value
        }
        #expect(value("lat_seconds_bucket", le: "0.01") == 1)
        #expect(value("lat_seconds_bucket", le: "0.1") == 2)
        #expect(value("lat_seconds_bucket", le: "+Inf") == 3)
        #expect(value("lat_seconds_count") == 3)
        #expect(abs((value("lat_seconds_sum") ?? 0) - 0.555) < 1e-12)
        #expect(series.allSatisfy { $0.histograms.isEmpty })
        let bucket = try #require(series.first { $0.name == "lat_seconds_bucket" })
        #expect(bucket.labels.map(\.name) == ["__name__", "le", "sidestat_instance"])
    }

    @Test("a series that leaves gets the staleness marker (the special NaN), in both histogram layouts")
    func stalenessMarkers() throws {
        for layout in [RemoteWriteConfiguration.Histograms.native, .classic] {
            let backend = self.backend(layout)
            _ = backend.encode(makeFlush(counters: [("gone", 1), ("stays", 1)], timers: [("t", [1])]))
            let series = try self.decode(backend.encode(makeFlush(counters: [("stays", 1)], timestamp: 1_700_000_010)))
            let stale = series.filter { $0.samples.first.map { $0.value.bitPattern == 0x7FF0_0000_0000_0002 } ?? false }
            let expected = layout == .native
                ? ["gone_total", "t_seconds"]
                : ["gone_total"] + Array(repeating: "t_seconds_bucket", count: 3) + ["t_seconds_sum", "t_seconds_count"]
            #expect(stale.map(\.name).sorted() == expected.sorted(), "\(layout)")
            #expect(stale.allSatisfy { $0.samples[0].timestamp == 1_700_000_010_000 })
            #expect(series.first { $0.name == "stays_total" }?.samples.first?.value == 2)
        }
    }

    @Test("requests are split on series (at most maximumSeries), and floats never share a request with histograms")
    func splitting() throws {
        let counters = (0..<12_000).map { ("c\($0)", 1.0) }
        let timers = (0..<10).map { ("t\($0)", [1.0]) }
        let requests = self.backend().encode(makeFlush(counters: counters, timers: timers))
        let decoded = try requests.map { try DecodedWriteRequest(SnappyDecoder.decode($0.body)).series }
        #expect(decoded.map(\.count) == [5_000, 5_000, 2_000, 10])
        #expect(requests.map(\.hasHistograms) == [false, false, false, true])
        #expect(decoded.last!.allSatisfy { !$0.histograms.isEmpty })
        #expect(requests.map(\.points) == [5_000, 5_000, 2_000, 10])
        #expect(requests.allSatisfy { $0.uncompressedBytes <= RemoteWriteBackend.maximumBytes + 4_096 })
    }
}
