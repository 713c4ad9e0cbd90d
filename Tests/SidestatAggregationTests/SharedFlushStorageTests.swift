//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatAggregation
import SidestatProtocol
import Testing

/// A flush's snapshot shares the store's key arenas and its counters' arrays instead of copying them (issue 26).
/// These tests change the store every way ingest can while a snapshot is alive, and check that neither sees the
/// other's changes.
struct SharedFlushStorageTests {
    func ingest(_ text: String, into aggregator: Aggregator, shard: Int = 0) {
        var bytes = Array(text.utf8)
        _ = bytes.withUnsafeMutableBytes { aggregator.ingest(UnsafeRawBufferPointer($0), shard: shard) }
    }

    func counters(_ snapshot: MetricSnapshot) -> [String] {
        snapshot.counters.map { "\(snapshot.string($0.key))=\($0.value)" }
    }

    func everything(_ snapshot: MetricSnapshot) -> [String] {
        self.counters(snapshot)
            + snapshot.timers.map {
                "\(snapshot.string($0.key)) \(Array(snapshot.timerSamples[$0.samples])) \($0.count) \($0.isDistribution)"
            }
            + snapshot.gauges.map { "\(snapshot.string($0.key))=\($0.value)" }
            + snapshot.sets.map { set in
                "\(snapshot.string(set.key)) {\(snapshot.setMembers[set.members].map { snapshot.string($0) }.joined(separator: ","))}"
            }
    }

    @Test("a snapshot keeps its keys and values while ingest adds keys, counts on the hot path and flushes again")
    func snapshotIsolation() {
        let aggregator = Aggregator(shardCount: 1)
        // Keys of every length around the 8-byte prefix the table compares first, some sharing it.
        let keys = (1...40).map { String(repeating: "k", count: $0) } + ["abcdefgh.one", "abcdefgh.two", "abcdefgh"]
        self.ingest(keys.map { "\($0):1|c" }.joined(separator: "\n"), into: aggregator)
        self.ingest("t:5|ms\nt:7|ms\nd:2|d\ng:3|g\ns:a|s\ns:b|s", into: aggregator)
        let first = aggregator.takeSnapshot(policy: RetentionPolicy())
        let firstSeen = self.everything(first)
        #expect(self.counters(first) == keys.map { "\($0)=1.0" })
        // Known keys again (the hot path writes values in place), new keys (the arena and the entries grow), and a
        // second flush: the first snapshot must not change.
        self.ingest(keys.map { "\($0):2|c" }.joined(separator: "\n"), into: aggregator)
        self.ingest((0..<500).map { "new.key.\($0):1|c\nnew.t.\($0):1|ms\nnew.g.\($0):1|g" }.joined(separator: "\n"), into: aggregator)
        self.ingest("t:9|ms\ng:4|g\ns:c|s", into: aggregator)
        #expect(self.everything(first) == firstSeen)
        let second = aggregator.takeSnapshot(policy: RetentionPolicy())
        #expect(self.everything(first) == firstSeen)
        #expect(Array(self.counters(second).prefix(keys.count)) == keys.map { "\($0)=2.0" })
        #expect(self.counters(second).count == keys.count + 500)
        #expect(self.everything(second).contains("t [9.0] 1.0 false"))
        #expect(self.everything(second).contains("g=4.0"))
        #expect(self.everything(second).contains("s {c}"))
        // The interval after: every counter idle at 0, the second snapshot untouched by the reset.
        let third = aggregator.takeSnapshot(policy: RetentionPolicy())
        #expect(third.counters.allSatisfy { $0.value == 0 })
        #expect(Array(self.counters(second).prefix(keys.count)) == keys.map { "\($0)=2.0" })
    }

    @Test("a management dump (peek) shares the values too: counting on after it leaves the dump as it was")
    func peekIsolation() {
        let aggregator = Aggregator(shardCount: 1)
        self.ingest("a.long.counter.name:1|c\nb:1|c", into: aggregator)
        let dump = aggregator.peek()
        self.ingest("a.long.counter.name:5|c\nb:5|c", into: aggregator)
        #expect(self.counters(dump) == ["a.long.counter.name=1.0", "b=1.0"])
        #expect(self.counters(aggregator.peek()) == ["a.long.counter.name=6.0", "b=6.0"])
    }

    @Test("deleting keys at a flush (deleteCounters, deleteGauges) leaves the snapshot that holds them whole")
    func deletionIsolation() {
        let aggregator = Aggregator(shardCount: 1, deleteGauges: true)
        var policy = RetentionPolicy()
        policy.deleteCounters = true
        policy.deleteGauges = true
        self.ingest("gone.counter.one:1|c\nkept.gauge.name:2|g", into: aggregator)
        let first = aggregator.takeSnapshot(policy: policy)
        self.ingest("other.counter.two:3|c", into: aggregator)
        let second = aggregator.takeSnapshot(policy: policy)
        #expect(self.everything(first) == ["gone.counter.one=1.0", "kept.gauge.name=2.0"])
        #expect(self.everything(second) == ["other.counter.two=3.0"])
    }

    @Test("the counter list: statsd's own in front, the table's after, added ones last; a removal keeps the order")
    func counterList() {
        let aggregator = Aggregator(shardCount: 1)
        self.ingest("x:1|c\ny:2|c\nz:3|c", into: aggregator)
        var snapshot = aggregator.takeSnapshot(policy: RetentionPolicy())
        let own = snapshot.store("statsd.bad_lines_seen")
        snapshot.counters.prepend(contentsOf: [.init(key: own, value: 7)])
        snapshot.counters.append(.init(key: snapshot.store("w"), value: 4))
        snapshot.counters[2].value += 10
        #expect(self.counters(snapshot) == ["statsd.bad_lines_seen=7.0", "x=1.0", "y=12.0", "z=3.0", "w=4.0"])
        let keys = snapshot
        snapshot.counters.removeAll { keys.string($0.key) == "x" }
        #expect(self.counters(snapshot) == ["statsd.bad_lines_seen=7.0", "y=12.0", "z=3.0", "w=4.0"])
        // The store's next interval is not the snapshot's.
        #expect(self.counters(aggregator.takeSnapshot(policy: RetentionPolicy())) == ["x=0.0", "y=0.0", "z=0.0"])
    }

    @Test("a timer entry holds its samples' place, its count and whether it is a distribution in 24 bytes")
    func timerEntry() {
        #expect(MemoryLayout<MetricSnapshot.TimerEntry>.stride == 24)
        #expect(MemoryLayout<ByteKeyEntry>.stride == 16)
        var entry = MetricSnapshot.TimerEntry(
            key: ByteRange(offset: 3, length: 4), samples: 10..<(10 + (1 << 31) - 1), count: 2.5, isDistribution: true)
        #expect(entry.samples == 10..<(10 + (1 << 31) - 1) && entry.isDistribution && entry.count == 2.5)
        entry.isDistribution = false
        #expect(entry.samples.count == (1 << 31) - 1 && !entry.isDistribution)
        entry.samples = 0..<0
        entry.isDistribution = true
        #expect(entry.samples.isEmpty && entry.isDistribution)
    }
}
