//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatAggregation
import SidestatBackends

/// A flush as the flusher hands it to backends, built from plain values: keys as statsd stores them (tags as
/// `;name=value`), timer samples in milliseconds.
func makeFlush(
    counters: [(String, Double)] = [], gauges: [(String, Double)] = [], sets: [(String, [String])] = [],
    timers: [(String, [Double])] = [], distributions: [(String, [Double])] = [], timestamp: Int = 1_700_000_000,
    isFinal: Bool = false
) -> FlushData {
    var snapshot = MetricSnapshot()
    for (key, value) in counters {
        snapshot.counters.append(.init(key: snapshot.store(key), value: value))
    }
    for (key, value) in gauges {
        snapshot.gauges.append(.init(key: snapshot.store(key), value: value, updated: 0))
    }
    for (key, members) in sets {
        let start = snapshot.setMembers.count
        for member in members { snapshot.setMembers.append(snapshot.store(member)) }
        snapshot.sets.append(.init(key: snapshot.store(key), members: start..<snapshot.setMembers.count))
    }
    for (isDistribution, list) in [(false, timers), (true, distributions)] {
        for (key, samples) in list {
            let start = snapshot.timerSamples.count
            snapshot.timerSamples += samples.sorted()
            snapshot.timers.append(
                .init(
                    key: snapshot.store(key), samples: start..<snapshot.timerSamples.count, count: Double(samples.count),
                    isDistribution: isDistribution))
        }
    }
    let statistics = TimerStatisticsConfiguration(
        percentThreshold: [90], histogram: [], calculatedTimerMetrics: nil, flushIntervalSeconds: 10)
    return FlushData(
        timestamp: timestamp, snapshot: snapshot, flushInterval: .seconds(10), processingTime: .zero,
        timerStatistics: statistics, prefixStats: "statsd", percentThreshold: [90], isFinal: isFinal)
}
