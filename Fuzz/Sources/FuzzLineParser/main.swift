//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

// One datagram, parsed both ways: the ingest path (known keys on the hot path, new keys the general way) and the
// general path alone (an aggregator made with `hotPath: false`), each twice, with keys sanitized and not. Any crash,
// and any difference between the two aggregates, is a finding.

import SidestatAggregation
import SidestatProtocol

/// What an aggregate holds, comparable (NaN equal to NaN, as the two paths must give the same bits).
struct Totals: Equatable {
    var counters: [String: UInt64] = [:]
    var timers: [String: [UInt64]] = [:]
    var timerCounts: [String: UInt64] = [:]
    var gauges: [String: UInt64] = [:]
    var sets: [String: Set<String>] = [:]
    var metricsReceived = 0
    var badLinesSeen = 0

    init(_ snapshot: MetricSnapshot) {
        for entry in snapshot.counters { self.counters[snapshot.string(entry.key)] = entry.value.bitPattern }
        for entry in snapshot.timers {
            self.timers[snapshot.string(entry.key)] = snapshot.timerSamples[entry.samples].map(\.bitPattern)
            self.timerCounts[snapshot.string(entry.key)] = entry.count.bitPattern
        }
        for entry in snapshot.gauges { self.gauges[snapshot.string(entry.key)] = entry.value.bitPattern }
        for entry in snapshot.sets {
            self.sets[snapshot.string(entry.key)] = Set(snapshot.setMembers[entry.members].map(snapshot.string))
        }
        self.metricsReceived = snapshot.counts.metricsReceived
        self.badLinesSeen = snapshot.counts.badLinesSeen
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLineParser(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    // A UDP datagram is at most 65,507 bytes; longer TCP chunks take the general path, which the second run covers.
    let datagram = UnsafeRawBufferPointer(start: start, count: min(count, 65_507))
    for sanitize in [true, false] {
        let fast = Aggregator(shardCount: 1, sanitizeKeys: sanitize)
        let general = Aggregator(shardCount: 1, sanitizeKeys: sanitize, hotPath: false)
        for _ in 0..<2 {
            _ = fast.ingest(datagram, shard: 0)
            _ = general.ingest(datagram, shard: 0)
        }
        let expected = Totals(general.takeSnapshot(policy: RetentionPolicy()))
        let got = Totals(fast.takeSnapshot(policy: RetentionPolicy()))
        if got != expected {
            fatalError("hot path and general path differ (sanitizeKeys \(sanitize)):\n\(got)\n\(expected)")
        }
    }
    return 0
}
