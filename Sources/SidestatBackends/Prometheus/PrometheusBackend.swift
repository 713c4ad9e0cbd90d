//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import SidestatAggregation
import SidestatProtocol
import Synchronization

/// The Prometheus backend: what each flush brings is folded into series that `/metrics` serves in the text
/// exposition format. Counters are monotonic totals across flushes (`<name>_total`), gauges and set sizes are
/// gauges, timers are histograms in seconds (`<name>_seconds`, with the configured buckets), and DogStatsD
/// distributions (`|d`) are histograms of their own values (`<name>`, with the distribution buckets). Every series
/// carries the instance name as the `sidestat_instance` label (not `instance`, which Prometheus sets itself on
/// scrape) and a key's tags as labels.
public final class PrometheusBackend: MetricsBackend {
    public let name = "prometheus"
    let buckets: [Double]
    let distributionBuckets: [Double]
    let instance: String

    enum Kind: String {
        case counter
        case gauge
        case histogram
    }

    struct Histogram {
        var bounds: [Double]
        var counts: [UInt64]  // per bucket, not cumulative; the last is +Inf
        var sum: Double = 0
        var count: UInt64 = 0
    }

    struct State {
        var kinds: [String: Kind] = [:]
        var values: [String: [String: Double]] = [:]  // family → labels → value
        var histograms: [String: [String: Histogram]] = [:]
        var conflicts: Set<String> = []
        var lastFlush: Double
        /// Series a flush brought past `seriesBudget`, since start.
        var seriesDropped = 0
    }

    let state: Mutex<State>
    /// The most series of each Prometheus type (counter, gauge, histogram) the page holds.
    let seriesBudget: Int

    public let destination: String

    /// - Parameters:
    ///   - endpoint: where `/metrics` is served, for the start-up line.
    ///   - seriesBudget: the configuration's `seriesBudget`, here the most series of each Prometheus type.
    public init(
        buckets: [Double], distributionBuckets: [Double] = PrometheusConfiguration().distributionBuckets,
        instance: String, startupTime: Double, endpoint: String = "", seriesBudget: Int = 100_000
    ) {
        self.destination = "scraped at \(endpoint)/metrics"
        self.buckets = buckets
        self.distributionBuckets = distributionBuckets
        self.instance = instance
        self.seriesBudget = seriesBudget
        self.state = Mutex(State(lastFlush: startupTime))
    }

    public func status() -> [(name: String, value: Double)] {
        let (lastFlush, series, dropped) = self.state.withLock { state in
            (
                state.lastFlush,
                state.values.values.reduce(0) { $0 + $1.count } + state.histograms.values.reduce(0) { $0 + $1.count },
                state.seriesDropped
            )
        }
        return [("last_flush", lastFlush), ("series", Double(series)), ("series_dropped", Double(dropped))]
    }

    /// Each flush rebuilds the page from the keys it brings: a series keeps its total (counters, histograms) while
    /// its key is flushed, and leaves the page when a flush no longer has it. So the idle-key settings apply as they
    /// do upstream: with `deleteIdleStats` (or `deleteCounters`, ...) an idle key leaves after one empty interval
    /// (and a counter that comes back starts again from 0, which Prometheus reads as a counter reset); without
    /// them, statsd flushes idle keys on (0, or the last gauge value) and the series stay. Past `seriesBudget`
    /// series of one type, new series are left out and counted.
    public func flush(_ data: FlushData, deadline: ContinuousClock.Instant, logger: Logger) async {
        let snapshot = data.snapshot
        var conflicts: [String] = []
        var dropped = 0
        self.state.withLock { state in
            var kinds: [String: Kind] = [:]
            var values: [String: [String: Double]] = [:]
            var histograms: [String: [String: Histogram]] = [:]
            // Series already on the page keep their place; a new one counts against the budget together with all
            // of those (some may not come back: the bound is then strict by one flush).
            var counts: [Kind: Int] = [:]
            for (family, series) in state.values { counts[state.kinds[family] ?? .gauge, default: 0] += series.count }
            for series in state.histograms.values { counts[.histogram, default: 0] += series.count }
            /// Whether the series (`family`, `labels`) may be on the page: its family has that one kind, and it is
            /// already there or the budget has room.
            func admit(_ family: String, _ labels: String, _ kind: Kind) -> Bool {
                if let existing = kinds[family] ?? state.kinds[family], existing != kind {
                    if state.conflicts.insert(family).inserted { conflicts.append(family) }
                    return false
                }
                let known = kind == .histogram
                    ? histograms[family]?[labels] != nil : values[family]?[labels] != nil
                if !known {
                    let wasThere = kind == .histogram
                        ? state.histograms[family]?[labels] != nil : state.values[family]?[labels] != nil
                    guard wasThere || counts[kind, default: 0] < self.seriesBudget else {
                        dropped += 1
                        return false
                    }
                    counts[kind, default: 0] += 1
                }
                kinds[family] = kind
                return true
            }
            for counter in snapshot.counters where counter.value.isFinite {
                let (name, labels) = self.series(snapshot.string(counter.key))
                let family = name + "_total"
                guard admit(family, labels, .counter) else { continue }
                let total = values[family]?[labels] ?? state.values[family]?[labels] ?? 0
                values[family, default: [:]][labels] = total + counter.value
            }
            for gauge in snapshot.gauges where gauge.value.isFinite {
                let (name, labels) = self.series(snapshot.string(gauge.key))
                guard admit(name, labels, .gauge) else { continue }
                values[name, default: [:]][labels] = gauge.value
            }
            for set in snapshot.sets {
                let (name, labels) = self.series(snapshot.string(set.key))
                guard admit(name, labels, .gauge) else { continue }
                values[name, default: [:]][labels] = Double(set.members.count)
            }
            for timer in snapshot.timers {
                let (name, labels) = self.series(snapshot.string(timer.key))
                // A timer's milliseconds become seconds; a distribution's values are kept as they are.
                let family = timer.isDistribution ? name : name + "_seconds"
                let scale = timer.isDistribution ? 1 : 1.0 / 1000
                guard admit(family, labels, .histogram) else { continue }
                let bounds = timer.isDistribution ? self.distributionBuckets : self.buckets
                var histogram = histograms[family]?[labels] ?? state.histograms[family]?[labels]
                    ?? Histogram(bounds: bounds, counts: [UInt64](repeating: 0, count: bounds.count + 1))
                for value in snapshot.timerSamples[timer.samples] where value.isFinite {
                    let scaled = value * scale
                    let index = histogram.bounds.firstIndex { scaled <= $0 } ?? histogram.bounds.count
                    histogram.counts[index] += 1
                    histogram.sum += scaled
                    histogram.count += 1
                }
                histograms[family, default: [:]][labels] = histogram
            }
            state.kinds = kinds
            state.values = values
            state.histograms = histograms
            state.seriesDropped += dropped
            state.lastFlush = Double(data.timestamp)
        }
        for name in conflicts {
            logger.warning(
                "A key is used as two statsd types; Prometheus keeps the first",
                metadata: ["backend.name": "prometheus", "metric": "\(name)"])
        }
        if dropped > 0 {
            logger.warning(
                "Prometheus series budget reached: new series left out of /metrics",
                metadata: [
                    "backend.name": "prometheus", "series.dropped": "\(dropped)", "series.budget": "\(self.seriesBudget)",
                ])
        }
    }

    /// The metric name and rendered labels (`{a="b",sidestat_instance="web.1"}`) of a statsd key.
    func series(_ key: String) -> (String, String) {
        let metric = MetricName(key)
        var labels = metric.tags.map { (Self.labelName($0.key), $0.value) }.filter { !$0.0.hasPrefix("__") }
        labels.append(("sidestat_instance", self.instance))
        let rendered = labels.sorted { $0.0 < $1.0 }.map { "\($0.0)=\"\(Self.escape($0.1))\"" }.joined(separator: ",")
        return (Self.metricName(metric.name), rendered)
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`: anything else becomes `_`.
    static func metricName(_ text: String) -> String {
        var name = String(text.unicodeScalars.map { scalar -> Character in
            let allowed = ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar)
                || scalar == "_" || scalar == ":"
            return allowed ? Character(scalar) : "_"
        })
        if name.isEmpty || name.first!.isNumber { name = "_" + name }
        return name
    }

    static func labelName(_ text: String) -> String {
        self.metricName(text).replacingColons()
    }

    static func escape(_ value: String) -> String {
        var out = ""
        for character in value {
            switch character {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(character)
            }
        }
        return out
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

    /// The text exposition format (version 0.0.4).
    public func render() -> String {
        self.state.withLock { state in
            var out = ""
            for family in state.kinds.keys.sorted() {
                let kind = state.kinds[family]!
                out += "# HELP \(family) statsd \(kind == .histogram ? "timer or distribution" : kind.rawValue), from Sidestat\n"
                out += "# TYPE \(family) \(kind.rawValue)\n"
                if kind == .histogram {
                    for (labels, histogram) in (state.histograms[family] ?? [:]).sorted(by: { $0.key < $1.key }) {
                        let prefix = labels.isEmpty ? "" : labels + ","
                        var cumulative: UInt64 = 0
                        for (index, bound) in histogram.bounds.enumerated() {
                            cumulative += histogram.counts[index]
                            out += "\(family)_bucket{\(prefix)le=\"\(Self.number(bound))\"} \(cumulative)\n"
                        }
                        out += "\(family)_bucket{\(prefix)le=\"+Inf\"} \(histogram.count)\n"
                        out += "\(family)_sum{\(labels)} \(Self.number(histogram.sum))\n"
                        out += "\(family)_count{\(labels)} \(histogram.count)\n"
                    }
                } else {
                    for (labels, value) in (state.values[family] ?? [:]).sorted(by: { $0.key < $1.key }) {
                        out += "\(family){\(labels)} \(Self.number(value))\n"
                    }
                }
            }
            return out
        }
    }
}

extension String {
    func replacingColons() -> String { String(self.map { $0 == ":" ? "_" : $0 }) }
}
