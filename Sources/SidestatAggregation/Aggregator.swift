//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatProtocol
import Synchronization

/// One ingest shard: a metric store, the parser that feeds it, and the lock that guards both.
///
/// A UDP reader thread owns one shard and takes its lock once per receive batch, so the lock is uncontended
/// except at the flush tick, when the flusher takes the interval's aggregates out in one short critical section.
public final class IngestShard: Sendable {
    struct State: ~Copyable {
        var store: MetricStore
        var parser: StatsdLineParser
    }

    private let state: Mutex<State>

    init(sanitizeKeys: Bool, deleteGauges: Bool, gaugesMaxTTL: Int, keyFlush: Bool, seriesBudget: Int, hotPath: Bool) {
        var store = MetricStore()
        store.hotPathEnabled = hotPath
        store.seriesBudget = seriesBudget
        store.deleteGauges = deleteGauges
        store.gaugesMaxTTL = gaugesMaxTTL
        if keyFlush { store.keyCounts = ByteKeyTable<Int>() }
        self.state = Mutex(State(store: store, parser: StatsdLineParser(sanitizeKeys: sanitizeKeys)))
    }

    /// What a receive batch leaves for the caller to report outside the lock.
    public struct BatchReport: Sendable {
        /// Bad values in the batch (`bad_lines_seen`).
        public var badLines = 0
        /// Their log messages, capped; nil when there is nothing to log.
        public var badLineMessages: (lines: [String], suppressed: Int)? = nil
    }

    /// Parses and aggregates a batch of datagrams under one lock acquisition.
    /// `body` is called with an `ingest` function to call once per datagram. With `terminated`, every datagram
    /// is followed by a '\n' and 16 more readable bytes, and the parser's hot path reads it in place
    /// (`MetricStore.ingest(terminated:parser:)`); otherwise it reads a terminated copy.
    public func withBatch(
        sequence: UInt64, terminated: Bool = false, _ body: (_ ingest: (UnsafeRawBufferPointer) -> Void) throws -> Void
    ) rethrows -> BatchReport {
        try self.withState { store, parser in
            store.beginBatch(sequence: sequence)
            let badBefore = store.counts.badLinesSeen
            try body { datagram in
                store.counts.packetsReceived += 1
                if terminated {
                    store.ingest(terminated: datagram, parser: parser)
                } else {
                    store.ingest(datagram, parser: parser)
                }
            }
            var report = BatchReport()
            report.badLines = store.counts.badLinesSeen - badBefore
            // Bad lines, and notes such as the series budget's (which are not bad lines).
            if report.badLines > 0 || !store.recentBadLines.isEmpty { report.badLineMessages = store.takeBadLines() }
            return report
        }
    }

    /// Aggregates lines made inside Sidestat (process metrics, l2met log lines): they are not packets a client sent,
    /// so `packets_received` and `metrics_received` do not count them. Returns how many were bad.
    public func ingestUncounted(_ datagram: UnsafeRawBufferPointer, sequence: UInt64) -> Int {
        self.withState { store, parser in
            store.beginBatch(sequence: sequence)
            let before = store.counts
            store.ingest(datagram, parser: parser)
            store.counts.packetsReceived = before.packetsReceived
            store.counts.metricsReceived = before.metricsReceived
            return store.counts.badLinesSeen - before.badLinesSeen
        }
    }

    func withState<R>(_ body: (inout MetricStore, StatsdLineParser) throws -> R) rethrows -> R {
        try self.state.withLock { state in try body(&state.store, state.parser) }
    }

    func withStore<R>(_ body: (inout MetricStore) throws -> R) rethrows -> R {
        try self.state.withLock { state in try body(&state.store) }
    }

    func reconfigure(sanitizeKeys: Bool, deleteGauges: Bool, gaugesMaxTTL: Int) {
        self.state.withLock { state in
            if state.parser.sanitizeKeys != sanitizeKeys { state.parser = StatsdLineParser(sanitizeKeys: sanitizeKeys) }
            state.store.deleteGauges = deleteGauges
            state.store.gaugesMaxTTL = gaugesMaxTTL
        }
    }
}

/// All ingest shards of a daemon, and the operations that span them: the flush snapshot, management dumps
/// and deletes.
public final class Aggregator: Sendable {
    public let shards: [IngestShard]
    private let sequence = Atomic<UInt64>(1)

    /// - Parameters:
    ///   - shardCount: one per ingest thread (UDP readers, plus one shared by stream listeners).
    ///   - seriesBudget: live keys per type that each shard keeps (`MetricStore.seriesBudget`).
    ///   - hotPath: false parses every line the general way (tests and the fuzzer compare the two).
    public init(
        shardCount: Int, sanitizeKeys: Bool = true, deleteGauges: Bool = false, gaugesMaxTTL: Int = 1,
        keyFlush: Bool = false, seriesBudget: Int = .max, hotPath: Bool = true
    ) {
        self.shards = (0..<max(1, shardCount)).map { _ in
            IngestShard(
                sanitizeKeys: sanitizeKeys, deleteGauges: deleteGauges, gaugesMaxTTL: gaugesMaxTTL, keyFlush: keyFlush,
                seriesBudget: seriesBudget, hotPath: hotPath)
        }
    }

    /// A number that grows with every receive batch, across shards: gauge writes carry it.
    public func nextSequence() -> UInt64 {
        self.sequence.wrappingAdd(1, ordering: .relaxed).newValue
    }

    /// Ingests one buffer (a datagram, or complete TCP lines) into `shard`: one lock acquisition.
    @discardableResult
    public func ingest(_ datagram: UnsafeRawBufferPointer, shard: Int) -> IngestShard.BatchReport {
        self.shards[shard].withBatch(sequence: self.nextSequence()) { ingest in ingest(datagram) }
    }

    /// Counts lines a listener rejected before parsing (a TCP line past the length bound) in statsd's
    /// `bad_lines_seen`.
    public func countBadLines(_ count: Int, shard: Int) {
        self.shards[shard].withStore { $0.counts.badLinesSeen += count }
    }

    /// Takes every shard's interval and merges them: the flush tick.
    public func takeSnapshot(policy: RetentionPolicy) -> MetricSnapshot {
        MetricSnapshot.merge(self.shards.map { $0.withStore { $0.takeSnapshot(policy: policy) } })
    }

    /// Where the current interval began, in Unix seconds, and how long intervals are: points stamped (`|T`) before
    /// it are late, and grouped by the interval they belong to.
    public func startInterval(at unixSeconds: Int, intervalSeconds: Int = 10) {
        for shard in self.shards {
            shard.withStore {
                $0.intervalStart = unixSeconds
                $0.intervalSeconds = intervalSeconds
            }
        }
    }

    /// The current interval's aggregates without resetting them (management dumps).
    public func peek() -> MetricSnapshot {
        MetricSnapshot.merge(self.shards.map { $0.withStore { $0.peek() } })
    }

    /// Bad lines recorded since the last call, from every shard.
    public func takeBadLines() -> (lines: [String], suppressed: Int) {
        var lines: [String] = []
        var suppressed = 0
        for shard in self.shards {
            if let taken = shard.withStore({ $0.takeBadLines() }) {
                lines += taken.lines
                suppressed += taken.suppressed
            }
        }
        return (lines, suppressed)
    }

    /// Key line counts since the last call (statsd's `keyFlush`), merged across shards.
    public func takeKeyCounts() -> [(key: String, count: Int)] {
        var merged: [String: Int] = [:]
        var order: [String] = []
        for shard in self.shards {
            shard.withStore { store in
                guard var table = store.keyCounts else { return }
                for index in 0..<table.count {
                    let key = table.keyString(at: index)
                    if merged[key] == nil { order.append(key) }
                    merged[key, default: 0] += table[valueAt: index]
                }
                table.removeAll()
                store.keyCounts = table
            }
        }
        return order.map { ($0, merged[$0]!) }
    }

    /// statsd's `delcounters`/`deltimers`/`delgauges`: deletes by name or by `folder.*` in every shard.
    public func delete(kind: MetricKind, matching name: String) -> [String] {
        var deleted: [String] = []
        var seen = Set<String>()
        for shard in self.shards {
            for key in shard.withStore({ $0.delete(kind: kind, matching: name) }) where seen.insert(key).inserted {
                deleted.append(key)
            }
        }
        return deleted
    }

    /// Sets statsd's own counters (`packets_received`, `metrics_received`, `bad_lines_seen`) back to 0.
    public func resetInternalCounters() {
        for shard in self.shards {
            shard.withStore { store in
                store.counts.packetsReceived = 0
                store.counts.metricsReceived = 0
                store.counts.badLinesSeen = 0
            }
        }
    }

    /// Applies settings that a configuration reload may change.
    public func reconfigure(sanitizeKeys: Bool, deleteGauges: Bool, gaugesMaxTTL: Int) {
        for shard in self.shards {
            shard.reconfigure(sanitizeKeys: sanitizeKeys, deleteGauges: deleteGauges, gaugesMaxTTL: gaugesMaxTTL)
        }
    }
}
