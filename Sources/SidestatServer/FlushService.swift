//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatSupport
import Logging
import ServiceLifecycle
import SidestatAggregation
import SidestatBackends
import SidestatConfiguration
import Synchronization

/// What the flusher shares with the management port.
public final class FlushState: Sendable {
    private struct Values {
        var flushCount = 0
        var timestampLag: Double? = nil
    }

    private let values = Mutex(Values())

    public init() {}

    public var flushCount: Int { self.values.withLock { $0.flushCount } }
    /// statsd's `timestamp_lag` gauge, once there has been a flush before.
    public var timestampLag: Double? { self.values.withLock { $0.timestampLag } }

    func record(timestampLag: Double?) {
        self.values.withLock {
            $0.flushCount += 1
            if let timestampLag { $0.timestampLag = timestampLag }
        }
    }
}

/// What runs at each flush tick before the interval is taken (the runner's process metrics).
public final class FlushHooks: Sendable {
    private let hooks = Mutex<[@Sendable () -> Void]>([])

    public init() {}

    func add(_ hook: @escaping @Sendable () -> Void) { self.hooks.withLock { $0.append(hook) } }

    func run() { for hook in self.hooks.withLock({ $0 }) { hook() } }
}

/// When flushes happen, in milliseconds of the wall clock: pure functions of the time, so that the schedule is tested
/// without waiting for it.
public enum FlushSchedule {
    /// statsd's `getFlushTimeout`: the wait until the next multiple of `interval` after `startup` (from the number of
    /// intervals elapsed, rounded, plus one, as statsd computes it; 0 when that moment has passed).
    public static func untilNextTick(now: Int, startup: Int, interval: Int) -> Int {
        let elapsed = now - startup
        let attempt = Int((Double(elapsed) / Double(interval)).rounded(.toNearestOrAwayFromZero)) + 1
        return max(0, startup + attempt * interval - now)
    }

    /// How long the final flush waits for the next tick, or nil when it goes at once: the tick must leave enough of
    /// the shutdown budget for delivery (at least 2 s, or half of the budget when that is less).
    public static func finalFlushWait(now: Int, startup: Int, interval: Int, shutdownBudget: Int) -> Int? {
        let elapsed = now - startup
        let untilTick = startup + (elapsed / interval + 1) * interval - now
        guard untilTick > 0, untilTick <= shutdownBudget - min(shutdownBudget / 2, 2000) else { return nil }
        return untilTick
    }
}

/// The flush tick: every `flushInterval`, aligned to the start-up time as statsd aligns it, takes the interval's
/// aggregates out of every shard, prepares them (statsd's `process_metrics`) and hands them to every backend at
/// once. On shutdown it flushes one last time, after the listeners have stopped, and waits for delivery until the
/// shutdown deadline (DEVIATIONS #3).
public struct FlushService: Service {
    let aggregator: Aggregator
    let backends: [any MetricsBackend]
    let configuration: DaemonConfiguration
    let state: DaemonState
    let flushState: FlushState
    let logger: Logger
    let statistics: TimerStatisticsConfiguration
    /// What a SIGHUP reload may change.
    let settings: ReloadableSettings
    /// The schedule's time (the wall clock, or a test's).
    let time: any TimeSource
    let hooks: FlushHooks

    public init(
        aggregator: Aggregator, backends: [any MetricsBackend], configuration: DaemonConfiguration,
        state: DaemonState, flushState: FlushState, time: any TimeSource = SystemTime(), hooks: FlushHooks = FlushHooks(),
        logger: Logger
    ) {
        self.time = time
        self.hooks = hooks
        self.aggregator = aggregator
        self.backends = backends
        self.configuration = configuration
        self.state = state
        self.flushState = flushState
        self.logger = logger
        self.settings = ReloadableSettings(configuration)
        self.statistics = TimerStatisticsConfiguration(
            percentThreshold: configuration.percentThreshold,
            histogram: configuration.histogram.map { rule in
                (rule.metric, rule.bins.map { ($0.limit, $0.text) })
            },
            calculatedTimerMetrics: configuration.calculatedTimerMetrics,
            flushIntervalSeconds: configuration.flushInterval.inSeconds)
    }

    /// statsd's own counters, in the order statsd creates them.
    static func internalCounterNames(prefix: String) -> [String] {
        [prefix + ".bad_lines_seen", prefix + ".packets_received", prefix + ".metrics_received"]
    }

    public func run() async {
        // Each backend takes flushes from its own queue, so a slow or dead upstream never holds up the flush tick,
        // ingest or the other backends. A backend whose flushes may overlap gets each one as soon as it is due (its
        // delivery engine bounds how many are under way); the others get them one at a time. A flush carries its
        // deadline (one interval after its tick, at least a second), by when what it could not send goes back to
        // the retry buffer.
        var mailboxes: [AsyncStream<(FlushData, ContinuousClock.Instant)>.Continuation] = []
        await withDiscardingTaskGroup { group in
            for backend in self.backends {
                let (stream, continuation) = AsyncStream<(FlushData, ContinuousClock.Instant)>.makeStream()
                mailboxes.append(continuation)
                group.addTask {
                    await withDiscardingTaskGroup { flushes in
                        for await (data, deadline) in stream {
                            if backend.flushesOverlap {
                                flushes.addTask { await backend.flush(data, deadline: deadline, logger: self.logger) }
                            } else {
                                await backend.flush(data, deadline: deadline, logger: self.logger)
                            }
                        }
                    }
                }
            }
            await self.tick { data, deadline in
                // Late points go apart to a backend that sends them with their own time, and are folded into the
                // interval (once per flush) for the others.
                var folded: FlushData? = nil
                for (backend, mailbox) in zip(self.backends, mailboxes) {
                    if backend.acceptsLatePoints || data.snapshot.late.isEmpty {
                        mailbox.yield((data, deadline))
                    } else {
                        if folded == nil { folded = data.foldingLatePoints() }
                        mailbox.yield((folded!, deadline))
                    }
                }
            }
            // The final flush is in every queue: the group waits until every backend has delivered it (or given up).
            for mailbox in mailboxes { mailbox.finish() }
        }
    }

    /// The flush schedule; returns after the final flush has been handed to `deliver`.
    func tick(_ deliver: (FlushData, ContinuousClock.Instant) -> Void) async {
        let interval = self.configuration.flushInterval.inMilliseconds
        self.startInterval()
        var previousTimestamp = 0
        while true {
            let wait = FlushSchedule.untilNextTick(
                now: self.time.unixMilliseconds(), startup: self.state.startupTime * 1000, interval: interval)
            do {
                try await cancelWhenGracefulShutdown {
                    try await self.time.sleep(for: .milliseconds(max(0, wait)))
                }
            } catch {
                // Shutdown (or cancellation): the listeners have stopped; flush what they read.
                let shutdown = ContinuousClock.now
                await self.waitForNearTick(interval: interval)
                let (data, deadline) = self.prepare(
                    previousTimestamp: &previousTimestamp, isFinal: true,
                    deadline: shutdown + self.configuration.shutdownTimeout)
                deliver(data, deadline)
                return
            }
            let (data, deadline) = self.prepare(previousTimestamp: &previousTimestamp, isFinal: false)
            deliver(data, deadline)
        }
    }

    /// A final flush at once would report part of an interval under a timestamp that can share a time-series slot
    /// with the flush just before it (a store that keeps the last value written to a slot would replace that whole
    /// interval by the part). When a backend can lose a value that way (`finalFlushWaitsForTick`) and the next tick
    /// leaves enough of the shutdown deadline for delivery (at least 2 s, or half of it), the final flush waits for
    /// the tick and lands where the next flush would have; otherwise it goes at once.
    func waitForNearTick(interval: Int) async {
        guard self.backends.contains(where: \.finalFlushWaitsForTick),
            let untilTick = FlushSchedule.finalFlushWait(
                now: self.time.unixMilliseconds(), startup: self.state.startupTime * 1000, interval: interval,
                shutdownBudget: self.configuration.shutdownTimeout.inMilliseconds)
        else { return }
        self.logger.info("Waiting for the flush tick before the final flush", metadata: ["flush.wait_ms": "\(untilTick)"])
        try? await self.time.sleep(for: .milliseconds(untilTick))
    }

    /// Marks now as the start of an interval, in whole seconds down (clients stamp `|T` with the second they are in):
    /// a point stamped earlier is late.
    func startInterval() {
        self.aggregator.startInterval(
            at: self.time.unixMilliseconds() / 1000,
            intervalSeconds: max(1, Int(self.configuration.flushInterval.inSeconds.rounded())))
    }

    /// Takes the interval's aggregates out of the shards and prepares them for the backends.
    func prepare(
        previousTimestamp: inout Int, isFinal: Bool, deadline finalDeadline: ContinuousClock.Instant? = nil
    ) -> (FlushData, ContinuousClock.Instant) {
        let clock = ContinuousClock()
        let start = clock.now
        let milliseconds = self.time.unixMilliseconds()
        let timestamp = Int((Double(milliseconds) / 1000).rounded(.toNearestOrAwayFromZero))
        var lag: Double? = nil
        if previousTimestamp > 0 {
            lag = Double(timestamp - previousTimestamp) - self.configuration.flushInterval.inSeconds
        }
        previousTimestamp = timestamp
        let c = self.configuration
        self.hooks.run()
        var snapshot = self.aggregator.takeSnapshot(policy: self.settings.retention)
        self.startInterval()
        snapshot.sortTimerSamples()
        for index in snapshot.late.indices { snapshot.late[index].snapshot.sortTimerSamples() }
        self.addInternalMetrics(to: &snapshot, timestampLag: lag)
        self.flushState.record(timestampLag: lag)
        let processing = clock.now - start
        let data = FlushData(
            timestamp: timestamp, snapshot: snapshot, flushInterval: c.flushInterval,
            processingTime: processing,
            timerStatistics: self.statistics, prefixStats: c.prefixStats, percentThreshold: c.percentThreshold,
            isFinal: isFinal, unixMilliseconds: milliseconds)
        let deadline =
            isFinal
            ? finalDeadline ?? start + c.shutdownTimeout
            : start + max(.seconds(1), c.flushInterval)
        if isFinal {
            self.logger.info("Final flush", metadata: ["flush.keys": "\(data.numStats)"])
        } else {
            self.logger.debug("Flushing", metadata: ["flush.keys": "\(data.numStats)"])
        }
        return (data, deadline)
    }

    /// statsd's own counters go first, then user counters; its `timestamp_lag` is a gauge from the second flush on.
    func addInternalMetrics(to snapshot: inout MetricSnapshot, timestampLag: Double?) {
        let names = Self.internalCounterNames(prefix: self.configuration.prefixStats)
        var values = [Double(snapshot.counts.badLinesSeen), Double(snapshot.counts.packetsReceived), Double(snapshot.counts.metricsReceived)]
        // A client that sends `statsd.packets_received:1|c` adds to the same counter, as in statsd. The counters stay
        // the table's arrays (statsd's own go in front): a flush of a million counters copies none of them.
        let lengths = Set(names.map { $0.utf8.count })
        var merged = Set<Int>()
        for (position, counter) in snapshot.counters.enumerated() where lengths.contains(Int(counter.key.length)) {
            if let index = names.firstIndex(of: snapshot.string(counter.key)) {
                values[index] += counter.value
                merged.insert(position)
            }
        }
        if !merged.isEmpty {
            var position = 0
            snapshot.counters.removeAll { _ in
                defer { position += 1 }
                return merged.contains(position)
            }
        }
        var own: [MetricSnapshot.CounterEntry] = []
        for (name, value) in zip(names, values) {
            let key = snapshot.store(name)
            own.append(.init(key: key, value: value))
        }
        self.state.recordSeriesDropped(snapshot.counts.seriesDropped)
        // Each only when not 0, so that statsd's output is unchanged otherwise.
        for (name, value) in [
            ("series_dropped", snapshot.counts.seriesDropped), ("events_received", snapshot.counts.eventsReceived),
            ("service_checks_received", snapshot.counts.serviceChecksReceived), ("late_points", snapshot.counts.latePoints),
        ] where value > 0 {
            own.append(.init(key: snapshot.store("\(self.configuration.prefixStats).\(name)"), value: Double(value)))
        }
        snapshot.counters.prepend(contentsOf: own)
        // Every upstream's delivery figures, as statsd's own gauges (unless it reports them itself):
        // `<prefixStats>.backends.<name>.flush_time` and so on.
        for backend in self.backends where backend.statusAsGauges {
            for (name, value) in backend.status() {
                let key = snapshot.store("\(self.configuration.prefixStats).backends.\(backend.name).\(name)")
                snapshot.gauges.append(.init(key: key, value: value, updated: 0))
            }
        }
        if let timestampLag {
            let name = self.configuration.prefixStats + ".timestamp_lag"
            let length = name.utf8.count
            if let index = snapshot.gauges.firstIndex(where: {
                Int($0.key.length) == length && snapshot.string($0.key) == name
            }) {
                snapshot.gauges[index].value = timestampLag
            } else {
                let key = snapshot.store(name)
                snapshot.gauges.append(.init(key: key, value: timestampLag, updated: 0))
            }
        }
    }
}
