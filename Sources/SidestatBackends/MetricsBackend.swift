//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import SidestatAggregation

/// An upstream that receives one finished interval per flush (Graphite, the console, ...).
///
/// A backend owns its delivery: it retries, buffers and counts failures itself, and reports them through
/// `status()`. `flush` must return by `deadline`, so that a slow upstream never delays the next flush or the
/// other backends. A new upstream is one folder with a type that conforms to this protocol.
public protocol MetricsBackend: Sendable {
    /// The name used in status output and logs, as statsd names it (`graphite`, `console`).
    var name: String { get }

    /// Delivers one flush.
    func flush(_ data: FlushData, deadline: ContinuousClock.Instant, logger: Logger) async

    /// statsd's backend status for the management `stats` command, in order (`last_flush`, ...).
    /// Statistics named `last_*` hold Unix times in seconds and are printed as ages.
    func status() -> [(name: String, value: Double)]

    /// Whether the last flush was delivered, or a failed one is still held whole for retry (for `/readyz`).
    var isHealthy: Bool { get }
}

extension MetricsBackend {
    public var isHealthy: Bool { true }
}

/// One flush as backends see it: statsd's `metrics` hash after `process_metrics`.
public struct FlushData: Sendable {
    /// Unix time in seconds (rounded, as statsd does), shared by every line of the flush.
    public var timestamp: Int
    /// The interval's aggregates, timer samples sorted, statsd's own counters first and its `timestamp_lag`
    /// gauge included.
    public var snapshot: MetricSnapshot
    public var flushIntervalMilliseconds: Int
    /// statsd's `processing_time`: how long preparing the flush took, in milliseconds.
    public var processingTimeMilliseconds: Int
    public var timerStatistics: TimerStatisticsConfiguration
    /// statsd's `prefixStats`.
    public var prefixStats: String
    /// statsd's `percentThreshold`, for the console dump.
    public var percentThreshold: [Double]
    /// This is the last flush before the process exits.
    public var isFinal: Bool

    public init(
        timestamp: Int, snapshot: MetricSnapshot, flushIntervalMilliseconds: Int, processingTimeMilliseconds: Int,
        timerStatistics: TimerStatisticsConfiguration, prefixStats: String, percentThreshold: [Double],
        isFinal: Bool
    ) {
        self.timestamp = timestamp
        self.snapshot = snapshot
        self.flushIntervalMilliseconds = flushIntervalMilliseconds
        self.processingTimeMilliseconds = processingTimeMilliseconds
        self.timerStatistics = timerStatistics
        self.prefixStats = prefixStats
        self.percentThreshold = percentThreshold
        self.isFinal = isFinal
    }

    /// statsd's `numStats`: how many keys of every kind the flush holds.
    public var numStats: Int {
        self.snapshot.counters.count + self.snapshot.timers.count + self.snapshot.gauges.count
            + self.snapshot.sets.count
    }
}
