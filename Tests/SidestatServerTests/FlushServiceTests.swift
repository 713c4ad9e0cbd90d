//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import ServiceLifecycle
import SidestatAggregation
import SidestatBackends
import SidestatConfiguration
import SidestatServer
import SidestatSupport
import Synchronization
import Testing

/// A clock the test moves: `sleep` returns when `advance` passes its wake time (or throws when cancelled). The test
/// waits for the flusher to go to sleep through `waitFor`, which resumes when a sleep is asked for, not on a timer.
final class ManualTime: TimeSource {
    private struct Sleeper {
        var id: Int
        var until: Int
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now: Int
        var sleepers: [Sleeper] = []
        var nextID = 0
        /// Each wake time asked for, in order.
        var requested: [Int] = []
        /// Tests waiting for a condition on the sleeps.
        var watchers: [(condition: @Sendable ([Int], [Int]) -> Bool, continuation: CheckedContinuation<Void, Never>)] = []

        /// Takes out the watchers whose condition holds now.
        mutating func satisfiedWatchers() -> [CheckedContinuation<Void, Never>] {
            let sleeping = self.sleepers.map(\.until)
            let requested = self.requested
            let ready = self.watchers.filter { $0.condition(requested, sleeping) }.map(\.continuation)
            self.watchers.removeAll { $0.condition(requested, sleeping) }
            return ready
        }
    }

    private let state: Mutex<State>

    init(now: Int) { self.state = Mutex(State(now: now)) }

    /// Each wake time asked for, in order.
    var requested: [Int] { self.state.withLock { $0.requested } }

    func unixMilliseconds() -> Int { self.state.withLock { $0.now } }

    func sleep(for duration: Duration) async throws {
        let milliseconds = duration.inMilliseconds
        let id = self.state.withLock { state -> Int in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let (cancelled, ready) = self.state.withLock { state -> (Bool, [CheckedContinuation<Void, Never>]) in
                    if Task.isCancelled { return (true, []) }
                    let until = state.now + milliseconds
                    state.sleepers.append(Sleeper(id: id, until: until, continuation: continuation))
                    state.requested.append(until)
                    return (false, state.satisfiedWatchers())
                }
                if cancelled { continuation.resume(throwing: CancellationError()) }
                for watcher in ready { watcher.resume() }
            }
        } onCancel: {
            let sleeper = self.state.withLock { state -> Sleeper? in
                guard let index = state.sleepers.firstIndex(where: { $0.id == id }) else { return nil }
                return state.sleepers.remove(at: index)
            }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Moves the clock on and wakes every sleeper whose time has come.
    func advance(to now: Int) {
        let due = self.state.withLock { state -> [Sleeper] in
            state.now = now
            let due = state.sleepers.filter { $0.until <= now }
            state.sleepers.removeAll { $0.until <= now }
            return due
        }
        for sleeper in due { sleeper.continuation.resume() }
    }

    /// Returns once `condition` holds for the wake times asked for so far and those still asleep.
    func waitFor(_ condition: @escaping @Sendable (_ requested: [Int], _ sleeping: [Int]) -> Bool) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let holds = self.state.withLock { state -> Bool in
                if condition(state.requested, state.sleepers.map(\.until)) { return true }
                state.watchers.append((condition, continuation))
                return false
            }
            if holds { continuation.resume() }
        }
    }

    /// Returns once `count` sleeps have been asked for.
    func waitForRequests(_ count: Int) async { await self.waitFor { requested, _ in requested.count >= count } }

    /// Returns once someone sleeps until `until`.
    func waitForSleeper(until: Int) async { await self.waitFor { _, sleeping in sleeping.contains(until) } }
}

/// Keeps every flush it gets, with the deadline's distance from the moment it arrived.
final class RecordingBackend: MetricsBackend {
    struct Received: Sendable {
        var data: FlushData
        var deadlineIn: Duration
    }

    let name = "recording"
    let destination = "memory"
    let finalFlushWaitsForTick: Bool
    let acceptsLatePoints: Bool
    let received: AsyncStream<Received>
    private let continuation: AsyncStream<Received>.Continuation

    init(waitsForTick: Bool = false, acceptsLatePoints: Bool = false) {
        self.finalFlushWaitsForTick = waitsForTick
        self.acceptsLatePoints = acceptsLatePoints
        (self.received, self.continuation) = AsyncStream.makeStream()
    }

    func flush(_ data: FlushData, deadline: ContinuousClock.Instant, logger: Logger) async {
        self.continuation.yield(Received(data: data, deadlineIn: deadline - ContinuousClock.now))
    }

    func status() -> [(name: String, value: Double)] { [] }
}

/// The flush service in process, on a clock the test moves: no socket, no wait for a real tick. (A condition that
/// never comes would hang a test: the time limit ends it.)
@Suite(.timeLimit(.minutes(1)))
struct FlushServiceTests {
    let aggregator = Aggregator(shardCount: 1)
    let state = DaemonState(healthUp: true)
    let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    func ingest(_ text: String) {
        var bytes = Array(text.utf8)
        _ = bytes.withUnsafeMutableBytes { self.aggregator.ingest(UnsafeRawBufferPointer($0), shard: 0) }
    }

    func counter(_ data: FlushData, _ name: String) -> Double? {
        data.snapshot.counters.first { data.snapshot.string($0.key) == name }?.value
    }

    /// Runs a flush service with `backend` on `time` until `body` returns, then shuts it down gracefully.
    func run(
        _ backend: RecordingBackend, time: ManualTime, shutdownTimeout: Int = 10_000,
        _ body: (ServiceGroup) async throws -> Void
    ) async throws {
        try await self.run([backend], time: time, shutdownTimeout: shutdownTimeout, body)
    }

    func run(
        _ backends: [RecordingBackend], time: ManualTime, shutdownTimeout: Int = 10_000,
        _ body: (ServiceGroup) async throws -> Void
    ) async throws {
        var configuration = DaemonConfiguration()
        configuration.shutdownTimeout = .milliseconds(shutdownTimeout)
        let service = FlushService(
            aggregator: self.aggregator, backends: backends, configuration: configuration, state: self.state,
            flushState: FlushState(), time: time, logger: self.quiet)
        let group = ServiceGroup(configuration: .init(services: [service], logger: self.quiet))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await body(group)
            try await tasks.waitForAll()
        }
    }

    @Test("a tick: the first flush waits for startup + flushInterval, carries the interval's counts and a deadline one interval on")
    func tick() async throws {
        let startup = self.state.startupTime * 1000
        let time = ManualTime(now: startup + 1234)
        let backend = RecordingBackend()
        var received = backend.received.makeAsyncIterator()
        try await self.run(backend, time: time) { group in
            await time.waitForSleeper(until: startup + 10_000)
            self.ingest("hits:1|c\nhits:2|c")
            time.advance(to: startup + 10_000)
            let first = try #require(await received.next())
            #expect(!first.data.isFinal)
            #expect(first.data.timestamp == self.state.startupTime + 10)
            #expect(self.counter(first.data, "hits") == 3)
            #expect(self.counter(first.data, "statsd.metrics_received") == 2)
            #expect(first.deadlineIn > .seconds(9) && first.deadlineIn <= .seconds(10))
            // The next tick is on the grid, whatever time the flush took.
            await time.waitForSleeper(until: startup + 20_000)
            self.ingest("hits:5|c")
            time.advance(to: startup + 20_050)
            let second = try #require(await received.next())
            #expect(self.counter(second.data, "hits") == 5)
            #expect(second.data.timestamp == self.state.startupTime + 20)
            await group.triggerGracefulShutdown()
        }
        #expect(Array(time.requested.prefix(2)) == [startup + 10_000, startup + 20_000])
    }

    @Test("late points (|T before the interval): apart, by interval, for a backend with timestamps; folded in for the others")
    func latePoints() async throws {
        let startup = self.state.startupTime * 1000
        let time = ManualTime(now: startup)
        let stamped = RecordingBackend(acceptsLatePoints: true)
        let plain = RecordingBackend()
        var stampedFlushes = stamped.received.makeAsyncIterator()
        var plainFlushes = plain.received.makeAsyncIterator()
        try await self.run([stamped, plain], time: time) { group in
            await time.waitForSleeper(until: startup + 10_000)
            let start = self.state.startupTime
            // Two intervals back, one back, and this one.
            self.ingest("hits:4|c|T\(start - 15)\nhits:2|c|T\(start - 1)\nhits:1|c|T\(start)\nhits:1|c")
            time.advance(to: startup + 10_000)
            let apart = try #require(await stampedFlushes.next()).data
            #expect(self.counter(apart, "hits") == 2)
            #expect(self.counter(apart, "statsd.late_points") == 2)
            #expect(apart.snapshot.late.map(\.timestamp) == [start - 10, start])
            #expect(apart.snapshot.late.map { $0.snapshot.counters.map(\.value) } == [[4], [2]])
            let folded = try #require(await plainFlushes.next()).data
            #expect(self.counter(folded, "hits") == 8)
            #expect(self.counter(folded, "statsd.late_points") == 2)
            #expect(self.counter(folded, "statsd.metrics_received") == 4)
            #expect(folded.snapshot.late.isEmpty)
            await group.triggerGracefulShutdown()
        }
    }

    @Test("the final flush: on shutdown at once, with what came since the last tick and the shutdown deadline")
    func finalFlush() async throws {
        let startup = self.state.startupTime * 1000
        let time = ManualTime(now: startup)
        let backend = RecordingBackend()
        var received = backend.received.makeAsyncIterator()
        try await self.run(backend, time: time, shutdownTimeout: 4000) { group in
            await time.waitForSleeper(until: startup + 10_000)
            self.ingest("late:7|c")
            time.advance(to: startup + 9_000)
            await group.triggerGracefulShutdown()
            let final = try #require(await received.next())
            #expect(final.data.isFinal)
            #expect(self.counter(final.data, "late") == 7)
            #expect(final.data.timestamp == self.state.startupTime + 9)
            #expect(final.deadlineIn > .seconds(3) && final.deadlineIn <= .seconds(4))
        }
        // No tick was waited for: the console, Prometheus and an unreachable upstream flush at once.
        #expect(time.requested == [startup + 10_000])
    }

    @Test("a backend that loses a value to a shared slot: the final flush waits for the near tick, not for a far one")
    func finalFlushWaitsForTick() async throws {
        let startup = self.state.startupTime * 1000
        let time = ManualTime(now: startup)
        let backend = RecordingBackend(waitsForTick: true)
        var received = backend.received.makeAsyncIterator()
        try await self.run(backend, time: time) { group in
            await time.waitForSleeper(until: startup + 10_000)
            time.advance(to: startup + 7_000)
            self.ingest("late:1|c")
            await group.triggerGracefulShutdown()
            // 3 s to the tick leave 7 of the 10 s budget: it waits, and nothing is flushed before the tick.
            await time.waitForRequests(2)
            #expect(time.requested.last == startup + 10_000)
            time.advance(to: startup + 10_000)
            let final = try #require(await received.next())
            #expect(final.data.isFinal)
            #expect(final.data.timestamp == self.state.startupTime + 10)
            #expect(self.counter(final.data, "late") == 1)
        }
        // Too close to the deadline: at once.
        let near = ManualTime(now: startup)
        let other = RecordingBackend(waitsForTick: true)
        var otherReceived = other.received.makeAsyncIterator()
        try await self.run(other, time: near, shutdownTimeout: 2500) { group in
            await near.waitForSleeper(until: startup + 10_000)
            near.advance(to: startup + 8_000)
            await group.triggerGracefulShutdown()
            let final = try #require(await otherReceived.next())
            #expect(final.data.timestamp == self.state.startupTime + 8)
        }
        #expect(near.requested == [startup + 10_000])
    }
}
