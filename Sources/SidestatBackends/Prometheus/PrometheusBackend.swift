//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import SidestatAggregation
import SidestatProtocol
import Synchronization

/// The Prometheus backend: what each flush brings is folded into series (`PrometheusSeriesTable`) that `/metrics`
/// serves in the text exposition format. Counters are monotonic totals across flushes (`<name>_total`), gauges and
/// set sizes are gauges, timers are histograms in seconds (`<name>_seconds`, with the configured buckets), and
/// DogStatsD distributions (`|d`) are histograms of their own values (`<name>`, with the distribution buckets).
/// Every series carries the instance name as the `sidestat_instance` label (not `instance`, which Prometheus sets
/// itself on scrape) and a key's tags as labels, made valid whatever a client sends (`PrometheusNaming`).
public final class PrometheusBackend: MetricsBackend {
    public let name = "prometheus"

    struct State {
        var table: PrometheusSeriesTable
        var lastFlush: Double
        var warnings = PrometheusWarnings()
    }

    let state: Mutex<State>

    public let destination: String

    /// - Parameters:
    ///   - endpoint: where `/metrics` is served, for the start-up line.
    ///   - seriesBudget: the configuration's `seriesBudget`, here the most series of each Prometheus type.
    public init(
        buckets: [Double], distributionBuckets: [Double] = PrometheusConfiguration().distributionBuckets,
        instance: String, startupTime: Double, endpoint: String = "", seriesBudget: Int = 100_000
    ) {
        self.destination = "scraped at \(endpoint)/metrics"
        let settings = PrometheusSeriesTable.Settings(
            naming: PrometheusNaming(instance: instance), timerBuckets: buckets,
            distributionBuckets: distributionBuckets, native: false, seriesBudget: seriesBudget)
        self.state = Mutex(State(table: PrometheusSeriesTable(settings), lastFlush: startupTime))
    }

    public func status() -> [(name: String, value: Double)] {
        self.state.withLock { state in
            [("last_flush", state.lastFlush), ("series", Double(state.table.count))] + state.table.totals.status
        }
    }

    /// Folds the flush into the series. A series keeps its total (counters, histograms) while its key is flushed,
    /// and leaves the page when a flush no longer has it. So the idle-key settings apply as they do upstream: with
    /// `deleteIdleStats` (or `deleteCounters`, ...) an idle key leaves after one empty interval (and a counter that
    /// comes back starts again from 0, which Prometheus reads as a counter reset); without them, statsd flushes
    /// idle keys on (0, or the last gauge value) and the series stay.
    public func flush(_ data: FlushData, deadline: ContinuousClock.Instant, logger: Logger) async {
        let (report, warnings) = self.state.withLock { state in
            let report = state.table.fold(data.snapshot)
            state.lastFlush = Double(data.timestamp)
            return (report, state.warnings.take(report, at: data.timestamp))
        }
        warnings.log(report, backend: self.name, budget: self.state.withLock { $0.table.settings.seriesBudget }, logger)
    }

    static func number(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        return JSNumber.string(value)
    }

    public var servesPages: Bool { true }

    public func page(_ path: String) -> HTTPPage? {
        guard path == "/metrics" else { return nil }
        return HTTPPage(contentType: "text/plain; version=0.0.4; charset=utf-8", body: self.render())
    }

    /// The text exposition format (version 0.0.4): families sorted by name, each family's series by labels.
    public func render() -> String {
        self.state.withLock { state in
            let table = state.table
            var byFamily: [String: [Int]] = [:]
            for (index, series) in table.series.enumerated() where series.live {
                byFamily[series.family, default: []].append(index)
            }
            var out = ""
            for family in byFamily.keys.sorted() {
                let members = byFamily[family]!.map { table.series[$0] }.sorted { $0.rendered < $1.rendered }
                let kind = members[0].kind
                let what = kind == .histogram ? (members[0].isDistribution ? "distribution" : "timer") : kind.rawValue
                out += "# HELP \(family) statsd \(what), from Sidestat\n"
                out += "# TYPE \(family) \(kind.rawValue)\n"
                for series in members {
                    guard series.kind == .histogram else {
                        out += "\(family)\(series.rendered) \(Self.number(series.value))\n"
                        continue
                    }
                    let histogram = series.histogram
                    let bounds = series.isDistribution ? table.settings.distributionBuckets : table.settings.timerBuckets
                    // `le` goes last, after the sorted labels, as client libraries write it.
                    let prefix = String(series.rendered.dropLast()) + ","
                    var cumulative: UInt64 = 0
                    for (index, bound) in bounds.enumerated() {
                        cumulative += histogram.classic[index]
                        out += "\(family)_bucket\(prefix)le=\"\(Self.number(bound))\"} \(cumulative)\n"
                    }
                    out += "\(family)_bucket\(prefix)le=\"+Inf\"} \(histogram.count)\n"
                    out += "\(family)_sum\(series.rendered) \(Self.number(histogram.sum))\n"
                    out += "\(family)_count\(series.rendered) \(histogram.count)\n"
                }
            }
            return out
        }
    }
}

extension PrometheusSeriesTable.Totals {
    /// The figures `status()` reports, after `last_flush` and `series`.
    var status: [(name: String, value: Double)] {
        [
            ("series_dropped", Double(self.seriesDropped)), ("name_clashes", Double(self.nameClashes)),
            ("negative_increments", Double(self.negativeIncrements)),
            ("non_finite_values", Double(self.nonFiniteValues)),
        ]
    }
}

/// The warnings a fold gives, shared by `/metrics` and remote write: a name clash once per family, a negative
/// increment or a value that is not finite at most once a minute, the series budget at every flush that reaches it.
struct PrometheusWarnings: Sendable {
    var lastNegative: Int? = nil
    var lastNonFinite: Int? = nil

    /// Which of the report's rate-limited warnings are due at `time` (Unix seconds).
    mutating func take(_ report: PrometheusSeriesTable.FoldReport, at time: Int) -> Due {
        var due = Due()
        if report.negative > 0, self.lastNegative.map({ time - $0 >= 60 }) ?? true {
            self.lastNegative = time
            due.negative = true
        }
        if report.nonFinite > 0, self.lastNonFinite.map({ time - $0 >= 60 }) ?? true {
            self.lastNonFinite = time
            due.nonFinite = true
        }
        return due
    }

    struct Due {
        var negative = false
        var nonFinite = false

        func log(_ report: PrometheusSeriesTable.FoldReport, backend: String, budget: Int, _ logger: Logger) {
            for family in report.newClashes {
                logger.warning(
                    "A metric name is taken by another metric family (another statsd type, or a histogram's _bucket, _sum or _count); its series are left out",
                    metadata: ["backend.name": "\(backend)", "metric": "\(family)"])
            }
            if self.negative {
                logger.warning(
                    "A negative increment of a statsd counter is left out: a Prometheus counter never goes down",
                    metadata: ["backend.name": "\(backend)", "counter.negative_increments": "\(report.negative)"])
            }
            if self.nonFinite {
                logger.warning(
                    "A value that would make a total, a sum or a gauge infinite is left out",
                    metadata: ["backend.name": "\(backend)", "values.left_out": "\(report.nonFinite)"])
            }
            if report.dropped > 0 {
                logger.warning(
                    "Prometheus series budget reached: new series left out",
                    metadata: [
                        "backend.name": "\(backend)", "series.dropped": "\(report.dropped)", "series.budget": "\(budget)",
                    ])
            }
        }
    }
}
