//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Benchmark
import BenchmarkSupport
import SidestatAggregation
#if canImport(Glibc)
import Glibc
#endif
import SidestatBackends
import SidestatConfiguration
import SidestatProtocol

/// statsdgen's packed datagrams: `perf.c.k<i>:1|c` lines up to ~1400 bytes, keys cycled round-robin.
func packedDatagrams(keys: Int, prefix: String = "perf.c.k", type: String = "c", count: Int) -> [[UInt8]] {
    var datagrams: [[UInt8]] = []
    var key = 0
    for _ in 0..<count {
        var datagram: [UInt8] = []
        while true {
            let line = Array("\(prefix)\(key % keys):1|\(type)\n".utf8)
            if datagram.count + line.count > 1400 { break }
            datagram += line
            key += 1
        }
        datagrams.append(datagram)
    }
    return datagrams
}

func lines(in datagrams: [[UInt8]]) -> Int {
    datagrams.reduce(0) { $0 + $1.filter { $0 == UInt8(ascii: "\n") }.count }
}

/// `SIDESTAT_BENCHMARK_SMOKE=1` (CI): every benchmark runs a few iterations, only to show it builds and runs.
let smoke = getenv("SIDESTAT_BENCHMARK_SMOKE") != nil

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .mallocCountTotal, .throughput], timeUnits: .nanoseconds,
        maxDuration: smoke ? .milliseconds(200) : .seconds(1), maxIterations: smoke ? 10 : 100_000)
    let bigKeys = smoke ? 100_000 : 1_000_000
    let bigIterations = smoke ? 1 : 3

    // One iteration = one packed datagram (~94 lines), so per-line figures are these divided by ~94.
    let packed = packedDatagrams(keys: 100, count: 64)
    let linesPerDatagram = lines(in: packed) / packed.count

    Benchmark("parse: packed datagram (\(linesPerDatagram) lines), no aggregation") { benchmark in
        let parser = StatsdLineParser()
        var sink = CountingSink()
        benchmark.startMeasurement()
        var index = 0
        for _ in benchmark.scaledIterations {
            packed[index & 63].withUnsafeBytes { parser.parse($0, into: &sink) }
            index &+= 1
        }
        blackHole(sink.count)
    }

    Benchmark("aggregate: packed datagram (\(linesPerDatagram) lines), 100 known counter keys") { benchmark in
        let aggregator = Aggregator(shardCount: 1)
        for datagram in packed { datagram.withUnsafeBytes { _ = aggregator.ingest($0, shard: 0) } }
        benchmark.startMeasurement()
        var index = 0
        for _ in benchmark.scaledIterations {
            packed[index & 63].withUnsafeBytes { _ = aggregator.ingest($0, shard: 0) }
            index &+= 1
        }
    }

    let timers = packedDatagrams(keys: 100, prefix: "perf.ms.k", type: "ms", count: 64)
    Benchmark("aggregate: packed datagram, 100 known timer keys") { benchmark in
        let aggregator = Aggregator(shardCount: 1)
        for datagram in timers { datagram.withUnsafeBytes { _ = aggregator.ingest($0, shard: 0) } }
        benchmark.startMeasurement()
        var index = 0
        for _ in benchmark.scaledIterations {
            timers[index & 63].withUnsafeBytes { _ = aggregator.ingest($0, shard: 0) }
            index &+= 1
        }
    }

    // Set members: a ~64 KB datagram of `users:<member>|s` lines, members ASCII or with invalid UTF-8 (repaired to
    // U+FFFD as node decodes it). Issue 12 measured 3.45 ms against 0.2 ms before the byte-level repair.
    for (name, member) in [("ASCII", Array("user-0123456789abcdef".utf8)), ("invalid UTF-8", [UInt8](repeating: 0xFF, count: 8) + Array("user-0123456789".utf8))] {
        var datagram: [UInt8] = []
        while datagram.count < 64_000 { datagram += Array("users:".utf8) + member + Array("|s\n".utf8) }
        Benchmark("parse: 64 KB datagram of set lines, members \(name)") { benchmark in
            let parser = StatsdLineParser()
            var sink = CountingSink()
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations { datagram.withUnsafeBytes { parser.parse($0, into: &sink) } }
            blackHole(sink.count)
        }
    }

    // 1M distinct keys: the first interval, when every key is new (insertion, arena growth, rehashing).
    let million = packedDatagrams(keys: bigKeys, count: bigKeys / linesPerDatagram + 1)
    Benchmark(
        "aggregate: \(bigKeys) new counter keys in one interval",
        configuration: .init(maxDuration: .seconds(20), maxIterations: bigIterations)
    ) { benchmark in
        for _ in benchmark.scaledIterations {
            let aggregator = Aggregator(shardCount: 1)
            benchmark.startMeasurement()
            for datagram in million { datagram.withUnsafeBytes { _ = aggregator.ingest($0, shard: 0) } }
            benchmark.stopMeasurement()
            blackHole(aggregator)
        }
    }

    Benchmark(
        "drain: snapshot of 100k counter keys",
        configuration: .init(maxDuration: .seconds(smoke ? 1 : 10), maxIterations: smoke ? 2 : 50)
    ) {
        benchmark in
        let aggregator = Aggregator(shardCount: 1)
        let datagrams = packedDatagrams(keys: 100_000, count: 100_000 / linesPerDatagram + 1)
        for _ in benchmark.scaledIterations {
            for datagram in datagrams { datagram.withUnsafeBytes { _ = aggregator.ingest($0, shard: 0) } }
            benchmark.startMeasurement()
            blackHole(aggregator.takeSnapshot(policy: RetentionPolicy()))
            benchmark.stopMeasurement()
        }
    }

    Benchmark(
        "encode: Graphite plaintext, 10k counters and 1k timers x 100 samples",
        configuration: .init(maxDuration: .seconds(smoke ? 1 : 10), maxIterations: smoke ? 2 : 50)
    ) {
        benchmark in
        let aggregator = Aggregator(shardCount: 1)
        for datagram in packedDatagrams(keys: 10_000, count: 10_000 / linesPerDatagram + 1) {
            datagram.withUnsafeBytes { _ = aggregator.ingest($0, shard: 0) }
        }
        for datagram in packedDatagrams(keys: 1_000, prefix: "perf.ms.k", type: "ms", count: 100_000 / linesPerDatagram + 1) {
            datagram.withUnsafeBytes { _ = aggregator.ingest($0, shard: 0) }
        }
        let data = flushData(of: aggregator)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(encodeGraphite(data).bytes)
        }
    }

    // Remote write: one flush of 100,000 series (40k counters and 30k gauges with DogStatsD tags, 30k timers of 10
    // samples each as native histograms) folded into the series, encoded as WriteRequests and Snappy-compressed.
    // The steady state (every series known, as at every flush after the first), then the first flush.
    let remoteWriteData = remoteWriteFlush()
    let remoteWriteMetrics: [BenchmarkMetric] = [
        .cpuTotal, .wallClock, .peakMemoryResident, .mallocCountTotal,
        .custom("protobuf bytes", polarity: .prefersSmaller, useScalingFactor: false),
        .custom("snappy bytes", polarity: .prefersSmaller, useScalingFactor: false),
    ]
    func measureSizes(_ benchmark: Benchmark, _ requests: [RemoteWriteRequest]) {
        benchmark.measurement(.custom("protobuf bytes"), requests.reduce(0) { $0 + $1.uncompressedBytes })
        benchmark.measurement(.custom("snappy bytes"), requests.reduce(0) { $0 + $1.body.count })
    }
    func remoteWriteConfiguration(iterations: Int) -> Benchmark.Configuration {
        .init(
            metrics: remoteWriteMetrics, timeUnits: .milliseconds, maxDuration: .seconds(smoke ? 1 : 10),
            maxIterations: smoke ? 2 : iterations)
    }
    Benchmark(
        "encode: remote write, one flush of 100k series (native histograms), series known",
        configuration: remoteWriteConfiguration(iterations: 30)
    ) { benchmark in
        let backend = remoteWriteBackend()
        _ = backend.encode(remoteWriteData)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            let requests = backend.encode(remoteWriteData)
            benchmark.stopMeasurement()
            measureSizes(benchmark, requests)
            benchmark.startMeasurement()
        }
    }
    Benchmark(
        "encode: remote write, the first flush of 100k series (every series new)",
        configuration: remoteWriteConfiguration(iterations: 10)
    ) { benchmark in
        for _ in benchmark.scaledIterations {
            let backend = remoteWriteBackend()
            benchmark.startMeasurement()
            let requests = backend.encode(remoteWriteData)
            benchmark.stopMeasurement()
            measureSizes(benchmark, requests)
        }
    }
}
