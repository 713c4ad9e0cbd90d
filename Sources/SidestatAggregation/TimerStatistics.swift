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
    /// Every statistic's name by its ID: percentile `i` field `k` is `5i + k`, then the nine fixed statistics,
    /// then each histogram rule's bins (as `histogram.bin_x`). Encoders prepare their bytes once per flush.
    public private(set) var statisticNames: [String] = []
    /// The ID of each histogram rule's first bin.
    public private(set) var histogramBase: [Int] = []

    /// The ID of the first fixed statistic (`std`).
    public var fixedBase: Int { self.percentiles.count * 5 }
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
        self.statisticNames = self.percentiles.flatMap(\.names) + Self.fixedNames
        for rule in self.histograms {
            self.histogramBase.append(self.statisticNames.count)
            self.statisticNames += rule.bins.map { "histogram." + $0.name }
        }
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

    /// The histogram rule for a key: the first whose metric the key contains.
    public func histogramRule(for key: UnsafeRawBufferPointer) -> Int? {
        for (index, rule) in self.histograms.enumerated() {
            if rule.metric.isEmpty || Self.contains(key, rule.metric) { return index }
        }
        return nil
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
/// same order, reusing its scratch memory from one timer to the next. A class, so that encoders share one without
/// copying its buffers.
public final class TimerStatisticsCalculator {
    public let configuration: TimerStatisticsConfiguration
    private var cumulative: UnsafeMutablePointer<Double>
    private var cumulativeSquares: UnsafeMutablePointer<Double>
    private var capacity = 0

    public init(configuration: TimerStatisticsConfiguration) {
        self.configuration = configuration
        self.cumulative = .allocate(capacity: 1)
        self.cumulativeSquares = .allocate(capacity: 1)
    }

    deinit {
        self.cumulative.deallocate()
        self.cumulativeSquares.deallocate()
    }

    /// Calls `body` with each statistic's ID (see `TimerStatisticsConfiguration.statisticNames`) and value.
    /// `samples` must be sorted ascending; `count` is Σ 1/sampleRate.
    @inline(__always)
    public func forEachStatistic(
        samples: UnsafeBufferPointer<Double>, count weightedCount: Double, key: UnsafeRawBufferPointer,
        _ body: (_ statistic: Int, _ value: Double) -> Void
    ) {
        let config = self.configuration
        let fixed = config.fixedBase
        let kept = config.keptFixed
        let n = samples.count
        guard n > 0 else {
            // An idle timer (kept between flushes) reports only its rate and count, in this order.
            if kept[4] { body(fixed + 4, 0) }
            if kept[3] { body(fixed + 3, 0) }
            return
        }
        if self.capacity < n {
            self.cumulative.deallocate()
            self.cumulativeSquares.deallocate()
            self.capacity = max(n, self.capacity * 2)
            self.cumulative = .allocate(capacity: self.capacity)
            self.cumulativeSquares = .allocate(capacity: self.capacity)
        }
        let cumulative = self.cumulative
        let squares = self.cumulativeSquares
        let minimum = samples[0]
        let maximum = samples[n - 1]
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
        for (index, percentile) in config.percentiles.enumerated() {
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
            let keptFields = percentile.kept
            let base = index * 5
            if keptFields[0] { body(base, Double(inThreshold)) }
            if keptFields[1] { body(base + 1, mean) }
            if keptFields[2] { body(base + 2, boundary) }
            if keptFields[3] { body(base + 3, sum) }
            if keptFields[4] { body(base + 4, sumSquares) }
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
        if kept[0] { body(fixed, standardDeviation) }
        if kept[1] { body(fixed + 1, maximum) }
        if kept[2] { body(fixed + 2, minimum) }
        if kept[3] { body(fixed + 3, weightedCount) }
        if kept[4] { body(fixed + 4, weightedCount / config.flushIntervalSeconds) }
        if kept[5] { body(fixed + 5, sum) }
        if kept[6] { body(fixed + 6, sumSquares) }
        if kept[7] { body(fixed + 7, mean) }
        if kept[8] { body(fixed + 8, median) }
        guard kept[9], !config.histograms.isEmpty, let rule = config.histogramRule(for: key) else { return }
        var position = 0
        let bins = config.histograms[rule].bins
        let base = config.histogramBase[rule]
        for (index, bin) in bins.enumerated() {
            var frequency = 0
            while position < n, bin.limit == nil || samples[position] < bin.limit! {
                frequency += 1
                position += 1
            }
            body(base + index, Double(frequency))
        }
    }
}
