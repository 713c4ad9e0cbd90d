//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The small amount of state that listeners, the flusher and the management port share.
public final class DaemonState: Sendable {
    /// Unix seconds at start-up, rounded as statsd rounds it.
    public let startupTime: Int
    private let healthUp: Atomic<Bool>
    private let lastMessageSeen: Atomic<Int>
    private let badLinesTotal = Atomic<Int>(0)
    private let seriesDroppedTotal = Atomic<Int>(0)
    /// The listeners' bound addresses, once bound (`udp://127.0.0.1:8125`, ...).
    private let boundAddresses = Mutex<[String]>([])

    public init(healthUp: Bool) {
        let now = WallClock.unixMilliseconds()
        self.startupTime = Int((Double(now) / 1000).rounded(.toNearestOrAwayFromZero))
        self.healthUp = Atomic(healthUp)
        self.lastMessageSeen = Atomic(self.startupTime)
    }

    public var isHealthy: Bool {
        get { self.healthUp.load(ordering: .relaxed) }
        set { self.healthUp.store(newValue, ordering: .relaxed) }
    }

    /// Records a received batch: statsd's `messages.last_msg_seen` and `messages.bad_lines_seen`.
    public func recordBatch(badLines: Int) {
        self.lastMessageSeen.store(WallClock.unixSeconds(), ordering: .relaxed)
        if badLines > 0 { self.badLinesTotal.wrappingAdd(badLines, ordering: .relaxed) }
    }

    public var lastMessageSeenTime: Int { self.lastMessageSeen.load(ordering: .relaxed) }
    public var badLinesSeenTotal: Int { self.badLinesTotal.load(ordering: .relaxed) }

    /// New keys the series budget refused, since start, as of the last flush.
    public var seriesDropped: Int { self.seriesDroppedTotal.load(ordering: .relaxed) }

    public func recordSeriesDropped(_ count: Int) {
        if count > 0 { self.seriesDroppedTotal.wrappingAdd(count, ordering: .relaxed) }
    }

    public func resetBadLines() { self.badLinesTotal.store(0, ordering: .relaxed) }

    public func addBoundAddress(_ address: String) {
        self.boundAddresses.withLock { $0.append(address) }
    }

    public var addresses: [String] { self.boundAddresses.withLock { $0 } }
}
