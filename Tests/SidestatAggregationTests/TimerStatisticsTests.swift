//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatAggregation
import Testing

struct TimerStatisticsTests {
    func statistics(
        _ samples: [Double], thresholds: [Double] = [90], histogram: [(String, [(Double?, String)])] = [],
        filter: [String]? = nil, key: String = "t"
    ) -> [(String, Double)] {
        let configuration = TimerStatisticsConfiguration(
            percentThreshold: thresholds, histogram: histogram.map { ($0.0, $0.1.map { ($0.0, $0.1) }) },
            calculatedTimerMetrics: filter, flushIntervalSeconds: 10)
        let calculator = TimerStatisticsCalculator(configuration: configuration)
        var result: [(String, Double)] = []
        let sorted = samples.sorted()
        sorted.withUnsafeBufferPointer { buffer in
            var bytes = Array(key.utf8)
            bytes.withUnsafeMutableBytes { keyBytes in
                calculator.forEachStatistic(
                    samples: buffer, count: Double(samples.count), key: UnsafeRawBufferPointer(keyBytes)
                ) { statistic, value in
                    result.append((configuration.statisticNames[statistic], value))
                }
            }
        }
        return result
    }

    @Test("statistics come in statsd's order with statsd's values")
    func order() {
        let result = self.statistics([1, 2, 3, 4])
        #expect(result.map(\.0) == [
            "count_90", "mean_90", "upper_90", "sum_90", "sum_squares_90", "std", "upper", "lower", "count",
            "count_ps", "sum", "sum_squares", "mean", "median",
        ])
        #expect(result.map(\.1) == [4, 2.5, 4, 10, 30, 1.118033988749895, 4, 1, 4, 0.4, 10, 30, 2.5, 2.5])
    }

    @Test("a negative threshold that takes every value does not read before the first one (no NaN)")
    func topAll() {
        let result = self.statistics((1...100).map(Double.init), thresholds: [-99.9])
        #expect(result.first { $0.0 == "sum_top99_9" }?.1 == 5050)
        #expect(!result.contains { $0.1.isNaN })
    }

    @Test("calculatedTimerMetrics keeps only the named statistics; decimal percentiles cannot be named, as in statsd")
    func filter() {
        let result = self.statistics([1, 2], thresholds: [90, 99.9], filter: ["upper_percent", "mean"])
        #expect(result.map(\.0) == ["upper_90", "mean"])
    }

    @Test("histograms: the first matching rule, exclusive upper bins, inf catches the rest")
    func histogram() {
        let result = self.statistics(
            [0.5, 1, 5, 20], histogram: [("zzz", [(1, "1")]), ("t", [(1, "1"), (10, "10"), (nil, "inf")])],
            filter: ["histogram"])
        #expect(result.map(\.0) == ["histogram.bin_1", "histogram.bin_10", "histogram.bin_inf"])
        #expect(result.map(\.1) == [1, 2, 1])
    }

    @Test("an idle timer reports only count_ps and count, both 0")
    func idle() {
        #expect(self.statistics([]).map(\.0) == ["count_ps", "count"])
    }
}
