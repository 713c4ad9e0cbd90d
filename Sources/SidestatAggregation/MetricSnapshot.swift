//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// One interval's aggregates, detached from ingest: what a flush encodes.
///
/// Keys and set members are bytes in `bytes`; timer samples are slices of `timerSamples`. Entries are in
/// first-seen order (statsd's object order). The value owns all its storage, so backends can read it on any
/// thread while ingest goes on.
public struct MetricSnapshot: Sendable {
    public struct CounterEntry: Sendable {
        public var key: ByteRange
        public var value: Double

        public init(key: ByteRange, value: Double) {
            self.key = key
            self.value = value
        }
    }

    public struct TimerEntry: Sendable {
        public var key: ByteRange
        /// Indices into `timerSamples`; empty for an idle timer.
        public var samples: Range<Int>
        /// Σ 1/sampleRate: statsd's `timer_counters`.
        public var count: Double
        /// A DogStatsD distribution (`|d`): samples of any unit, not milliseconds.
        public var isDistribution: Bool

        public init(key: ByteRange, samples: Range<Int>, count: Double, isDistribution: Bool = false) {
            self.key = key
            self.samples = samples
            self.count = count
            self.isDistribution = isDistribution
        }
    }

    public struct GaugeEntry: Sendable {
        public var key: ByteRange
        public var value: Double
        /// When the gauge was last written (a per-process sequence), to merge shards: the newest write wins.
        public var updated: UInt64

        public init(key: ByteRange, value: Double, updated: UInt64) {
            self.key = key
            self.value = value
            self.updated = updated
        }
    }

    public struct SetEntry: Sendable {
        public var key: ByteRange
        /// Indices into `setMembers`.
        public var members: Range<Int>

        public init(key: ByteRange, members: Range<Int>) {
            self.key = key
            self.members = members
        }
    }

    public var bytes: [UInt8] = []
    public var counters: [CounterEntry] = []
    public var timers: [TimerEntry] = []
    public var timerSamples: [Double] = []
    public var gauges: [GaugeEntry] = []
    public var sets: [SetEntry] = []
    public var setMembers: [ByteRange] = []

    /// statsd's own counters for the interval.
    public var packetsReceived = 0
    public var metricsReceived = 0
    public var badLinesSeen = 0
    /// New keys refused by the series budget (reported as `statsd.series_dropped` when not 0).
    public var seriesDropped = 0
    /// DogStatsD events and service checks (reported as `statsd.events_received` and
    /// `statsd.service_checks_received` when not 0), and the first of them as received (for the console).
    public var eventsReceived = 0
    public var serviceChecksReceived = 0
    public var events: [String] = []
    /// Lines stamped (`|T`) before the interval began (`statsd.late_points` when not 0).
    public var latePoints = 0
    /// Those lines' metrics, one group per earlier interval, oldest first: not in the tables above. A backend that
    /// takes timestamps sends each group with its interval's flush time; the others fold them into this interval.
    public var late: [LateGroup] = []

    /// Late points of one earlier interval.
    public struct LateGroup: Sendable {
        /// The Unix time of the flush that ended the interval the points belong to.
        public var timestamp: Int
        public var snapshot: MetricSnapshot

        public init(timestamp: Int, snapshot: MetricSnapshot) {
            self.timestamp = timestamp
            self.snapshot = snapshot
        }
    }

    /// This snapshot with its late points added to the interval's own metrics, as a backend without per-point
    /// timestamps reports them.
    public func foldingLatePoints() -> MetricSnapshot {
        guard !self.late.isEmpty else { return self }
        var main = self
        main.late = []
        // A late group holds metrics only (its counts of packets, lines and events are 0): the merge keeps the
        // interval's own.
        var folded = MetricSnapshot.merge([main] + self.late.map(\.snapshot))
        folded.sortTimerSamples()
        return folded
    }

    public init() {}

    /// Copies `key` into `bytes` and returns where it is.
    public mutating func store(_ key: UnsafeRawBufferPointer) -> ByteRange {
        let offset = UInt32(self.bytes.count)
        self.bytes.append(contentsOf: key)
        return ByteRange(offset: offset, length: UInt32(key.count))
    }

    public mutating func store(bytes key: [UInt8]) -> ByteRange {
        let offset = UInt32(self.bytes.count)
        self.bytes.append(contentsOf: key)
        return ByteRange(offset: offset, length: UInt32(key.count))
    }

    public mutating func store(_ key: String) -> ByteRange {
        var key = key
        return key.withUTF8 { self.store(UnsafeRawBufferPointer($0)) }
    }

    public func withBytes<R>(_ range: ByteRange, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try self.bytes.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[range.range])) }
    }

    public func string(_ range: ByteRange) -> String {
        self.withBytes(range) { String(decoding: $0, as: UTF8.self) }
    }

    public var isEmpty: Bool {
        self.counters.isEmpty && self.timers.isEmpty && self.gauges.isEmpty && self.sets.isEmpty
    }

    /// Sorts every timer's samples ascending, as statsd does before computing statistics.
    public mutating func sortTimerSamples() {
        self.timerSamples.withUnsafeMutableBufferPointer { samples in
            for timer in self.timers where timer.samples.count > 1 {
                var slice = UnsafeMutableBufferPointer(rebasing: samples[timer.samples])
                slice.sort()
            }
        }
    }

    /// Combines snapshots from several shards: counters and timers add up, sets unite, and for a gauge the
    /// most recent write wins. The order is the first snapshot's, then keys new in each following one.
    public static func merge(_ parts: [MetricSnapshot]) -> MetricSnapshot {
        let nonEmpty = parts.filter { !$0.isEmpty }
        var result = nonEmpty.count == 1 ? nonEmpty[0] : MetricSnapshot()
        if nonEmpty.count > 1 {
            var counterIndex: [[UInt8]: Int] = [:]
            var timerParts: [[UInt8]: Int] = [:]
            var timerSamples: [[Double]] = []
            var gaugeIndex: [[UInt8]: Int] = [:]
            var setIndex: [[UInt8]: Int] = [:]
            var setMembers: [Set<[UInt8]>] = []
            var setOrder: [[[UInt8]]] = []
            for part in nonEmpty {
                for counter in part.counters {
                    let key = part.withBytes(counter.key) { Array($0) }
                    if let index = counterIndex[key] {
                        result.counters[index].value += counter.value
                    } else {
                        counterIndex[key] = result.counters.count
                        let range = result.store(bytes: key)
                        result.counters.append(CounterEntry(key: range, value: counter.value))
                    }
                }
                for timer in part.timers {
                    let key = part.withBytes(timer.key) { Array($0) }
                    let samples = Array(part.timerSamples[timer.samples])
                    if let index = timerParts[key] {
                        result.timers[index].count += timer.count
                        result.timers[index].isDistribution = result.timers[index].isDistribution || timer.isDistribution
                        timerSamples[index].append(contentsOf: samples)
                    } else {
                        timerParts[key] = result.timers.count
                        let range = result.store(bytes: key)
                        result.timers.append(
                            TimerEntry(key: range, samples: 0..<0, count: timer.count, isDistribution: timer.isDistribution))
                        timerSamples.append(samples)
                    }
                }
                for gauge in part.gauges {
                    let key = part.withBytes(gauge.key) { Array($0) }
                    if let index = gaugeIndex[key] {
                        if gauge.updated > result.gauges[index].updated {
                            result.gauges[index].value = gauge.value
                            result.gauges[index].updated = gauge.updated
                        }
                    } else {
                        gaugeIndex[key] = result.gauges.count
                        let range = result.store(bytes: key)
                        result.gauges.append(GaugeEntry(key: range, value: gauge.value, updated: gauge.updated))
                    }
                }
                for set in part.sets {
                    let key = part.withBytes(set.key) { Array($0) }
                    let members = part.setMembers[set.members].map { range in part.withBytes(range) { Array($0) } }
                    let index: Int
                    if let existing = setIndex[key] {
                        index = existing
                    } else {
                        index = result.sets.count
                        setIndex[key] = index
                        let range = result.store(bytes: key)
                        result.sets.append(SetEntry(key: range, members: 0..<0))
                        setMembers.append([])
                        setOrder.append([])
                    }
                    for member in members where setMembers[index].insert(member).inserted {
                        setOrder[index].append(member)
                    }
                }
                result.packetsReceived += part.packetsReceived
                result.metricsReceived += part.metricsReceived
                result.badLinesSeen += part.badLinesSeen
                result.seriesDropped += part.seriesDropped
            }
            result.addEventsAndLatePoints(of: parts)
            for index in result.timers.indices {
                let start = result.timerSamples.count
                result.timerSamples.append(contentsOf: timerSamples[index])
                result.timers[index].samples = start..<result.timerSamples.count
            }
            for index in result.sets.indices {
                let start = result.setMembers.count
                for member in setOrder[index] {
                    let range = result.store(bytes: member)
                    result.setMembers.append(range)
                }
                result.sets[index].members = start..<result.setMembers.count
            }
            return result
        }
        // Zero or one shard with metrics: still count every shard's packets.
        result.packetsReceived = parts.reduce(0) { $0 + $1.packetsReceived }
        result.metricsReceived = parts.reduce(0) { $0 + $1.metricsReceived }
        result.badLinesSeen = parts.reduce(0) { $0 + $1.badLinesSeen }
        result.seriesDropped = parts.reduce(0) { $0 + $1.seriesDropped }
        result.addEventsAndLatePoints(of: parts)
        return result
    }

    /// Every shard's events, service checks and late points, grouped by interval (a shard with nothing else counts
    /// as empty).
    mutating func addEventsAndLatePoints(of parts: [MetricSnapshot]) {
        self.eventsReceived = parts.reduce(0) { $0 + $1.eventsReceived }
        self.serviceChecksReceived = parts.reduce(0) { $0 + $1.serviceChecksReceived }
        self.events = parts.flatMap(\.events)
        self.latePoints = parts.reduce(0) { $0 + $1.latePoints }
        let groups = Dictionary(grouping: parts.flatMap(\.late), by: \.timestamp)
        self.late = groups.keys.sorted().map { timestamp in
            let snapshots = groups[timestamp]!.map(\.snapshot)
            return LateGroup(timestamp: timestamp, snapshot: snapshots.count == 1 ? snapshots[0] : .merge(snapshots))
        }
    }
}
