//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// statsd's own counts for one interval: what a shard counts as it reads, and what a flush reports (`statsd.*`).
public struct IntervalCounts: Sendable, Hashable {
    public var packetsReceived = 0
    public var metricsReceived = 0
    public var badLinesSeen = 0
    /// New keys refused because their type's table was at `seriesBudget` (`statsd.series_dropped`, sent when not 0).
    public var seriesDropped = 0
    /// DogStatsD events and service checks (`statsd.events_received` and `statsd.service_checks_received`, sent
    /// when not 0).
    public var eventsReceived = 0
    public var serviceChecksReceived = 0
    /// Lines stamped (`|T`) before the interval began (`statsd.late_points`, sent when not 0).
    public var latePoints = 0

    public init() {}

    public static func += (total: inout IntervalCounts, part: IntervalCounts) {
        total.packetsReceived += part.packetsReceived
        total.metricsReceived += part.metricsReceived
        total.badLinesSeen += part.badLinesSeen
        total.seriesDropped += part.seriesDropped
        total.eventsReceived += part.eventsReceived
        total.serviceChecksReceived += part.serviceChecksReceived
        total.latePoints += part.latePoints
    }
}

/// One interval's aggregates, detached from ingest: what a flush encodes.
///
/// Keys are bytes in segments: the key arenas of the store's tables, shared with them (copy-on-write: a flush does not
/// copy a key, and a table copies its arena only if it takes a new key while a flush still reads the old one), and
/// `bytes`, the snapshot's own (set members, merged shards, names added at the flush). `withBytes` and
/// `withKeyBytes` read any of them. Timer samples are slices of `timerSamples`. Entries are in first-seen order
/// (statsd's object order). The value owns all its storage, so backends can read it on any thread while ingest
/// goes on.
public struct MetricSnapshot: Sendable {
    public struct CounterEntry: Sendable {
        public var key: ByteRange
        public var value: Double

        public init(key: ByteRange, value: Double) {
            self.key = key
            self.value = value
        }
    }

    /// The counters: statsd's own first (added at the flush), then a table's keys and values as the store held
    /// them (shared, not copied), then any added after. Reads as an array of `CounterEntry`; a change other than
    /// adding at either end or setting a value turns it into a plain array first.
    public struct CounterList: RandomAccessCollection, Sendable {
        var leading: [CounterEntry] = []
        var keys: [ByteKeyEntry] = []
        var values: [Double] = []
        var segment = 0
        var trailing: [CounterEntry] = []

        public init() {}

        init(keys: [ByteKeyEntry], values: [Double], segment: Int) {
            precondition(keys.count == values.count)
            self.keys = keys
            self.values = values
            self.segment = segment
        }

        public var startIndex: Int { 0 }
        public var endIndex: Int { self.leading.count + self.keys.count + self.trailing.count }

        public subscript(position: Int) -> CounterEntry {
            get {
                let table = position - self.leading.count
                if table < 0 { return self.leading[position] }
                if table < self.keys.count {
                    return CounterEntry(key: self.keys[table].key.inSegment(self.segment), value: self.values[table])
                }
                return self.trailing[table - self.keys.count]
            }
            set {
                let table = position - self.leading.count
                if table < 0 {
                    self.leading[position] = newValue
                } else if table < self.keys.count {
                    let key = self.keys[table].key.inSegment(self.segment)
                    precondition(newValue.key == key, "a counter's key changed")
                    self.values[table] = newValue.value
                } else {
                    self.trailing[table - self.keys.count] = newValue
                }
            }
        }

        public mutating func append(_ entry: CounterEntry) {
            self.trailing.append(entry)
        }

        /// Puts `entries` before every other counter.
        public mutating func prepend(contentsOf entries: [CounterEntry]) {
            self.leading.insert(contentsOf: entries, at: 0)
        }

        /// Removes the counters for which `shouldRemove` is true (the list becomes a plain array).
        public mutating func removeAll(where shouldRemove: (CounterEntry) throws -> Bool) rethrows {
            var kept: [CounterEntry] = []
            for entry in self where try !shouldRemove(entry) { kept.append(entry) }
            self = CounterList()
            self.trailing = kept
        }
    }

    public struct TimerEntry: Sendable {
        public var key: ByteRange
        /// Where the samples are in `timerSamples`, in 32 bits each, the count's top bit holding `isDistribution`:
        /// the entry is 24 bytes.
        var sampleStart: UInt32
        var countAndKind: UInt32
        /// Σ 1/sampleRate: statsd's `timer_counters`.
        public var count: Double

        public init(key: ByteRange, samples: Range<Int>, count: Double, isDistribution: Bool = false) {
            precondition(samples.count < 1 << 31 && samples.upperBound <= Int(UInt32.max))
            self.key = key
            self.sampleStart = UInt32(samples.lowerBound)
            self.countAndKind = UInt32(samples.count) | (isDistribution ? 1 << 31 : 0)
            self.count = count
        }

        /// Indices into `timerSamples`; empty for an idle timer.
        public var samples: Range<Int> {
            get { Int(self.sampleStart)..<(Int(self.sampleStart) + Int(self.countAndKind & 0x7FFF_FFFF)) }
            set {
                precondition(newValue.count < 1 << 31 && newValue.upperBound <= Int(UInt32.max))
                self.sampleStart = UInt32(newValue.lowerBound)
                self.countAndKind = UInt32(newValue.count) | (self.countAndKind & 1 << 31)
            }
        }

        /// A DogStatsD distribution (`|d`): samples of any unit, not milliseconds.
        public var isDistribution: Bool {
            get { self.countAndKind & 1 << 31 != 0 }
            set { self.countAndKind = (self.countAndKind & 0x7FFF_FFFF) | (newValue ? 1 << 31 : 0) }
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

    /// Segment 0 of the keys: the snapshot's own bytes.
    public var bytes: [UInt8] = []
    /// Segments 1 and up: arenas shared with the store's tables, never changed here.
    var shared: [[UInt8]] = []
    public var counters = CounterList()
    public var timers: [TimerEntry] = []
    public var timerSamples: [Double] = []
    public var gauges: [GaugeEntry] = []
    public var sets: [SetEntry] = []
    public var setMembers: [ByteRange] = []

    /// statsd's own counts for the interval.
    public var counts = IntervalCounts()
    /// The first DogStatsD events and service checks as received (for the console).
    public var events: [String] = []
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
        let segment = range.segment == 0 ? self.bytes : self.shared[range.segment - 1]
        return try segment.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[range.range])) }
    }

    /// Every segment of the keys, for an encoder that reads many of them: `keys[range]` is a key's bytes.
    public struct KeyBytes {
        let segments: [UnsafeRawBufferPointer]

        @inline(__always)
        public subscript(range: ByteRange) -> UnsafeRawBufferPointer {
            UnsafeRawBufferPointer(rebasing: self.segments[range.segment][range.range])
        }
    }

    /// Calls `body` with every segment of the keys readable (valid only during the call).
    public func withKeyBytes<R>(_ body: (KeyBytes) throws -> R) rethrows -> R {
        try self.bytes.withUnsafeBytes { own in
            try Self.nest(self.shared[...], [own], body)
        }
    }

    private static func nest<R>(
        _ rest: ArraySlice<[UInt8]>, _ open: [UnsafeRawBufferPointer], _ body: (KeyBytes) throws -> R
    ) rethrows -> R {
        guard let first = rest.first else { return try body(KeyBytes(segments: open)) }
        return try first.withUnsafeBytes { try Self.nest(rest.dropFirst(), open + [$0], body) }
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
        result.addEventsAndLatePoints(of: parts)
        return result
    }

    /// Every shard's counts, events and late points, grouped by interval (a shard with nothing else counts as
    /// empty).
    mutating func addEventsAndLatePoints(of parts: [MetricSnapshot]) {
        self.counts = IntervalCounts()
        for part in parts { self.counts += part.counts }
        self.events = parts.flatMap(\.events)
        let groups = Dictionary(grouping: parts.flatMap(\.late), by: \.timestamp)
        self.late = groups.keys.sorted().map { timestamp in
            let snapshots = groups[timestamp]!.map(\.snapshot)
            return LateGroup(timestamp: timestamp, snapshot: snapshots.count == 1 ? snapshots[0] : .merge(snapshots))
        }
    }
}
