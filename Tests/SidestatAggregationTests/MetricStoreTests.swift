//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatAggregation
import SidestatProtocol
import Testing

struct MetricStoreTests {
    func ingest(_ text: String, into aggregator: Aggregator, shard: Int = 0) {
        var bytes = Array(text.utf8)
        bytes.withUnsafeMutableBytes { aggregator.ingest(UnsafeRawBufferPointer($0), shard: shard) }
    }

    func counters(_ snapshot: MetricSnapshot) -> [String: Double] {
        Dictionary(uniqueKeysWithValues: snapshot.counters.map { (snapshot.string($0.key), $0.value) })
    }

    func gauges(_ snapshot: MetricSnapshot) -> [String: Double] {
        Dictionary(uniqueKeysWithValues: snapshot.gauges.map { (snapshot.string($0.key), $0.value) })
    }

    @Test("keys persist across flushes: an idle counter is 0, a gauge keeps its value, a timer idles")
    func persistence() {
        let aggregator = Aggregator(shardCount: 1)
        self.ingest("c:3|c\ng:5|g\nt:2|ms\ns:x|s", into: aggregator)
        let first = aggregator.takeSnapshot(policy: RetentionPolicy())
        #expect(self.counters(first) == ["c": 3])
        #expect(first.counts.packetsReceived == 1 && first.counts.metricsReceived == 4)
        let second = aggregator.takeSnapshot(policy: RetentionPolicy())
        #expect(self.counters(second) == ["c": 0])
        #expect(self.gauges(second) == ["g": 5])
        #expect(second.timers.count == 1 && second.timers[0].samples.isEmpty && second.timers[0].count == 0)
        #expect(second.sets.count == 1 && second.sets[0].members.isEmpty)
        #expect(second.counts.packetsReceived == 0)
    }

    @Test("gauge deltas apply to the kept value; a signed value on an unset or zero gauge sets it")
    func gaugeDeltas() {
        let aggregator = Aggregator(shardCount: 1)
        self.ingest("a:-5|g\nb:0|g\nb:+2|g\nc:10|g", into: aggregator)
        #expect(self.gauges(aggregator.takeSnapshot(policy: RetentionPolicy())) == ["a": -5, "b": 2, "c": 10])
        self.ingest("c:+0.5|g\nc:-3|g", into: aggregator)
        #expect(self.gauges(aggregator.takeSnapshot(policy: RetentionPolicy()))["c"] == 7.5)
    }

    @Test("deleteGauges sends a gauge for gaugesMaxTTL flushes after its last write")
    func gaugeTTL() {
        let aggregator = Aggregator(shardCount: 1, deleteGauges: true, gaugesMaxTTL: 2)
        var policy = RetentionPolicy()
        policy.deleteGauges = true
        policy.gaugesMaxTTL = 2
        self.ingest("g:1|g", into: aggregator)
        #expect(self.gauges(aggregator.takeSnapshot(policy: policy)) == ["g": 1])
        #expect(self.gauges(aggregator.takeSnapshot(policy: policy)) == ["g": 1])
        #expect(self.gauges(aggregator.takeSnapshot(policy: policy)).isEmpty)
    }

    @Test("delete* options drop idle keys after the flush that sent them")
    func deletes() {
        let aggregator = Aggregator(shardCount: 1)
        var policy = RetentionPolicy()
        policy.deleteCounters = true
        policy.deleteTimers = true
        policy.deleteSets = true
        self.ingest("c:1|c\nt:1|ms\ns:a|s", into: aggregator)
        #expect(!aggregator.takeSnapshot(policy: policy).isEmpty)
        #expect(aggregator.takeSnapshot(policy: policy).isEmpty)
        self.ingest("c:2|c", into: aggregator)
        #expect(self.counters(aggregator.takeSnapshot(policy: policy)) == ["c": 2])
    }

    @Test("a key sent as |d is a distribution in the snapshot (kept through merges); a timer is not")
    func distributions() {
        let aggregator = Aggregator(shardCount: 2)
        self.ingest("t:5|ms\nd:5|d", into: aggregator, shard: 0)
        self.ingest("d:-1|d\nt:1|ms", into: aggregator, shard: 1)
        let snapshot = aggregator.takeSnapshot(policy: RetentionPolicy())
        let kinds = Dictionary(uniqueKeysWithValues: snapshot.timers.map { (snapshot.string($0.key), $0.isDistribution) })
        #expect(kinds == ["t": false, "d": true])
        let samples = snapshot.timers.first { snapshot.string($0.key) == "d" }.map { Array(snapshot.timerSamples[$0.samples]) }
        #expect(samples.map(Set.init) == [5, -1])
    }

    @Test("shards merge: counters and timer samples add, sets unite, the newest gauge write wins")
    func merge() {
        let aggregator = Aggregator(shardCount: 2)
        self.ingest("c:1|c\nt:1|ms\ns:a|s\ng:1|g", into: aggregator, shard: 0)
        self.ingest("c:2|c\nt:2|ms\ns:a|s\ns:b|s\ng:2|g\nonly:1|c", into: aggregator, shard: 1)
        var snapshot = aggregator.takeSnapshot(policy: RetentionPolicy())
        snapshot.sortTimerSamples()
        #expect(self.counters(snapshot) == ["c": 3, "only": 1])
        #expect(snapshot.timers.count == 1 && Array(snapshot.timerSamples[snapshot.timers[0].samples]) == [1, 2])
        #expect(snapshot.sets.count == 1 && snapshot.sets[0].members.count == 2)
        #expect(self.gauges(snapshot) == ["g": 2])
        #expect(snapshot.counts.packetsReceived == 2)
    }

    @Test("DogStatsD events and service checks: counted per interval across shards, the first kept as received")
    func events() {
        let aggregator = Aggregator(shardCount: 2)
        func ingest(_ text: String, shard: Int) {
            var bytes = Array(text.utf8)
            _ = bytes.withUnsafeMutableBytes { aggregator.ingest(UnsafeRawBufferPointer($0), shard: shard) }
        }
        ingest("_e{6,2}:Deploy|v1\n_sc|db.up|0\nhits:1|c", shard: 0)
        ingest(String(repeating: "_sc|db.up|2\n", count: MetricStore.eventLimit + 5), shard: 1)
        let snapshot = aggregator.takeSnapshot(policy: RetentionPolicy())
        #expect(snapshot.counts.eventsReceived == 1)
        #expect(snapshot.counts.serviceChecksReceived == MetricStore.eventLimit + 6)
        #expect(snapshot.events.count == MetricStore.eventLimit + 2)
        #expect(snapshot.events.prefix(2) == ["_e{6,2}:Deploy|v1", "_sc|db.up|0"])
        #expect(snapshot.counts.badLinesSeen == 0)
        let next = aggregator.takeSnapshot(policy: RetentionPolicy())
        #expect(next.counts.eventsReceived == 0 && next.counts.serviceChecksReceived == 0 && next.events.isEmpty)
    }

    @Test("a point stamped (|T) before the interval began is late: counted, kept apart by the interval it belongs to, folded back for backends without timestamps")
    func latePoints() {
        let aggregator = Aggregator(shardCount: 2)
        aggregator.startInterval(at: 1_700_000_000, intervalSeconds: 10)
        // 1699999990 ≤ t < 1700000000 belongs to the interval flushed at 1700000000; 1699999985 to the one before.
        self.ingest("on.time:1|c|T1700000005\nlate:2|c|c:abc|T1699999990\nlate:3|c|T1699999999", into: aggregator, shard: 0)
        self.ingest("older:4|ms|T1699999985\nlate.g:-2|g|T1699999995\non.time:1|c\nlate:1|c", into: aggregator, shard: 1)
        let snapshot = aggregator.takeSnapshot(policy: RetentionPolicy())
        #expect(snapshot.counts.latePoints == 4)
        #expect(self.counters(snapshot) == ["on.time": 2, "late": 1])
        #expect(snapshot.timers.isEmpty && snapshot.gauges.isEmpty)
        #expect(snapshot.late.map(\.timestamp) == [1_699_999_990, 1_700_000_000])
        let older = snapshot.late[0].snapshot
        #expect(older.timers.map { older.string($0.key) } == ["older"] && older.timerSamples == [4])
        let last = snapshot.late[1].snapshot
        #expect(self.counters(last) == ["late": 5])
        #expect(self.gauges(last) == ["late.g": -2])

        let folded = snapshot.foldingLatePoints()
        #expect(self.counters(folded) == ["on.time": 2, "late": 6])
        #expect(folded.timers.map { folded.string($0.key) } == ["older"])
        #expect(folded.gauges.map(\.value) == [-2])
        #expect(folded.late.isEmpty && folded.counts.latePoints == 4 && folded.counts.metricsReceived == snapshot.counts.metricsReceived)

        let next = aggregator.takeSnapshot(policy: RetentionPolicy())
        #expect(next.counts.latePoints == 0 && next.late.isEmpty)
    }

    @Test("management deletes by name and by folder")
    func managementDelete() {
        let aggregator = Aggregator(shardCount: 1)
        self.ingest("c.a:1|c\nc.b:1|c\nd:1|c", into: aggregator)
        #expect(aggregator.delete(kind: .counter, matching: "c.*") == ["c.a", "c.b"])
        #expect(aggregator.delete(kind: .counter, matching: "nothere").isEmpty)
        #expect(self.counters(aggregator.peek()) == ["d": 1])
    }

    @Test("a table of many keys finds every key again, in insertion order")
    func table() {
        var table = ByteKeyTable<Int>()
        for index in 0..<10_000 {
            var key = Array("key.\(index)".utf8)
            let slot = key.withUnsafeMutableBytes { table.findOrInsert(UnsafeRawBufferPointer($0)) { index } }
            #expect(slot == index)
        }
        for index in stride(from: 0, to: 10_000, by: 7) {
            var key = Array("key.\(index)".utf8)
            #expect(key.withUnsafeMutableBytes { table.find(UnsafeRawBufferPointer($0)) } == index)
        }
        table.removeAll { index, _ in index % 2 == 0 }
        #expect(table.count == 5000)
        #expect(table.keyString(at: 0) == "key.1")
        var key = Array("key.3".utf8)
        #expect(key.withUnsafeMutableBytes { table.find(UnsafeRawBufferPointer($0)) } == 1)
    }
}

extension MetricStoreTests {
    @Test("a set's members are bounded by the series budget too; members it holds keep counting")
    func setMemberBudget() {
        let aggregator = Aggregator(shardCount: 1, seriesBudget: 3)
        self.ingest((0..<5).map { "users:u\($0)|s" }.joined(separator: "\n") + "\nusers:u0|s", into: aggregator)
        let snapshot = aggregator.takeSnapshot(policy: RetentionPolicy())
        #expect(snapshot.sets.count == 1)
        #expect(snapshot.sets.first.map { snapshot.setMembers[$0.members].map(snapshot.string) } == ["u0", "u1", "u2"])
        #expect(snapshot.counts.seriesDropped == 2)
    }

    @Test("the series budget refuses new keys past it, counts them, names the busiest prefix; old keys keep counting")
    func seriesBudget() {
        let aggregator = Aggregator(shardCount: 1, seriesBudget: 10)
        var messages: [String] = []
        for text in ["steady:1|c", (0..<15).map { "api.users.\($0):1|c" }.joined(separator: "\n"), "steady:1|c\nother.t:5|ms"] {
            var bytes = Array(text.utf8)
            let report = bytes.withUnsafeMutableBytes { aggregator.ingest(UnsafeRawBufferPointer($0), shard: 0) }
            messages += report.badLineMessages?.lines ?? []
        }
        let first = aggregator.takeSnapshot(policy: RetentionPolicy())
        #expect(first.counters.count == 10)
        #expect(self.counters(first)["steady"] == 2)
        #expect(first.counts.seriesDropped == 6)  // api.users.9 ... 14
        #expect(first.timers.count == 1)  // each type has its own budget
        #expect(messages.count == 1, "\(messages)")
        #expect(messages.first?.contains("Series budget reached (10 counter keys)") == true, "\(messages)")
        #expect(messages.first?.hasSuffix("busiest prefixes: api.users (9), steady (1)") == true, "\(messages)")
        // Keys go with deleteCounters, and room comes back.
        var policy = RetentionPolicy()
        policy.deleteCounters = true
        _ = aggregator.takeSnapshot(policy: policy)
        self.ingest("api.users.14:1|c", into: aggregator)
        let later = aggregator.takeSnapshot(policy: policy)
        #expect(self.counters(later)["api.users.14"] == 1)
        #expect(later.counts.seriesDropped == 0)
    }

    @Test("a key longer than 1,024 bytes is a bad line, its neighbours count")
    func longKey() {
        let aggregator = Aggregator(shardCount: 1)
        self.ingest("a:1|c\n" + String(repeating: "k", count: 1025) + ":1|c\nb:1|c", into: aggregator)
        let snapshot = aggregator.takeSnapshot(policy: RetentionPolicy())
        #expect(self.counters(snapshot) == ["a": 1, "b": 1])
        #expect(snapshot.counts.badLinesSeen == 1)
    }
}
