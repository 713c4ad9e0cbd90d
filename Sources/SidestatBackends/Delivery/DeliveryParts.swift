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

// The pieces the delivery engine works with: what a payload and a transport provide, one attempt's limits and
// payloads, why it failed, and the figures kept per upstream.

/// What the delivery engine needs to know of a payload.
package protocol DeliveryPayload: Sendable {
    /// The payload's size, for the retry buffer's bound.
    var byteCount: Int { get }
    /// The datapoints it carries, for drop and loss counts.
    var points: Int { get }
}

/// Sends payloads to one upstream, once: no retries, no buffering (the engine does those).
package protocol DeliveryTransport: Sendable {
    associatedtype Payload: DeliveryPayload

    /// Sends the payloads `source` gives, in order, calling `source.confirm()` once those taken so far were
    /// delivered (and `source.reject(because:)` for one the upstream refuses for good). Returns nil when every payload
    /// was delivered, else why the rest was not. Must return by `attempt.deadline()`.
    func send(_ source: DeliverySource<Payload>, _ attempt: DeliveryAttempt) async -> DeliveryFailure?
}

/// The limits of one attempt.
package struct DeliveryAttempt: Sendable {
    /// The final flush: a stream upstream must confirm it has read everything (it closes its side).
    package var isFinal: Bool
    /// Until when connecting may take.
    package var connectDeadline: ContinuousClock.Instant
    /// Until when the attempt may take; it can move earlier while the attempt runs (at shutdown).
    package var deadline: @Sendable () -> ContinuousClock.Instant

    package init(
        isFinal: Bool, connectDeadline: ContinuousClock.Instant, deadline: @escaping @Sendable () -> ContinuousClock.Instant
    ) {
        self.isFinal = isFinal
        self.connectDeadline = connectDeadline
        self.deadline = deadline
    }
}

/// Why an attempt did not deliver everything, in one short sentence (`graphite 127.0.0.1:2999: connection refused`).
package struct DeliveryFailure: Error, CustomStringConvertible, Sendable {
    package var description: String
    /// Whether the upstream was reached at all (false: refused, no route, connect timed out).
    package var connected: Bool

    package init(_ description: String, connected: Bool) {
        self.description = description
        self.connected = connected
    }
}

/// One attempt's payloads as the transport takes them: first those held in the retry buffer, then the fresh
/// flush's, produced on demand. Remembers which were delivered, so that only the rest is retried.
package final class DeliverySource<Payload: DeliveryPayload>: @unchecked Sendable {
    // @unchecked: one attempt uses it at a time, from one thread: the engine hands it to the transport and takes
    // it back when `send` has returned.
    private var held: [Payload]
    private var heldIndex = 0
    private var fresh: (() -> Payload?)?
    /// Taken, not yet confirmed, oldest first; bounded by `keepBytes` (the oldest are forgotten past it).
    private var pending: [Payload] = []
    private var pendingBytes = 0
    private var forgottenPoints = 0
    private var forgottenBytes = 0
    private let keepBytes: Int
    private(set) var deliveredBytes = 0
    private(set) var deliveredPoints = 0
    private(set) var rejectedPoints = 0
    /// Why the upstream refused the last payload it refused, and the kind of refusal (for logging each kind once).
    private(set) var rejection: String? = nil
    private(set) var rejectionKey: String? = nil

    init(held: [Payload], fresh: (() -> Payload?)?, keepBytes: Int) {
        self.held = held
        self.fresh = fresh
        self.keepBytes = keepBytes
    }

    /// The next payload to send, or nil when there is none left.
    package func next() -> Payload? {
        let payload: Payload
        if self.heldIndex < self.held.count {
            payload = self.held[self.heldIndex]
            self.heldIndex += 1
        } else if let next = self.fresh?() {
            payload = next
        } else {
            self.fresh = nil
            return nil
        }
        self.pending.append(payload)
        self.pendingBytes += payload.byteCount
        while self.pendingBytes > self.keepBytes, self.pending.count > 1 {
            let oldest = self.pending.removeFirst()
            self.pendingBytes -= oldest.byteCount
            self.forgottenPoints += oldest.points
            self.forgottenBytes += oldest.byteCount
        }
        return payload
    }

    /// Every payload taken so far was delivered.
    package func confirm() {
        self.deliveredBytes += self.pendingBytes
        self.deliveredPoints += self.pending.reduce(0) { $0 + $1.points } + self.forgottenPoints
        self.pending = []
        self.pendingBytes = 0
        self.forgottenPoints = 0
        self.forgottenBytes = 0
    }

    /// The first `count` bytes of what was taken were delivered: the payloads they hold whole are confirmed, and the
    /// one they end in is cut by `split` (the points it delivered, and the rest to retry), or kept whole for retry
    /// when `split` returns nil.
    package func confirm(firstBytes count: Int, split: (Payload, Int) -> (points: Int, rest: Payload)?) {
        var remaining = count - self.forgottenBytes
        guard remaining >= 0 else { return }
        self.deliveredBytes += self.forgottenBytes
        self.deliveredPoints += self.forgottenPoints
        self.forgottenBytes = 0
        self.forgottenPoints = 0
        var whole = 0
        while whole < self.pending.count, self.pending[whole].byteCount <= remaining {
            remaining -= self.pending[whole].byteCount
            self.deliveredBytes += self.pending[whole].byteCount
            self.deliveredPoints += self.pending[whole].points
            whole += 1
        }
        self.pending.removeFirst(whole)
        if remaining > 0, let first = self.pending.first, let (points, rest) = split(first, remaining) {
            self.deliveredBytes += first.byteCount - rest.byteCount
            self.deliveredPoints += points
            self.pending[0] = rest
        }
        self.pendingBytes = self.pending.reduce(0) { $0 + $1.byteCount }
    }

    /// The payload taken last was refused for good: it is dropped and counted, never retried. `key` names the kind
    /// of refusal (`HTTP 400`), so that the log says it once rather than at every flush; by default the reason.
    package func reject(because reason: String, key: String? = nil) {
        guard let refused = self.pending.popLast() else { return }
        self.pendingBytes -= refused.byteCount
        self.rejectedPoints += refused.points
        self.rejection = reason
        self.rejectionKey = key ?? reason
    }

    /// What was not delivered, in order, and the points already forgotten (past the bound, taken but
    /// unconfirmed). Keeps only the newest `keepBytes` of the rest, counting the others as dropped.
    func remainder() -> (rest: [Payload], dropped: Int) {
        var rest = self.pending
        var bytes = self.pendingBytes
        var dropped = self.forgottenPoints
        self.pending = []
        self.pendingBytes = 0
        self.forgottenPoints = 0
        self.forgottenBytes = 0
        func add(_ payload: Payload) {
            rest.append(payload)
            bytes += payload.byteCount
            var first = 0
            while bytes > self.keepBytes, first < rest.count - 1 {
                bytes -= rest[first].byteCount
                dropped += rest[first].points
                first += 1
            }
            if first > 0 { rest.removeFirst(first) }
        }
        while self.heldIndex < self.held.count {
            add(self.held[self.heldIndex])
            self.heldIndex += 1
        }
        while let payload = self.fresh?() { add(payload) }
        self.fresh = nil
        return (rest, dropped)
    }
}

/// The figures every backend keeps about its deliveries (statsd's `graphiteStats`, for each upstream).
package struct DeliveryStatistics: Sendable {
    /// Unix seconds of the last successful delivery.
    package var lastFlush: Double
    /// Unix seconds of the last failure; 0 until there is one (statsd's graphite backend starts it at 0).
    package var lastException: Double
    /// Milliseconds the last delivery took.
    package var flushTime: Double = 0
    /// Bytes of the last delivered flush.
    package var flushLength: Double = 0
    /// Bytes waiting in the retry buffer.
    package var queuedBytes = 0
    /// Datapoints dropped: past the retry bound, refused for good by the upstream, or lost at shutdown.
    package var droppedPoints = 0

    package init(startupTime: Double) {
        self.lastFlush = startupTime
        self.lastException = 0
    }

    package var status: [(name: String, value: Double)] {
        [
            ("last_flush", self.lastFlush), ("last_exception", self.lastException), ("flush_time", self.flushTime),
            ("flush_length", self.flushLength), ("queued_bytes", Double(self.queuedBytes)),
            ("dropped_points", Double(self.droppedPoints)),
        ]
    }
}
