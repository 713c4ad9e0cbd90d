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
