//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import ServiceLifecycle
import SidestatAggregation

/// An upstream that receives one finished interval per flush (Graphite, the console, ...).
///
/// A backend owns its delivery (backends that send somewhere use `Delivery`, which retries, buffers and counts
/// failures) and reports it through `status()`. `flush` must return by `deadline`. A new upstream is one folder
/// with a type that conforms to this protocol and its configuration section (`BackendSection`), and a line in
/// `BackendRegistry` (docs/adding-a-backend.md).
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

    /// Where the flushes go, for the start-up line (`carbon plaintext to 127.0.0.1:2003`).
    var destination: String { get }

    /// Whether flushes leave the process (false for the console, and for Graphite without `graphiteHost`).
    var deliversUpstream: Bool { get }

    /// Whether `flush` may be called again before an earlier call has returned, so that each flush starts on time
    /// whatever the upstream is doing with the one before. Otherwise flushes are handed over one at a time.
    var flushesOverlap: Bool { get }

    /// Whether the final flush should wait for the next flush tick (when it is near) rather than go at once: true
    /// for an upstream such as Graphite, where a flush a moment after the previous one would share its time slot and
    /// overwrite its value, and which is reachable (waiting cannot help a flush that will not be delivered).
    var finalFlushWaitsForTick: Bool { get }

    /// Whether the flusher adds `status()` to each flush as statsd's own gauges
    /// (`<prefixStats>.backends.<name>.<figure>`): false for a backend that reports its figures itself (Graphite's
    /// `graphiteStats` lines) or has none worth sending (the console).
    var statusAsGauges: Bool { get }

    /// Whether `flush` takes the snapshot's late points (`|T` before the interval) apart, to send each group with its
    /// own interval's time (Graphite). Otherwise the flusher folds them into the interval's metrics first.
    var acceptsLatePoints: Bool { get }

    /// The page this backend serves on the HTTP port at `path` (Prometheus: `/metrics`), or nil.
    func page(_ path: String) -> HTTPPage?

    /// Whether the backend serves pages, so that the HTTP port must be open.
    var servesPages: Bool { get }

    /// What sees every packet as it arrives, before parsing (statsd's repeater), or nil.
    var packetForwarder: (any PacketForwarder)? { get }

    /// A long-lived part the daemon runs in its service group (started before, stopped after the listeners), or nil.
    var service: (any Service)? { get }
}

/// Sees every packet a listener receives, unparsed, bad lines included. Must not block.
public protocol PacketForwarder: Sendable {
    func forward(_ packet: UnsafeRawBufferPointer)
}

/// A page of the HTTP port.
public struct HTTPPage: Sendable {
    public var contentType: String
    public var body: String

    public init(contentType: String, body: String) {
        self.contentType = contentType
        self.body = body
    }
}

extension MetricsBackend {
    public var isHealthy: Bool { true }
    public var deliversUpstream: Bool { true }
    public var flushesOverlap: Bool { false }
    public var finalFlushWaitsForTick: Bool { false }
    public var statusAsGauges: Bool { true }
    public var acceptsLatePoints: Bool { false }
    public func page(_ path: String) -> HTTPPage? { nil }
    public var servesPages: Bool { false }
    public var packetForwarder: (any PacketForwarder)? { nil }
    public var service: (any Service)? { nil }
}

/// One flush as backends see it: statsd's `metrics` hash after `process_metrics`.
public struct FlushData: Sendable {
    /// Unix time in seconds (rounded, as statsd does), shared by every line of the flush.
    public var timestamp: Int
    /// The same moment in milliseconds, not rounded (for an upstream that takes milliseconds: a rounded second can
    /// be up to half a second ahead of the clock).
    public var unixMilliseconds: Int
    /// The interval's aggregates, timer samples sorted, statsd's own counters first and its `timestamp_lag`
    /// gauge included.
    public var snapshot: MetricSnapshot
    public var flushInterval: Duration
    /// statsd's `processing_time`: how long preparing the flush took (sent in whole milliseconds).
    public var processingTime: Duration
    public var timerStatistics: TimerStatisticsConfiguration
    /// statsd's `prefixStats`.
    public var prefixStats: String
    /// statsd's `percentThreshold`, for the console dump.
    public var percentThreshold: [Double]
    /// This is the last flush before the process exits.
    public var isFinal: Bool

    public init(
        timestamp: Int, snapshot: MetricSnapshot, flushInterval: Duration, processingTime: Duration,
        timerStatistics: TimerStatisticsConfiguration, prefixStats: String, percentThreshold: [Double],
        isFinal: Bool, unixMilliseconds: Int? = nil
    ) {
        self.timestamp = timestamp
        self.unixMilliseconds = unixMilliseconds ?? timestamp * 1000
        self.snapshot = snapshot
        self.flushInterval = flushInterval
        self.processingTime = processingTime
        self.timerStatistics = timerStatistics
        self.prefixStats = prefixStats
        self.percentThreshold = percentThreshold
        self.isFinal = isFinal
    }

    /// Each group of late points as a flush of its own, at the time of the interval it belongs to (for a backend
    /// that takes per-point times).
    public var lateFlushes: [FlushData] {
        self.snapshot.late.map { group in
            var late = self
            late.timestamp = group.timestamp
            late.unixMilliseconds = group.timestamp * 1000
            late.snapshot = group.snapshot
            return late
        }
    }

    /// This flush with its late points folded into the interval's metrics (for a backend without timestamps).
    public func foldingLatePoints() -> FlushData {
        var data = self
        data.snapshot = self.snapshot.foldingLatePoints()
        return data
    }

    /// statsd's `numStats`: how many keys of every kind the flush holds.
    public var numStats: Int {
        self.snapshot.counters.count + self.snapshot.timers.count + self.snapshot.gauges.count
            + self.snapshot.sets.count
    }
}
