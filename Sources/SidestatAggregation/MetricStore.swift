//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatProtocol

/// What happens to each kind of metric after a flush (Etsy statsd's `delete*` options).
public struct RetentionPolicy: Sendable, Hashable {
    public var deleteCounters = false
    public var deleteTimers = false
    public var deleteSets = false
    public var deleteGauges = false
    /// Flushes a gauge is still sent after its last write, when `deleteGauges` is on.
    public var gaugesMaxTTL = 1

    public init() {}
}

/// A timer's samples for the current interval. The first sample is stored inline, so a timer that receives one
/// sample per interval never allocates; the array keeps its capacity across intervals.
public struct TimerAccumulator: Sendable {
    // In this order the accumulator is 32 bytes: the sample count (32 bits, 4 billion lines an interval) after the
    // Doubles.
    var first: Double = 0
    var more: [Double] = []
    var weightedCount: Double = 0
    var sampleCount: UInt32 = 0
    /// The key has had a DogStatsD distribution sample (`|d`) since it was made: its samples are not durations.
    var isDistribution = false

    init() {}

    /// `weight` is statsd's `1 / sampleRate`.
    mutating func add(_ value: Double, weight: Double) {
        if self.sampleCount == 0 {
            self.first = value
        } else {
            self.more.append(value)
        }
        self.sampleCount &+= 1
        self.weightedCount += weight
    }

    mutating func reset() {
        self.sampleCount = 0
        self.weightedCount = 0
        // Keep small buffers (no allocation next interval); give large ones back.
        self.more.removeAll(keepingCapacity: self.more.capacity <= 1024)
    }
}

public struct GaugeState: Sendable {
    var value: Double
    var ttl: Int
    var updated: UInt64

    /// A write to a gauge statsd already holds: a signed value is added only to a gauge that is set and not 0;
    /// otherwise the value replaces it.
    @inline(__always)
    mutating func write(_ value: Double, isDelta: Bool, ttl: Int, sequence: UInt64) {
        self.value = (isDelta && self.value != 0) ? self.value + value : value
        self.ttl = ttl
        self.updated = sequence
    }
}

/// The ingest hot path's sink: the tables held open for lookups and in-place updates.
struct KnownKeySink: StatsdKnownKeySink {
    let counters: ByteKeyTable<Double>.Lookup
    let timers: ByteKeyTable<TimerAccumulator>.Lookup
    let gauges: ByteKeyTable<GaugeState>.Lookup
    let gaugesMaxTTL: Int
    let writeSequence: UInt64
    /// Lines taken (`metrics_received`).
    var taken = 0

    @inline(__always)
    mutating func knownKeyLine(
        kind: MetricKind, key: ScannedKey, value: Double, inverseRate: Double, isDelta: Bool
    ) -> Bool {
        switch kind {
        case .counter:
            guard let counter = self.counters.value(for: key) else { return false }
            counter.pointee += value * inverseRate  // statsd: value * (1 / sampleRate)
        case .timer:
            guard let timer = self.timers.value(for: key) else { return false }
            timer.pointee.add(value, weight: inverseRate)
        case .gauge:
            guard let gauge = self.gauges.value(for: key) else { return false }
            gauge.pointee.write(value, isDelta: isDelta, ttl: self.gaugesMaxTTL, sequence: self.writeSequence)
        case .set:
            return false
        }
        self.taken &+= 1
        return true
    }
}

/// One ingest shard's metrics: statsd's `counters`, `timers`, `gauges` and `sets` objects, keyed by bytes.
///
/// Keys persist across flushes as in Etsy statsd (an idle counter is sent as 0) unless the retention policy
/// deletes them. A known key costs no allocation per line. Not thread-safe: a shard wraps it in a lock and
/// holds that lock for a whole receive batch.
public struct MetricStore: StatsdSampleSink, Sendable {
    public var counters = ByteKeyTable<Double>()
    public var timers = ByteKeyTable<TimerAccumulator>()
    public var gauges = ByteKeyTable<GaugeState>()
    public var sets = ByteKeyTable<ByteKeyTable<Void>>()

    /// statsd's own counts for this interval.
    public var counts = IntervalCounts()
    /// The first `eventLimit` DogStatsD events and service checks as received (the console prints them).
    public var events: [String] = []
    public static let eventLimit = 100
    /// Unix seconds at which this interval began (the last flush), and the flush interval: a line stamped earlier
    /// (`|T`) is late. It is counted in `statsd.late_points`, and its metrics are kept apart, by the interval they
    /// belong to (the first `latePointLimit` an interval; later ones count in this interval).
    public var intervalStart = 0
    public var intervalSeconds = 10
    var late: [Int: MetricStore] = [:]
    var latePointsKept = 0
    /// The late group of the line being read (the flush time of its interval), if it is late.
    var lateLine: Int? = nil
    public static let latePointLimit = 10_000
    /// Live keys a table of this shard may hold, per type; past it new keys are refused and counted (existing
    /// keys keep counting), so that a runaway tag (a user id in a key) cannot take the dyno's memory.
    public var seriesBudget = Int.max
    /// Whether this interval's budget warning (with the busiest prefixes) was written already.
    var budgetReported = false

    /// Gauge writes set the time-to-live when gauges are deleted after `gaugesMaxTTL` idle flushes.
    public var deleteGauges = false
    public var gaugesMaxTTL = 1
    /// A write sequence shared by all shards of a process, so shards can tell which gauge write is newer.
    var writeSequence: UInt64 = 0

    /// Per-key line counts for statsd's `keyFlush` report, when it is on.
    public var keyCounts: ByteKeyTable<Int>? = nil

    /// Whether lines whose key the tables hold may take the parser's hot path (tests turn it off to compare).
    public var hotPathEnabled = true

    /// The one choice between the parse paths: the hot path when it is enabled and nothing needs every line seen
    /// the general way (`keyFlush` counts each line by key, which only the general path reports).
    @inline(__always)
    var takesHotPath: Bool { self.hotPathEnabled && self.keyCounts == nil }

    /// The latest bad lines, for the server to log (capped; the count is `badLinesSeen`).
    public var recentBadLines: [String] = []
    public var suppressedBadLines = 0
    public static let badLineLogLimit = 20
    /// The longest key kept: statsd keys are short, and a longer one is a bad line (counted and logged, its value
    /// dropped), so that a runaway client cannot grow the key arena without end.
    public static let maximumKeyBytes = 1024
    /// Key bytes one table of a shard may hold; past it new keys are refused as bad lines (existing keys keep
    /// counting). Far below the 4 GiB the arena's 32-bit offsets address.
    public static let maximumKeyArenaBytes = 1 << 30

    public init() {}

    /// Marks the start of a receive batch: gauge writes in it are stamped with `sequence`.
    public mutating func beginBatch(sequence: UInt64) {
        self.writeSequence = sequence
    }

    // MARK: - Ingest

    /// Parses and aggregates one datagram (or a chunk of complete TCP lines). Runs of lines whose keys the tables
    /// hold are taken on the parser's hot path (which reads a terminated copy of the datagram) with the tables open
    /// for in-place updates; every other line is parsed the general way, which may add keys.
    @inline(__always)
    public mutating func ingest(_ datagram: UnsafeRawBufferPointer, parser: StatsdLineParser) {
        guard self.takesHotPath, let copy = parser.terminatedCopy(datagram) else {
            parser.parse(datagram, into: &self)
            return
        }
        self.ingestLines(copy, parser: parser)
    }

    /// `ingest` without the copy, for a datagram that is already followed by a '\n' and 16 more readable bytes (as
    /// the UDP reader's buffers are).
    @inline(__always)
    public mutating func ingest(terminated datagram: UnsafeRawBufferPointer, parser: StatsdLineParser) {
        guard self.takesHotPath else {
            parser.parse(datagram, into: &self)
            return
        }
        self.ingestLines(datagram, parser: parser)
    }

    /// Alternates the hot path and the general parser over a terminated datagram.
    @inline(__always)
    mutating func ingestLines(_ datagram: UnsafeRawBufferPointer, parser: StatsdLineParser) {
        var start = 0
        while start < datagram.count {
            start = self.ingestKnownKeyLines(datagram, from: start, parser: parser)
            if start < datagram.count { start = parser.parseLine(datagram, at: start, into: &self) }
        }
    }

    @inline(__always)
    mutating func ingestKnownKeyLines(_ datagram: UnsafeRawBufferPointer, from start: Int, parser: StatsdLineParser)
        -> Int
    {
        let gaugesMaxTTL = self.gaugesMaxTTL
        let writeSequence = self.writeSequence
        var taken = 0
        let stop = self.counters.withLookup { counters in
            self.timers.withLookup { timers in
                self.gauges.withLookup { gauges in
                    var sink = KnownKeySink(
                        counters: counters, timers: timers, gauges: gauges, gaugesMaxTTL: gaugesMaxTTL,
                        writeSequence: writeSequence)
                    let stop = parser.parseKnownKeyLines(datagram, from: start, into: &sink)
                    taken = sink.taken
                    return stop
                }
            }
        }
        self.counts.metricsReceived += taken
        return stop
    }

    // MARK: - StatsdSampleSink

    @inline(__always)
    public mutating func lineSeen(_ line: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer) {
        self.counts.metricsReceived += 1
        self.lateLine = nil
        if self.keyCounts != nil,
            self.keyCounts!.count < ByteKeyTable<Int>.maximumCount || self.keyCounts!.find(key) != nil
        {
            self.keyCounts!.update(key, initial: 0) { $0 += 1 }
        }
    }

    /// Whether `key` may be kept in `table`: short enough, and room for it when it is new (the series budget, the
    /// key arena). A key too long is a bad line; a new key without room is counted in `seriesDropped`.
    @inline(__always)
    mutating func accepts<Value>(
        _ key: UnsafeRawBufferPointer, in table: ByteKeyTable<Value>, type: String, checkLength: Bool = true
    ) -> Bool {
        guard !checkLength || key.count <= Self.maximumKeyBytes else {
            self.counts.badLinesSeen += 1
            self.note("Bad line: key longer than \(Self.maximumKeyBytes) bytes (\(key.count)), dropped: "
                + "\"\(String(decoding: key.prefix(64), as: UTF8.self))...\"")
            return false
        }
        let keyLimit = min(self.seriesBudget, ByteKeyTable<Value>.maximumCount)
        if table.count < keyLimit && table.arenaBytes < Self.maximumKeyArenaBytes { return true }
        if table.find(key) != nil { return true }
        self.counts.seriesDropped += 1
        if !self.budgetReported {
            self.budgetReported = true
            let full = table.count >= keyLimit ? "\(table.count) \(type) keys" : "1 GiB of \(type) key bytes"
            self.note(
                "Series budget reached (\(full)): new \(type) keys are refused until the next flush, counted in "
                    + "series_dropped; busiest prefixes: " + Self.busiestPrefixes(table))
        }
        return false
    }

    /// Keeps a message for the server to log (capped per batch).
    mutating func note(_ message: String) {
        if self.recentBadLines.count < Self.badLineLogLimit {
            self.recentBadLines.append(message)
        } else {
            self.suppressedBadLines += 1
        }
    }

    /// The five key prefixes (the first two dot-separated parts) with the most keys: where a runaway tag lives.
    static func busiestPrefixes<Value>(_ table: ByteKeyTable<Value>) -> String {
        var counts: [String: Int] = [:]
        for index in 0..<table.count {
            table.withKey(at: index) { key in
                var dots = 0
                let end = key.firstIndex { byte in
                    if byte == UInt8(ascii: ".") { dots += 1 }
                    return dots == 2
                } ?? key.count
                counts[String(decoding: key[..<end], as: UTF8.self), default: 0] += 1
            }
        }
        return counts.sorted { $0.value > $1.value || ($0.value == $1.value && $0.key < $1.key) }.prefix(5)
            .map { "\($0.key) (\($0.value))" }.joined(separator: ", ")
    }

    /// The late group a value of the line being read goes to: none when the line is not late, or when its key is
    /// too long to keep (a bad line of this interval, counted and logged here).
    @inline(__always)
    func lateGroup(for key: UnsafeRawBufferPointer) -> Int? {
        key.count <= Self.maximumKeyBytes ? self.lateLine : nil
    }

    @inline(__always)
    public mutating func counter(key: UnsafeRawBufferPointer, value: Double, sampleRate: Double) {
        if let group = self.lateGroup(for: key) {
            self.late[group, default: MetricStore()].counter(key: key, value: value, sampleRate: sampleRate)
            return
        }
        guard self.accepts(key, in: self.counters, type: "counter") else { return }
        self.counters.update(key, initial: 0) { $0 += value * (1 / sampleRate) }
    }

    @inline(__always)
    public mutating func timer(key: UnsafeRawBufferPointer, value: Double, sampleRate: Double) {
        self.sample(key: key, value: value, sampleRate: sampleRate, isDistribution: false)
    }

    /// A DogStatsD distribution's sample: kept as a timer's (Graphite and the console see a timer), the key marked
    /// so that backends with a distribution of their own (Prometheus, OTLP) do not read it as milliseconds.
    @inline(__always)
    public mutating func distribution(key: UnsafeRawBufferPointer, value: Double, sampleRate: Double) {
        self.sample(key: key, value: value, sampleRate: sampleRate, isDistribution: true)
    }

    @inline(__always)
    mutating func sample(key: UnsafeRawBufferPointer, value: Double, sampleRate: Double, isDistribution: Bool) {
        if let group = self.lateGroup(for: key) {
            self.late[group, default: MetricStore()].sample(
                key: key, value: value, sampleRate: sampleRate, isDistribution: isDistribution)
            return
        }
        guard self.accepts(key, in: self.timers, type: "timer") else { return }
        self.timers.update(key, initial: TimerAccumulator()) {
            $0.add(value, weight: 1 / sampleRate)
            if isDistribution { $0.isDistribution = true }
        }
    }

    @inline(__always)
    public mutating func gauge(key: UnsafeRawBufferPointer, value: Double, isDelta: Bool) {
        if let group = self.lateGroup(for: key) {
            self.late[group, default: MetricStore()].gauge(key: key, value: value, isDelta: isDelta)
            return
        }
        guard self.accepts(key, in: self.gauges, type: "gauge") else { return }
        let ttl = self.gaugesMaxTTL
        let sequence = self.writeSequence
        if let index = self.gauges.find(key) {
            self.gauges[valueAt: index].write(value, isDelta: isDelta, ttl: ttl, sequence: sequence)
        } else {
            _ = self.gauges.findOrInsert(key) { GaugeState(value: value, ttl: ttl, updated: sequence) }
        }
    }

    public mutating func set(key: UnsafeRawBufferPointer, member: UnsafeRawBufferPointer) {
        if let group = self.lateGroup(for: key) {
            self.late[group, default: MetricStore()].set(key: key, member: member)
            return
        }
        guard self.accepts(key, in: self.sets, type: "set") else { return }
        let index = self.sets.findOrInsert(key) { ByteKeyTable<Void>() }
        // A set's members are bounded as keys are (their offsets, too, are 32-bit): past the budget, or 1 GiB of
        // member bytes, a new member is refused and counted with the keys.
        guard self.accepts(member, in: self.sets[valueAt: index], type: "set member", checkLength: false) else { return }
        _ = self.sets[valueAt: index].findOrInsert(member) { () }
    }

    public mutating func pointTimestamp(_ unixSeconds: Int) {
        guard unixSeconds < self.intervalStart else { return }
        self.counts.latePoints += 1
        guard self.latePointsKept < Self.latePointLimit else { return }
        self.latePointsKept += 1
        // Interval j before this one ended with the flush at intervalStart - j * intervalSeconds.
        let interval = max(self.intervalSeconds, 1)
        let before = (self.intervalStart - unixSeconds + interval - 1) / interval - 1
        self.lateLine = self.intervalStart - before * interval
    }

    public mutating func dogStatsDEvent(_ line: UnsafeRawBufferPointer, isServiceCheck: Bool) {
        if isServiceCheck { self.counts.serviceChecksReceived += 1 } else { self.counts.eventsReceived += 1 }
        if self.events.count < Self.eventLimit { self.events.append(String(decoding: line, as: UTF8.self)) }
    }

    public mutating func badValue(line: UnsafeRawBufferPointer, fields: UnsafeRawBufferPointer) {
        self.counts.badLinesSeen += 1
        guard self.recentBadLines.count < Self.badLineLogLimit else {
            self.suppressedBadLines += 1
            return
        }
        // statsd's message: the value's fields joined by ',', then the whole line.
        let joined = String(decoding: fields.map { $0 == UInt8(ascii: "|") ? UInt8(ascii: ",") : $0 }, as: UTF8.self)
        self.note("Bad line: \(joined) in msg \"\(String(decoding: line, as: UTF8.self))\"")
    }

    // MARK: - Flush

    /// Copies the interval's aggregates into a snapshot and starts the next interval, applying `policy`.
    public mutating func takeSnapshot(policy: RetentionPolicy) -> MetricSnapshot {
        var snapshot = self.peek()
        if !self.late.isEmpty {
            snapshot.late = self.late.keys.sorted().map { timestamp in
                var store = self.late[timestamp]!
                return MetricSnapshot.LateGroup(timestamp: timestamp, snapshot: store.takeSnapshot(policy: policy))
            }
            self.late = [:]
        }
        self.latePointsKept = 0
        if policy.deleteCounters {
            self.counters.removeAll()
        } else {
            self.counters.resetValues(to: 0)
        }
        if policy.deleteTimers {
            self.timers.removeAll()
        } else {
            for index in 0..<self.timers.count { self.timers[valueAt: index].reset() }
        }
        if policy.deleteSets {
            self.sets.removeAll()
        } else {
            for index in 0..<self.sets.count { self.sets[valueAt: index].removeAll() }
        }
        if policy.deleteGauges {
            self.gauges.removeAll { _, gauge in
                gauge.ttl -= 1
                return gauge.ttl < 1
            }
        }
        self.counts = IntervalCounts()
        self.events.removeAll()
        self.budgetReported = false
        return snapshot
    }

    /// A copy of the current interval's aggregates, leaving them in place (for management dumps). The keys are not
    /// copied: the snapshot shares the tables' key arenas (segments 1 to 4). Set members are copied.
    public func peek() -> MetricSnapshot {
        var snapshot = MetricSnapshot()
        snapshot.shared = [self.counters.arena, self.timers.arena, self.gauges.arena, self.sets.arena]
        // The counters' keys and values are the table's own arrays (the flush then gives the table new values).
        snapshot.counters = MetricSnapshot.CounterList(
            keys: self.counters.entries, values: self.counters.values, segment: 1)
        // Room for the backends' gauges the flush adds, so that adding them does not copy the array.
        snapshot.timers.reserveCapacity(self.timers.count)
        var sampleCount = 0
        for index in 0..<self.timers.count { sampleCount += Int(self.timers[valueAt: index].sampleCount) }
        snapshot.timerSamples.reserveCapacity(sampleCount)
        for index in 0..<self.timers.count {
            let timer = self.timers[valueAt: index]
            let start = snapshot.timerSamples.count
            if timer.sampleCount > 0 {
                snapshot.timerSamples.append(timer.first)
                snapshot.timerSamples.append(contentsOf: timer.more)
            }
            snapshot.timers.append(
                .init(
                    key: self.timers.keyRange(at: index).inSegment(2), samples: start..<snapshot.timerSamples.count,
                    count: timer.weightedCount, isDistribution: timer.isDistribution))
        }
        snapshot.gauges.reserveCapacity(self.gauges.count + 64)
        for index in 0..<self.gauges.count {
            let gauge = self.gauges[valueAt: index]
            snapshot.gauges.append(
                .init(key: self.gauges.keyRange(at: index).inSegment(3), value: gauge.value, updated: gauge.updated))
        }
        snapshot.sets.reserveCapacity(self.sets.count)
        for index in 0..<self.sets.count {
            let members = self.sets[valueAt: index]
            let start = snapshot.setMembers.count
            for member in 0..<members.count {
                let range = members.withKey(at: member) { snapshot.store($0) }
                snapshot.setMembers.append(range)
            }
            let key = self.sets.keyRange(at: index).inSegment(4)
            snapshot.sets.append(.init(key: key, members: start..<snapshot.setMembers.count))
        }
        snapshot.counts = self.counts
        snapshot.events = self.events
        return snapshot
    }

    /// Takes the bad lines recorded since the last call (for logging outside the lock).
    public mutating func takeBadLines() -> (lines: [String], suppressed: Int)? {
        guard !self.recentBadLines.isEmpty || self.suppressedBadLines > 0 else { return nil }
        defer {
            self.recentBadLines.removeAll()
            self.suppressedBadLines = 0
        }
        return (self.recentBadLines, self.suppressedBadLines)
    }
}
