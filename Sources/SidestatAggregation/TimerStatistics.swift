//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatProtocol

/// The settings that shape timer statistics (statsd's `percentThreshold`, `histogram`,
/// `calculatedTimerMetrics` and `flushInterval`), with every statistic's name prepared once.
public struct TimerStatisticsConfiguration: Sendable {
    public struct Percentile: Sendable {
        public var threshold: Double
        /// `count_90`, `mean_90`, `upper_90` (or `lower_top10`), `sum_90`, `sum_squares_90`.
        public var names: [String]
        /// Whether each of `names` survives `calculatedTimerMetrics`.
        public var kept: [Bool]
    }

    public struct Histogram: Sendable {
        /// A key matches when it contains `metric` (the first match wins; "" matches every key).
        public var metric: [UInt8]
        /// Exclusive upper limits, nil for `inf`, with their names (`bin_0_01`, `bin_inf`).
        public var bins: [(limit: Double?, name: String)]
    }

    public var percentiles: [Percentile]
    public var histograms: [Histogram]
    public var flushIntervalSeconds: Double
    /// Whether `std`, `upper`, `lower`, `count`, `count_ps`, `sum`, `sum_squares`, `mean`, `median` and
    /// `histogram` are emitted (in that order).
    public var keptFixed: [Bool]

    public static let fixedNames = [
        "std", "upper", "lower", "count", "count_ps", "sum", "sum_squares", "mean", "median",
    ]

    /// - Parameters:
    ///   - percentThreshold: statsd's list, in order; values must be in (-100, 100] and not 0.
    ///   - histogram: `(metric, bins)` pairs, bins as numbers or nil for `inf`, with their names as given.
    ///   - calculatedTimerMetrics: nil or empty for all; otherwise the names statsd accepts
    ///     (`upper_percent`, `histogram`, `mean`, ...).
    public init(
        percentThreshold: [Double], histogram: [(metric: String, bins: [(limit: Double?, text: String)])],
        calculatedTimerMetrics: [String]?, flushIntervalSeconds: Double
    ) {
        let filter = (calculatedTimerMetrics?.isEmpty ?? true) ? nil : Set(calculatedTimerMetrics!)
        func kept(_ name: String) -> Bool {
            guard let filter else { return true }
            return filter.contains(Self.filterName(name))
        }
        self.percentiles = percentThreshold.map { threshold in
            var clean = JSNumber.string(threshold)
            if let dot = clean.firstIndex(of: ".") { clean.replaceSubrange(dot...dot, with: "_") }
            if let minus = clean.firstIndex(of: "-") { clean.replaceSubrange(minus...minus, with: "top") }
            let names = [
                "count_" + clean, "mean_" + clean, (threshold > 0 ? "upper_" : "lower_") + clean, "sum_" + clean,
                "sum_squares_" + clean,
            ]
            return Percentile(threshold: threshold, names: names, kept: names.map(kept))
        }
        self.histograms = histogram.map { rule in
            Histogram(
                metric: Array(rule.metric.utf8),
                bins: rule.bins.map { bin in
                    var name = bin.text
                    if let dot = name.firstIndex(of: ".") { name.replaceSubrange(dot...dot, with: "_") }
                    return (bin.limit, "bin_" + name)
                })
        }
        self.flushIntervalSeconds = flushIntervalSeconds
        self.keptFixed = (Self.fixedNames + ["histogram"]).map { name in
            guard let filter else { return true }
            return name == "histogram" ? filter.contains("histogram") : filter.contains(Self.filterName(name))
        }
    }

    /// statsd's `calculatedTimerMetrics` test: `upper_90` → `upper_percent`, `lower_top10` → `lower_percent`
    /// (`/_(top)?\d+$/` replaced by `_percent`).
    static func filterName(_ name: String) -> String {
        let bytes = Array(name.utf8)
        var end = bytes.count
        while end > 0, bytes[end - 1] >= UInt8(ascii: "0"), bytes[end - 1] <= UInt8(ascii: "9") { end -= 1 }
        guard end < bytes.count else { return name }
        var start = end
        if start >= 3, bytes[(start - 3)..<start].elementsEqual("top".utf8) { start -= 3 }
        guard start > 0, bytes[start - 1] == UInt8(ascii: "_") else { return name }
        return String(decoding: bytes[..<(start - 1)], as: UTF8.self) + "_percent"
    }

    /// The histogram bins for a key: the first rule whose metric the key contains.
    public func bins(for key: UnsafeRawBufferPointer) -> [(limit: Double?, name: String)] {
        for rule in self.histograms {
            if rule.metric.isEmpty || Self.contains(key, rule.metric) { return rule.bins }
        }
        return []
    }

    static func contains(_ haystack: UnsafeRawBufferPointer, _ needle: [UInt8]) -> Bool {
        guard needle.count <= haystack.count else { return false }
        var start = 0
        while start + needle.count <= haystack.count {
            var match = true
            for index in 0..<needle.count where haystack[start + index] != needle[index] {
                match = false
                break
            }
            if match { return true }
            start += 1
        }
        return false
    }
}

/// Computes a timer's statistics exactly as Etsy statsd's `process_metrics` does, value for value and in the
/// same order, reusing its scratch memory from one timer to the next.
public struct TimerStatisticsCalculator {
    public let configuration: TimerStatisticsConfiguration
    private var cumulative: [Double] = []
    private var cumulativeSquares: [Double] = []

    public init(configuration: TimerStatisticsConfiguration) {
        self.configuration = configuration
    }

    /// Calls `body` with each statistic's name and value. `samples` must be sorted ascending; `count` is
    /// Σ 1/sampleRate. Histogram bins arrive as `histogram` plus the bin name in `subname`.
    public mutating func forEachStatistic(
        samples: UnsafeBufferPointer<Double>, count weightedCount: Double, key: UnsafeRawBufferPointer,
        _ body: (_ name: String, _ subname: String?, _ value: Double) -> Void
    ) {
        let config = self.configuration
        let n = samples.count
        guard n > 0 else {
            // An idle timer (kept between flushes) reports only its rate and count, in this order.
            if config.keptFixed[4] { body("count_ps", nil, 0) }
            if config.keptFixed[3] { body("count", nil, 0) }
            return
        }
        if self.cumulative.count < n {
            self.cumulative = [Double](repeating: 0, count: n)
            self.cumulativeSquares = [Double](repeating: 0, count: n)
        }
        let minimum = samples[0]
        let maximum = samples[n - 1]
        self.cumulative.withUnsafeMutableBufferPointer { cumulative in
            self.cumulativeSquares.withUnsafeMutableBufferPointer { squares in
                cumulative[0] = minimum
                squares[0] = minimum * minimum
                var i = 1
                while i < n {
                    cumulative[i] = samples[i] + cumulative[i - 1]
                    squares[i] = samples[i] * samples[i] + squares[i - 1]
                    i += 1
                }
                var sum = minimum
                var sumSquares = minimum * minimum
                var mean = minimum
                var boundary = maximum
                for percentile in config.percentiles {
                    let threshold = percentile.threshold
                    var inThreshold = n
                    if n > 1 {
                        inThreshold = Int((abs(threshold) / 100 * Double(n)).rounded(.toNearestOrAwayFromZero))
                        if inThreshold == 0 { continue }
                        if threshold > 0 {
                            boundary = samples[inThreshold - 1]
                            sum = cumulative[inThreshold - 1]
                            sumSquares = squares[inThreshold - 1]
                        } else {
                            boundary = samples[n - inThreshold]
                            // statsd reads cumulative[-1] here when every value is in the threshold: it is 0.
                            let before = n - inThreshold - 1
                            sum = cumulative[n - 1] - (before >= 0 ? cumulative[before] : 0)
                            sumSquares = squares[n - 1] - (before >= 0 ? squares[before] : 0)
                        }
                        mean = sum / Double(inThreshold)
                    }
                    let kept = percentile.kept
                    let names = percentile.names
                    if kept[0] { body(names[0], nil, Double(inThreshold)) }
                    if kept[1] { body(names[1], nil, mean) }
                    if kept[2] { body(names[2], nil, boundary) }
                    if kept[3] { body(names[3], nil, sum) }
                    if kept[4] { body(names[4], nil, sumSquares) }
                }
                sum = cumulative[n - 1]
                sumSquares = squares[n - 1]
                mean = sum / Double(n)
                var sumOfDiffs = 0.0
                for index in 0..<n {
                    sumOfDiffs += (samples[index] - mean) * (samples[index] - mean)
                }
                let middle = n / 2
                let median = n % 2 == 1 ? samples[middle] : (samples[middle - 1] + samples[middle]) / 2
                let standardDeviation = (sumOfDiffs / Double(n)).squareRoot()
                let kept = config.keptFixed
                let names = TimerStatisticsConfiguration.fixedNames
                if kept[0] { body(names[0], nil, standardDeviation) }
                if kept[1] { body(names[1], nil, maximum) }
                if kept[2] { body(names[2], nil, minimum) }
                if kept[3] { body(names[3], nil, weightedCount) }
                if kept[4] { body(names[4], nil, weightedCount / config.flushIntervalSeconds) }
                if kept[5] { body(names[5], nil, sum) }
                if kept[6] { body(names[6], nil, sumSquares) }
                if kept[7] { body(names[7], nil, mean) }
                if kept[8] { body(names[8], nil, median) }
            }
        }
        guard config.keptFixed[9] else { return }
        let bins = config.bins(for: key)
        var position = 0
        for bin in bins {
            var frequency = 0
            while position < n, bin.limit == nil || samples[position] < bin.limit! {
                frequency += 1
                position += 1
            }
            body("histogram", bin.name, Double(frequency))
        }
    }
}
