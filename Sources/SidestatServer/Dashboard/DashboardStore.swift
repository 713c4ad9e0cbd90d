//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatAggregation
import SidestatBackends
import SidestatSupport
import Synchronization

/// The dashboard's history: the last `slots` flushes of every key of every type (a key sent as a counter and as a
/// gauge is two rows), in fixed rings of Double (a Unix time or a count past 2^24 shows exactly), fed from the flush
/// snapshots (never from ingest). Counters are kept as rates per second, gauges as values, timers as three lanes
/// (median, 90th percentile, maximum) and sets as their cardinality. Past the memory budget, the series updated
/// longest ago are evicted and counted.
public final class DashboardStore: Sendable {
    public enum Kind: String, Sendable, CaseIterable {
        case counter, gauge, timer, set
    }

    /// A key as one type: the dashboard's row.
    struct SeriesKey: Hashable {
        var name: String
        var kind: Kind
    }

    struct Series {
        let kind: Kind
        /// `slots` values per lane, lane after lane; NaN where the key had no value.
        var values: [Double]
        /// The flush (tick) of the last value written.
        var lastTick: Int
    }

    struct State {
        var tick = -1
        var times: [Int]
        var series: [SeriesKey: Series] = [:]
        var bytes = 0
        var evicted = 0
        var interval = 10.0
        var badLinesLast = 0
        var badLinesTotal = 0
    }

    public let slots: Int
    public let budgetBytes: Int
    let state: Mutex<State>

    /// - Parameters:
    ///   - slots: flushes kept per key (360: an hour at statsd's 10 s).
    ///   - budgetBytes: the most the history may take.
    public init(slots: Int = 360, budgetBytes: Int = 32 << 20) {
        self.slots = max(slots, 2)
        self.budgetBytes = budgetBytes
        self.state = Mutex(State(times: [Int](repeating: 0, count: max(slots, 2))))
    }

    static func lanes(_ kind: Kind) -> Int { kind == .timer ? 3 : 1 }

    /// A key's share of the budget: its rings, its name, and what a dictionary entry and its arrays cost besides
    /// (about 450 bytes, measured with 10,000 keys: Benchmarks/dashboard.py).
    func cost(_ name: String, _ kind: Kind) -> Int { self.slots * 8 * Self.lanes(kind) + name.utf8.count + 450 }

    /// Adds one flush.
    public func record(_ data: FlushData) {
        let snapshot = data.snapshot
        let seconds = max(data.flushInterval.inSeconds, 0.001)
        self.state.withLock { state in
            state.tick += 1
            let tick = state.tick
            state.times[tick % self.slots] = data.timestamp
            state.interval = seconds
            state.badLinesLast = snapshot.counts.badLinesSeen
            state.badLinesTotal += snapshot.counts.badLinesSeen
            for counter in snapshot.counters {
                self.write(&state, snapshot.string(counter.key), .counter, [counter.value / seconds])
            }
            for timer in snapshot.timers {
                let samples = snapshot.timerSamples[timer.samples]
                guard !samples.isEmpty else {
                    self.write(&state, snapshot.string(timer.key), .timer, [.nan, .nan, .nan])
                    continue
                }
                func rank(_ fraction: Double) -> Double {
                    let index = min(samples.count - 1, max(0, Int((fraction * Double(samples.count)).rounded(.up)) - 1))
                    return samples[samples.startIndex + index]
                }
                self.write(&state, snapshot.string(timer.key), .timer, [rank(0.5), rank(0.9), samples.last!])
            }
            for gauge in snapshot.gauges {
                self.write(&state, snapshot.string(gauge.key), .gauge, [gauge.value])
            }
            for set in snapshot.sets {
                self.write(&state, snapshot.string(set.key), .set, [Double(set.members.count)])
            }
            if state.bytes > self.budgetBytes { self.evict(&state) }
        }
    }

    private func write(_ state: inout State, _ name: String, _ kind: Kind, _ lanes: [Double]) {
        let tick = state.tick
        let slot = tick % self.slots
        let key = SeriesKey(name: name, kind: kind)
        if state.series[key] == nil {
            state.series[key] = Series(kind: kind, values: [Double](repeating: .nan, count: self.slots * lanes.count), lastTick: tick)
            state.bytes += self.cost(name, kind)
        }
        state.series[key]!.write(lanes, tick: tick, slot: slot, slots: self.slots)
    }

    /// Drops the keys updated longest ago until the history is at 90% of its budget.
    private func evict(_ state: inout State) {
        let oldest = state.series.map { (key: $0.key, tick: $0.value.lastTick) }.sorted { $0.tick < $1.tick }
        for entry in oldest where state.bytes > self.budgetBytes * 9 / 10 {
            state.series[entry.key] = nil
            state.bytes -= self.cost(entry.key.name, entry.key.kind)
            state.evicted += 1
        }
    }
}

extension DashboardStore.Series {
    /// Writes one flush's lanes at `slot`, first clearing the slots of the flushes the key missed.
    mutating func write(_ lanes: [Double], tick: Int, slot: Int, slots: Int) {
        let count = self.values.count / slots
        guard lanes.count == count else { return }
        let missed = min(tick - self.lastTick - 1, slots)
        if missed > 0 {
            for back in 1...missed {
                let index = ((tick - back) % slots + slots) % slots
                for lane in 0..<count { self.values[lane * slots + index] = .nan }
            }
        }
        for lane in 0..<count { self.values[lane * slots + slot] = lanes[lane] }
        self.lastTick = tick
    }
}
