//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatSupport
import Logging
import SidestatAggregation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Etsy statsd's console backend: prints each flush the way `console.log` prints statsd's metrics object.
public struct ConsoleBackend: MetricsBackend {
    public let name = "console"
    let output: any TextOutput
    let prettyPrint: Bool
    let startupTime: Double

    public init(output: any TextOutput, prettyPrint: Bool, startupTime: Double) {
        self.output = output
        self.prettyPrint = prettyPrint
        self.startupTime = startupTime
    }

    public var destination: String { "each flush printed to standard output" }

    public var deliversUpstream: Bool { false }

    public var statusAsGauges: Bool { false }

    public func status() -> [(name: String, value: Double)] {
        // statsd's console backend never updates these.
        [("lastFlush", self.startupTime), ("lastException", self.startupTime)]
    }

    public func flush(_ data: FlushData, deadline: ContinuousClock.Instant, logger: Logger) async {
        let text =
            // console.log('Flushing stats at ', date): two arguments, joined by a space.
            "Flushing stats at  \(WallClock.nodeDateString(unixSeconds: data.timestamp))\n"
            + NodeInspect.format(Self.inspectValue(data), depth: self.prettyPrint ? 5 : 2) + "\n"
        self.output.write(text)
    }

    /// The object statsd's console backend logs: counters, timers (raw samples), gauges, timer_data,
    /// counter_rates, sets (members) and pctThreshold.
    static func inspectValue(_ data: FlushData) -> InspectValue {
        let snapshot = data.snapshot
        let seconds = data.flushInterval.inSeconds
        var counters: [(String, InspectValue)] = []
        var rates: [(String, InspectValue)] = []
        for counter in snapshot.counters {
            let key = snapshot.string(counter.key)
            counters.append((key, .number(counter.value)))
            rates.append((key, .number(counter.value / seconds)))
        }
        var timers: [(String, InspectValue)] = []
        var timerData: [(String, InspectValue)] = []
        let calculator = TimerStatisticsCalculator(configuration: data.timerStatistics)
        let names = data.timerStatistics.statisticNames
        snapshot.timerSamples.withUnsafeBufferPointer { all in
            for timer in snapshot.timers {
                let key = snapshot.string(timer.key)
                let samples = UnsafeBufferPointer(rebasing: all[timer.samples])
                timers.append((key, .array(samples.map { .number($0) })))
                var statistics: [(String, InspectValue)] = []
                var histogram: [(String, InspectValue)] = []
                snapshot.withBytes(timer.key) { keyBytes in
                    calculator.forEachStatistic(samples: samples, count: timer.count, key: keyBytes) {
                        statistic, value in
                        let name = names[statistic]
                        if name.hasPrefix("histogram.") {
                            if histogram.isEmpty { statistics.append(("histogram", .object([]))) }
                            histogram.append((String(name.dropFirst("histogram.".count)), .number(value)))
                        } else {
                            statistics.append((name, .number(value)))
                        }
                    }
                }
                if let index = statistics.firstIndex(where: { $0.0 == "histogram" }) {
                    statistics[index].1 = .object(histogram)
                }
                timerData.append((key, .object(statistics)))
            }
        }
        let gauges = snapshot.gauges.map { (snapshot.string($0.key), InspectValue.number($0.value)) }
        let sets = snapshot.sets.map { set in
            (snapshot.string(set.key), InspectValue.array(snapshot.setMembers[set.members].map { .string(snapshot.string($0)) }))
        }
        var object: [(String, InspectValue)] = [
            ("counters", .object(counters)),
            ("timers", .object(timers)),
            ("gauges", .object(gauges)),
            ("timer_data", .object(timerData)),
            ("counter_rates", .object(rates)),
            ("sets", .object(sets)),
            ("pctThreshold", .array(data.percentThreshold.map { .number($0) })),
        ]
        // DogStatsD's events and service checks as received (statsd has none: only when there are some).
        if !snapshot.events.isEmpty { object.append(("events", .array(snapshot.events.map { .string($0) }))) }
        return .object(object)
    }
}
