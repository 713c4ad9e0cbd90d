//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatSupport
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Delivery to one upstream, the same for every backend that sends bytes somewhere (Graphite, Hosted Graphite, the
/// TCP repeater, Librato, InfluxDB, OTLP): a backend supplies its payloads and a transport that sends them once;
/// this type owns everything else.
///
/// - Each flush starts on time, in an attempt of its own (for a stream upstream, its own connection), whatever an
///   earlier attempt is still doing. At most `maxAttempts` are under way at once; a flush that finds them all busy
///   waits whole in the retry buffer and goes with the next attempt that starts.
/// - What an attempt could not deliver (refused, reset, timed out before its last byte) goes back to the front of
///   the retry buffer, with its original timestamps, and is sent, in order, before the next flush. What the
///   transport confirmed is never sent again. Past `retryBufferBytes` the oldest payloads are dropped and counted.
/// - The final flush (shutdown) retries until its deadline; an upstream that cannot be connected to at all is
///   given up after `finalConnectWindow`, and what was lost is logged with its count.
/// - The figures statsd reports for a backend (`last_flush`, `last_exception`, `flush_time`, `flush_length`) and
///   Sidestat's own (`queued_bytes`, `dropped_points`) are kept here.
package final class Delivery<Transport: DeliveryTransport>: Sendable {
    package typealias Payload = Transport.Payload

    /// The upstream's name in logs (`graphite 127.0.0.1:2003`).
    let name: String
    let transport: Transport
    /// The retry buffer's bound, in bytes of payload.
    let retryBufferBytes: Int
    let maxAttempts: Int
    /// How long the final flush keeps trying an upstream that cannot be connected to.
    let finalConnectWindow: Duration
    let clock = ContinuousClock()

    struct State {
        var queue: [Payload] = []
        var statistics: DeliveryStatistics
        var attempts = 0
        /// Whether the last attempt reached the upstream (false after a refused or timed-out connection).
        var reachable = true
        /// Set when the final flush starts: attempts still under way end by then.
        var cutoff: ContinuousClock.Instant? = nil
        /// Set when the final flush has finished or given up: nothing sends what fails after this.
        var closed = false
        var idleWaiters: [CheckedContinuation<Void, Never>] = []
        /// Failures in a row, and when one was last logged as a warning.
        var failures = 0
        var lastWarning: ContinuousClock.Instant? = nil
        /// When each kind of refusal was last logged, and how many payloads of it were dropped since.
        var refusalsLogged: [String: (at: ContinuousClock.Instant, since: Int)] = [:]
    }

    let state: Mutex<State>

    package init(
        name: String, transport: Transport, retryBufferBytes: Int, maxAttempts: Int = 4,
        finalConnectWindow: Duration = .milliseconds(1500), startupTime: Double
    ) {
        self.name = name
        self.transport = transport
        self.retryBufferBytes = retryBufferBytes
        self.maxAttempts = maxAttempts
        self.finalConnectWindow = finalConnectWindow
        self.state = Mutex(State(statistics: DeliveryStatistics(startupTime: startupTime)))
    }

    package var statistics: DeliveryStatistics { self.state.withLock { $0.statistics } }

    /// Whether the last attempt reached the upstream.
    package var isReachable: Bool { self.state.withLock { $0.reachable } }

    /// Whether the last flush was delivered, or a failed one is still held whole for retry (for `/readyz`).
    package var isHealthy: Bool {
        self.state.withLock { $0.statistics.lastFlush >= $0.statistics.lastException || $0.statistics.droppedPoints == 0 }
    }

    /// Delivers one flush: the retry buffer's payloads, then those `fresh` produces (on demand, so a large flush
    /// is never encoded whole while the upstream takes it). Returns once the flush was delivered or put back into
    /// the retry buffer; the final flush returns once it was delivered or given up. Returns the datapoints that
    /// this call delivered.
    ///
    /// - Parameter deadline: when an attempt gives up on what it has not written; for the final flush, the
    ///   shutdown deadline.
    @discardableResult
    package func deliver(
        _ fresh: @escaping () -> Payload?, isFinal: Bool, deadline: ContinuousClock.Instant, logger: Logger
    ) async -> Int {
        if isFinal {
            return await self.deliverFinal(fresh, deadline: deadline, logger: logger)
        }
        let start = self.clock.now
        let held = self.state.withLock { state -> [Payload]? in
            guard state.attempts < self.maxAttempts else { return nil }
            state.attempts += 1
            defer {
                state.queue = []
                state.statistics.queuedBytes = 0
            }
            return state.queue
        }
        guard let held else {
            // Every attempt allowed is still under way: this flush waits for the next one.
            let source = DeliverySource(held: [], fresh: fresh, keepBytes: self.retryBufferBytes)
            let (dropped, queued) = self.putBack(source, append: true)
            logger.warning(
                "Upstream connections are all still busy; the flush waits for the next",
                metadata: [
                    "backend.name": "\(self.name)", "delivery.attempts": "\(self.maxAttempts)",
                    "retry.queued_bytes": "\(queued)", "retry.dropped_points": "\(dropped)",
                ])
            return 0
        }
        let source = DeliverySource(held: held, fresh: fresh, keepBytes: self.retryBufferBytes)
        let attempt = self.attempt(deadline: deadline, connectDeadline: deadline)
        let failure = await self.transport.send(source, attempt)
        self.record(source, failure: failure, start: start, logger: logger)
        if let failure {
            let (dropped, queued) = self.putBack(source, append: false)
            // A warning for the first failure, then at most one a minute while it persists (each at debug level,
            // as statsd logs a refused connection); the management port's figures count every one.
            let (failures, warn) = self.state.withLock { state -> (Int, Bool) in
                state.failures += 1
                let now = self.clock.now
                guard let last = state.lastWarning, now - last < .seconds(60) else {
                    state.lastWarning = now
                    return (state.failures, true)
                }
                return (state.failures, false)
            }
            logger.log(
                level: warn ? .warning : .debug, "Flush failed; keeping it for the next flush",
                metadata: [
                    "backend.name": "\(self.name)", "error": "\(failure)", "retry.queued_bytes": "\(queued)",
                    "retry.dropped_points": "\(dropped)", "delivery.failures_in_a_row": "\(failures)",
                ])
        } else if !held.isEmpty {
            logger.info(
                "Delivered flushes held back while the upstream was unreachable",
                metadata: [
                    "backend.name": "\(self.name)", "flush.replayed_points": "\(held.reduce(0) { $0 + $1.points })",
                ])
        }
        self.endAttempt()
        return source.deliveredPoints
    }

    /// The final flush: tries until everything is delivered (including what earlier attempts still under way
    /// give back), the deadline passes, or the upstream could not be connected to for `finalConnectWindow`.
    func deliverFinal(_ fresh: @escaping () -> Payload?, deadline: ContinuousClock.Instant, logger: Logger) async -> Int {
        let start = self.clock.now
        let connectDeadline = min(deadline, start + self.finalConnectWindow)
        self.state.withLock { $0.cutoff = deadline }
        var held = self.takeQueue()
        var fresh: (() -> Payload?)? = fresh
        var warned = false
        var lastFailure: DeliveryFailure? = nil
        var delivered = 0
        while true {
            if !held.isEmpty || fresh != nil {
                let source = DeliverySource(held: held, fresh: fresh, keepBytes: self.retryBufferBytes)
                fresh = nil
                let attempt = DeliveryAttempt(isFinal: true, connectDeadline: connectDeadline, deadline: { deadline })
                let failure = await self.transport.send(source, attempt)
                self.record(source, failure: failure, start: start, logger: logger)
                delivered += source.deliveredPoints
                if let failure {
                    lastFailure = failure
                    self.putBack(source, append: false)
                    if !warned {
                        warned = true
                        logger.warning(
                            "Final flush failed; retrying until the shutdown deadline",
                            metadata: ["backend.name": "\(self.name)", "error": "\(failure)"])
                    }
                    let now = self.clock.now
                    let unreachable = !failure.connected && now >= connectDeadline
                    if unreachable || now >= deadline - .milliseconds(250) { break }
                    try? await Task.sleep(for: .milliseconds(200))
                    held = self.takeQueue()
                    continue
                }
            }
            // Attempts that started before the final flush may still give something back.
            await self.waitForIdle()
            held = self.takeQueue()
            if held.isEmpty { break }
        }
        let lost = self.state.withLock { state -> Int in
            state.closed = true
            let points = state.queue.reduce(0) { $0 + $1.points }
            state.statistics.droppedPoints += points
            state.queue = []
            state.statistics.queuedBytes = 0
            return points
        }
        if lost > 0 {
            logger.error(
                "Final flush could not be delivered; datapoints are lost",
                metadata: [
                    "backend.name": "\(self.name)", "flush.lost_points": "\(lost)",
                    "error": "\(lastFailure.map { "\($0)" } ?? "the shutdown deadline passed")",
                ])
        }
        return delivered
    }

    /// An attempt's deadlines: its own, cut short once the final flush has started.
    func attempt(deadline: ContinuousClock.Instant, connectDeadline: ContinuousClock.Instant) -> DeliveryAttempt {
        DeliveryAttempt(isFinal: false, connectDeadline: connectDeadline) { [self] in
            let cutoff = self.state.withLock { $0.cutoff }
            return cutoff.map { min($0, deadline) } ?? deadline
        }
    }

    /// Updates statsd's figures after an attempt.
    func record(
        _ source: DeliverySource<Payload>, failure: DeliveryFailure?, start: ContinuousClock.Instant, logger: Logger
    ) {
        // A refusal is logged once per kind, then at most once an hour with the count since (the upstream says
        // the same for every flush until someone acts; the management port's `dropped_points` counts every one).
        if let rejection = source.rejection, let key = source.rejectionKey {
            let now = self.clock.now
            let repeated = self.state.withLock { state -> Int? in
                if let last = state.refusalsLogged[key], now - last.at < .seconds(3600) {
                    state.refusalsLogged[key]!.since += source.rejectedPoints
                    return nil
                }
                let since = state.refusalsLogged[key]?.since ?? 0
                state.refusalsLogged[key] = (now, 0)
                return since
            }
            if let repeated {
                var metadata: Logger.Metadata = [
                    "backend.name": "\(self.name)", "error": "\(rejection)",
                    "flush.dropped_points": "\(source.rejectedPoints)",
                ]
                if repeated > 0 { metadata["dropped_points.since_last_logged"] = "\(repeated)" }
                logger.error("Upstream refused a flush; its datapoints are dropped", metadata: metadata)
            }
        }
        let now = Double(WallClock.unixSeconds())
        let elapsed = self.clock.now - start
        self.state.withLock { state in
            state.statistics.droppedPoints += source.rejectedPoints
            if let failure {
                state.statistics.lastException = now
                state.reachable = failure.connected
            } else {
                state.failures = 0
                state.lastWarning = nil
                state.statistics.lastFlush = now
                state.statistics.flushTime = (Double(elapsed.components.seconds) * 1000
                    + Double(elapsed.components.attoseconds) / 1e15).rounded(.down)
                state.statistics.flushLength = Double(source.deliveredBytes)
                state.reachable = true
            }
        }
    }

    /// Puts what `source` did not deliver back into the retry buffer (at the front: it is older than what waits
    /// there; or at the end, for a flush that never started), dropping the oldest past the bound. After the final
    /// flush has ended, what comes back is lost and counted. Returns (points dropped now, bytes queued).
    @discardableResult
    func putBack(_ source: DeliverySource<Payload>, append: Bool) -> (Int, Int) {
        // Encoding the rest of a flush can take a while: outside the lock.
        var (rest, dropped) = source.remainder()
        return self.state.withLock { state in
            if state.closed {
                dropped += rest.reduce(0) { $0 + $1.points }
                rest = []
            }
            state.queue = append ? state.queue + rest : rest + state.queue
            var bytes = state.queue.reduce(0) { $0 + $1.byteCount }
            var first = 0
            while bytes > self.retryBufferBytes, first < state.queue.count {
                bytes -= state.queue[first].byteCount
                dropped += state.queue[first].points
                first += 1
            }
            state.queue.removeFirst(first)
            state.statistics.queuedBytes = bytes
            state.statistics.droppedPoints += dropped
            return (dropped, bytes)
        }
    }

    /// Empties the retry buffer, returning what it held.
    func takeQueue() -> [Payload] {
        self.state.withLock { state in
            defer {
                state.queue = []
                state.statistics.queuedBytes = 0
            }
            return state.queue
        }
    }

    func endAttempt() {
        let waiters = self.state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.attempts -= 1
            guard state.attempts == 0 else { return [] }
            defer { state.idleWaiters = [] }
            return state.idleWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once no regular attempt is under way (they all end by the cutoff).
    func waitForIdle() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let idle = self.state.withLock { state -> Bool in
                if state.attempts == 0 { return true }
                state.idleWaiters.append(continuation)
                return false
            }
            if idle { continuation.resume() }
        }
    }
}
