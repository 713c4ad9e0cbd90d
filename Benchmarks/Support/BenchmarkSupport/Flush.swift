//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

// Fixtures shared by the micro-benchmarks and the callgrind probe.
import SidestatAggregation
import SidestatBackends
import SidestatConfiguration

/// The interval in `aggregator` as the flusher hands it to a backend: 10 s interval, statsd's default 90th percentile.
public func flushData(of aggregator: Aggregator) -> FlushData {
    var snapshot = aggregator.takeSnapshot(policy: RetentionPolicy())
    snapshot.sortTimerSamples()
    let statistics = TimerStatisticsConfiguration(
        percentThreshold: [90], histogram: [], calculatedTimerMetrics: nil, flushIntervalSeconds: 10)
    return FlushData(
        timestamp: 1_700_000_000, snapshot: snapshot, flushInterval: .seconds(10), processingTime: .zero,
        timerStatistics: statistics, prefixStats: "statsd", percentThreshold: [90], isFinal: false)
}

/// Encodes `data` as Graphite plaintext, chunk by chunk as the backend does; returns the lines and bytes written.
public func encodeGraphite(_ data: FlushData) -> (lines: Int, bytes: Int) {
    var encoder = GraphiteEncoder(
        data: data, configuration: GraphiteConfiguration(), sanitizeNames: false,
        previous: GraphiteStatistics(startupTime: 0), now: { 0 })
    var lines = 0
    var bytes = 0
    while let chunk = encoder.nextChunk() {
        lines &+= chunk.points
        bytes &+= chunk.bytes.count
    }
    return (lines, bytes)
}

/// One flush of 100,000 series for remote write: 40k counters and 30k gauges with DogStatsD tags, 30k timers of 10
/// samples each (native histograms).
public func remoteWriteFlush() -> FlushData {
    let aggregator = Aggregator(shardCount: 1)
    var lines: [String] = []
    for key in 0..<40_000 { lines.append("app.requests.k\(key):1|c|#route:/r\(key % 50),status:200") }
    for key in 0..<30_000 { lines.append("app.queue.k\(key):\(key % 97)|g|#route:/r\(key % 50)") }
    for key in 0..<30_000 {
        for sample in 0..<10 {
            lines.append("app.latency.k\(key):\(1 + (key * 7 + sample * 53) % 500)|ms|#route:/r\(key % 50)")
        }
    }
    var index = 0
    while index < lines.count {
        let datagram = Array(lines[index..<min(index + 20, lines.count)].joined(separator: "\n").utf8)
        datagram.withUnsafeBytes { _ = aggregator.ingest($0, shard: 0) }
        index += 20
    }
    return flushData(of: aggregator)
}

/// A remote-write backend that sends nowhere (its `encode` is what the benchmarks measure).
public func remoteWriteBackend() -> RemoteWriteBackend {
    RemoteWriteBackend(
        configuration: RemoteWriteConfiguration(url: "http://127.0.0.1:1/api/v1/write"), instance: "web.1",
        startupTime: 0)
}
