//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import SidestatAggregation
import SidestatConfiguration
import SidestatSupport
import Synchronization

/// Prometheus Remote-Write 1.0: each flush is folded into the same series the `/metrics` page serves (cumulative
/// counters `<name>_total`, gauges, set sizes, timers `<name>_seconds` and distributions `<name>`, with
/// `sidestat_instance`), then sent as snappy-compressed `WriteRequest`s at the flush's time.
///
/// - Timers and distributions are native histograms (schema 3) unless `histograms: "classic"`.
/// - Flushes are handed over one at a time and one request is in flight, so every series' samples reach the
///   receiver in timestamp order; after an outage the held requests go first, with their original timestamps.
/// - A request holds at most `maximumSeries` series and about `maximumBytes` bytes before compression; float
///   samples and native histograms go in separate requests, so a receiver that refuses histograms still takes the
///   rest.
/// - A series that leaves (idle with `deleteIdleStats`, a management `del*`) gets a staleness marker.
public final class RemoteWriteBackend: MetricsBackend {
    public let name = "remotewrite"
    public let destination: String
    let native: Bool
    let delivery: Delivery<RemoteWriteTransport>

    /// The most series, and about the most bytes of protobuf (before compression), in one request.
    public static let maximumSeries = 5_000
    public static let maximumBytes = 1 << 20

    struct State {
        var table: PrometheusSeriesTable
        var warnings = PrometheusWarnings()
        /// The last flush's time in milliseconds: each flush's is later, even two in the same millisecond.
        var lastTimestamp: Int64 = 0
        /// The next request's number (the transport counts refusals of the one at the head).
        var sequence: UInt64 = 0
    }

    let state: Mutex<State>

    public convenience init(configuration: RemoteWriteConfiguration, context: BackendContext) {
        self.init(
            configuration: configuration, instance: context.configuration.instance,
            retryBufferBytes: context.configuration.retryBufferBytes, seriesBudget: context.configuration.seriesBudget,
            startupTime: context.startupTime)
    }

    public init(
        configuration: RemoteWriteConfiguration, instance: String, retryBufferBytes: Int = 16 << 20,
        seriesBudget: Int = 100_000, startupTime: Double, retryPolicy: RemoteWriteRetryPolicy = .init()
    ) {
        self.destination = "Prometheus Remote-Write to \(configuration.url) (\(configuration.histograms.rawValue) histograms)"
        self.native = configuration.histograms == .native
        let settings = PrometheusSeriesTable.Settings(
            naming: PrometheusNaming(
                instance: instance, labels: configuration.labels.map { PrometheusLabel(name: $0.key, value: $0.value) }),
            timerBuckets: configuration.buckets, distributionBuckets: configuration.distributionBuckets,
            native: self.native, seriesBudget: seriesBudget)
        self.state = Mutex(State(table: PrometheusSeriesTable(settings)))
        self.delivery = Delivery(
            name: "remotewrite \(configuration.url)", transport: RemoteWriteTransport(configuration, policy: retryPolicy),
            retryBufferBytes: retryBufferBytes, maxAttempts: 1, startupTime: startupTime)
    }

    package var statistics: DeliveryStatistics { self.delivery.statistics }

    public func status() -> [(name: String, value: Double)] {
        let (series, totals) = self.state.withLock { ($0.table.count, $0.table.totals) }
        return self.delivery.statistics.status + [("series", Double(series))] + totals.status
    }

    public var isHealthy: Bool { self.delivery.isHealthy }

    public func flush(_ data: FlushData, deadline: ContinuousClock.Instant, logger: Logger) async {
        let (report, warnings, timestamp, budget) = self.state.withLock { state in
            let report = state.table.fold(data.snapshot)
            state.lastTimestamp = max(Int64(data.unixMilliseconds), state.lastTimestamp + 1)
            return (
                report, state.warnings.take(report, at: data.timestamp), state.lastTimestamp,
                state.table.settings.seriesBudget
            )
        }
        warnings.log(report, backend: self.name, budget: budget, logger)
        let batcher = RemoteWriteBatcher(backend: self, removed: report.removed, timestamp: timestamp)
        await self.delivery.deliver({ batcher.next() }, isFinal: data.isFinal, deadline: deadline, logger: logger)
    }

    /// Folds a flush in and makes all its requests at once, without sending them (for the benchmark and the tests).
    public func encode(_ data: FlushData) -> [RemoteWriteRequest] {
        let (report, timestamp) = self.state.withLock { state in
            let report = state.table.fold(data.snapshot)
            state.lastTimestamp = max(Int64(data.unixMilliseconds), state.lastTimestamp + 1)
            return (report, state.lastTimestamp)
        }
        let batcher = RemoteWriteBatcher(backend: self, removed: report.removed, timestamp: timestamp)
        var requests: [RemoteWriteRequest] = []
        while let request = batcher.next() { requests.append(request) }
        return requests
    }

    /// Writes the next request's series, from `cursor` on: staleness markers first, then float samples, then (in
    /// its own requests) native histograms. Returns nil when there is nothing left.
    fileprivate func encode(_ cursor: inout RemoteWriteBatcher.Cursor, removed: [PrometheusSeriesTable.Series], timestamp: Int64)
        -> RemoteWriteRequest?
    {
        var writer = WriteRequestWriter(capacity: 64 << 10)
        var hasHistograms = false
        func full() -> Bool { writer.series >= Self.maximumSeries || writer.bytes.count >= Self.maximumBytes }
        while cursor.removed < removed.count, !full() {
            let series = removed[cursor.removed]
            cursor.removed += 1
            self.staleness(series, timestamp: timestamp, into: &writer)
        }
        self.state.withLock { state in
            // Floats: counters, gauges, and classic histograms' series.
            while cursor.phase == .floats, !full() {
                guard cursor.index < state.table.series.count else {
                    cursor.phase = self.native ? .histograms : .done
                    cursor.index = 0
                    break
                }
                let index = cursor.index
                cursor.index += 1
                guard state.table.series[index].live else { continue }
                if state.table.series[index].kind == .histogram {
                    if !self.native {
                        self.classic(
                            state.table.series[index], state.table.series[index].histogram, state.table.settings,
                            timestamp, &writer)
                    }
                    continue
                }
                if state.table.series[index].wire.isEmpty {
                    let series = state.table.series[index]
                    state.table.setWire(index, WriteRequestWriter.labels(name: series.family, series.labels))
                }
                writer.sample(
                    labels: state.table.series[index].wire, value: state.table.series[index].value, timestamp: timestamp)
            }
            // Native histograms, never in the same request as floats.
            if cursor.phase == .histograms, writer.series > 0, cursor.index == 0 { return }
            while cursor.phase == .histograms, !full() {
                guard cursor.index < state.table.series.count else {
                    cursor.phase = .done
                    break
                }
                let index = cursor.index
                cursor.index += 1
                guard state.table.series[index].live, state.table.series[index].kind == .histogram else { continue }
                if state.table.series[index].wire.isEmpty {
                    let series = state.table.series[index]
                    state.table.setWire(index, WriteRequestWriter.labels(name: series.family, series.labels))
                }
                hasHistograms = true
                writer.histogram(
                    labels: state.table.series[index].wire, state.table.series[index].histogram.native,
                    count: state.table.series[index].histogram.count, sum: state.table.series[index].histogram.sum,
                    isReset: state.table.isNew(index), timestamp: timestamp)
            }
        }
        guard writer.series > 0 else { return nil }
        let sequence = self.state.withLock { state -> UInt64 in
            state.sequence += 1
            return state.sequence
        }
        let body = writer.bytes.withUnsafeBytes { Snappy.compress($0) }
        return RemoteWriteRequest(
            body: body, points: writer.points, sequence: sequence, hasHistograms: hasHistograms,
            uncompressedBytes: writer.bytes.count)
    }

    /// A classic histogram's series: `_bucket` for each bound and +Inf (cumulative), `_sum` and `_count`.
    private func classic(
        _ series: PrometheusSeriesTable.Series, _ histogram: PrometheusHistogram, _ settings: PrometheusSeriesTable.Settings,
        _ timestamp: Int64, _ writer: inout WriteRequestWriter
    ) {
        let bounds = series.isDistribution ? settings.distributionBuckets : settings.timerBuckets
        var cumulative: UInt64 = 0
        for (index, bound) in bounds.enumerated() {
            cumulative += histogram.classic[index]
            let labels = WriteRequestWriter.labels(
                name: series.family + "_bucket", series.labels, le: PrometheusBackend.number(bound))
            writer.sample(labels: labels, value: Double(cumulative), timestamp: timestamp)
        }
        let inf = WriteRequestWriter.labels(name: series.family + "_bucket", series.labels, le: "+Inf")
        writer.sample(labels: inf, value: Double(histogram.count), timestamp: timestamp)
        writer.sample(
            labels: WriteRequestWriter.labels(name: series.family + "_sum", series.labels), value: histogram.sum,
            timestamp: timestamp)
        writer.sample(
            labels: WriteRequestWriter.labels(name: series.family + "_count", series.labels),
            value: Double(histogram.count), timestamp: timestamp)
    }

    /// The staleness markers of a series that left: on the series itself, or on each of a classic histogram's.
    private func staleness(_ series: PrometheusSeriesTable.Series, timestamp: Int64, into writer: inout WriteRequestWriter) {
        let stale = WriteRequestWriter.staleNaN
        guard series.kind == .histogram, !self.native else {
            let labels = series.wire.isEmpty ? WriteRequestWriter.labels(name: series.family, series.labels) : series.wire
            writer.sample(labels: labels, value: stale, timestamp: timestamp)
            return
        }
        let bounds = series.isDistribution
            ? self.state.withLock { $0.table.settings.distributionBuckets }
            : self.state.withLock { $0.table.settings.timerBuckets }
        for le in bounds.map(PrometheusBackend.number) + ["+Inf"] {
            writer.sample(
                labels: WriteRequestWriter.labels(name: series.family + "_bucket", series.labels, le: le), value: stale,
                timestamp: timestamp)
        }
        for suffix in ["_sum", "_count"] {
            writer.sample(
                labels: WriteRequestWriter.labels(name: series.family + suffix, series.labels), value: stale,
                timestamp: timestamp)
        }
    }
}

/// One flush's requests, made as the delivery engine asks for them.
final class RemoteWriteBatcher: @unchecked Sendable {
    // @unchecked: one delivery attempt uses it at a time (the engine's `fresh` closure), never two threads at once.
    struct Cursor {
        enum Phase { case floats, histograms, done }
        var removed = 0
        var phase = Phase.floats
        var index = 0
    }

    let backend: RemoteWriteBackend
    let removed: [PrometheusSeriesTable.Series]
    let timestamp: Int64
    var cursor = Cursor()

    init(backend: RemoteWriteBackend, removed: [PrometheusSeriesTable.Series], timestamp: Int64) {
        self.backend = backend
        self.removed = removed
        self.timestamp = timestamp
    }

    func next() -> RemoteWriteRequest? {
        guard self.cursor.phase != .done || self.cursor.removed < self.removed.count else { return nil }
        return self.backend.encode(&self.cursor, removed: self.removed, timestamp: self.timestamp)
    }
}

/// One compressed `WriteRequest`.
public struct RemoteWriteRequest: DeliveryPayload {
    /// The Snappy-compressed protobuf.
    public var body: [UInt8]
    /// The samples it carries (a histogram is one).
    public var points: Int
    /// Its place among the requests this backend made (the transport counts refusals of the one at the head).
    public var sequence: UInt64
    /// Whether it carries native histograms.
    public var hasHistograms: Bool
    /// The protobuf's size before compression, in bytes.
    public var uncompressedBytes: Int

    public var byteCount: Int { self.body.count }
}
