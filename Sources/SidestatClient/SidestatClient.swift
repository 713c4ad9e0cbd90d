//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import CoreMetrics
import Glibc
import Synchronization

/// A statsd and DogStatsD client, and a swift-metrics backend: `MetricsSystem.bootstrap(SidestatClient())`.
///
/// Lines are batched into datagrams of at most ``Configuration/maxDatagramSize`` bytes, which leave when full and
/// every ``Configuration/flushInterval``. Counters, gauges and sets can be aggregated in the client (one line per key
/// and interval). Nothing a metric call does blocks or throws: with no server listening, datagrams are dropped and
/// counted in ``statistics``. Call ``shutdown()`` before the process exits to send what is batched; without it, at
/// most one interval is lost.
public final class SidestatClient: MetricsFactory, Sendable {
    /// How the client sends and writes its lines.
    public struct Configuration: Sendable {
        /// Where datagrams go.
        public enum Transport: Sendable, Equatable {
            /// UDP to `host` (a name, resolved when the client starts, or an IPv4 or IPv6 literal) and `port`.
            case udp(host: String, port: Int)
            /// A Unix datagram socket (Sidestat's `./servers/unixgram`, DogStatsD's `unix://`).
            case unixDatagram(path: String)

            /// What the environment says, as `sidestat start` sets it for its children: `STATSD_HOST` and
            /// `STATSD_PORT`, else `DD_AGENT_HOST` and `DD_DOGSTATSD_PORT`, else `DD_DOGSTATSD_SOCKET`, else
            /// 127.0.0.1 port 8125 (a missing or unreadable port is 8125).
            public static var environment: Transport {
                func variable(_ name: String) -> String? {
                    guard let value = getenv(name) else { return nil }
                    let text = String(cString: value)
                    return text.isEmpty ? nil : text
                }
                func port(_ name: String) -> Int {
                    variable(name).flatMap(Int.init).flatMap { (1...65535).contains($0) ? $0 : nil } ?? 8125
                }
                if let host = variable("STATSD_HOST") { return .udp(host: host, port: port("STATSD_PORT")) }
                if let host = variable("DD_AGENT_HOST") { return .udp(host: host, port: port("DD_DOGSTATSD_PORT")) }
                if let socket = variable("DD_DOGSTATSD_SOCKET") { return .unixDatagram(path: socket) }
                return .udp(host: "127.0.0.1", port: 8125)
            }
        }

        /// How swift-metrics dimensions are written.
        public enum Dimensions: Sendable {
            /// DogStatsD tags: `hits:1|c|#route:home` (Sidestat and Graphite 1.1 keep them as tags).
            case tags
            /// Name segments, for a statsd without tags: `hits.route.home:1|c`.
            case nameSegments
        }

        /// The type an aggregating swift-metrics Recorder sends.
        public enum RecorderType: String, Sendable {
            /// `ms`: a statsd timer (every statsd has it).
            case timer = "ms"
            /// `d`: a DogStatsD distribution.
            case distribution = "d"
        }

        /// Where datagrams go; by default what the environment says (``Transport/environment``).
        public var transport: Transport
        /// A datagram's largest size in bytes: 1,432 fits an Ethernet frame with room for IPv6 and UDP headers.
        public var maxDatagramSize: Int
        /// How often batched lines and aggregated values are sent.
        public var flushInterval: Duration
        /// Whether counters, gauges and sets are aggregated in the client between flushes (timers never are).
        public var aggregates: Bool
        /// How swift-metrics dimensions are written.
        public var dimensions: Dimensions
        /// What an aggregating Recorder sends.
        public var recorderType: RecorderType
        /// A prefix for every name, joined with a dot (`myapp` makes `myapp.hits`).
        public var prefix: String
        /// DogStatsD tags on every line (`service:web`).
        public var tags: [String]

        public init(
            transport: Transport = .environment, maxDatagramSize: Int = 1432, flushInterval: Duration = .milliseconds(500),
            aggregates: Bool = true, dimensions: Dimensions = .tags, recorderType: RecorderType = .timer,
            prefix: String = "", tags: [String] = []
        ) {
            self.transport = transport
            self.maxDatagramSize = maxDatagramSize
            self.flushInterval = flushInterval
            self.aggregates = aggregates
            self.dimensions = dimensions
            self.recorderType = recorderType
            self.prefix = prefix
            self.tags = tags
        }
    }

    /// What the client has sent and dropped since it started.
    public struct Statistics: Sendable, Equatable {
        /// Datagrams the socket took.
        public var datagramsSent: Int
        /// Datagrams dropped: no server, no socket, or a full socket buffer.
        public var datagramsDropped: Int
        /// Lines in the dropped datagrams, and values that statsd cannot carry (infinity, NaN).
        public var linesDropped: Int
    }

    public let configuration: Configuration
    let sender: Sender
    private let aggregating = Mutex<[ObjectIdentifier: any AggregatingHandler]>([:])
    private let plainCounters = Mutex<[LineKey: AggregatedCounter]>([:])
    private let plainGauges = Mutex<[LineKey: Gauge]>([:])
    private let sets = Mutex<[LineKey: Set<String>]>([:])
    private let thread = Mutex<FlushThread?>(nil)

    /// Starts a client: its socket opens now (a name is resolved now), and a thread flushes every interval.
    public init(_ configuration: Configuration = Configuration()) {
        self.configuration = configuration
        self.sender = Sender(destination: configuration.transport, maxDatagramSize: configuration.maxDatagramSize)
        self.sender.flush()
        let tick: @Sendable () -> Void = { [weak self] in self?.flush() }
        let thread = FlushThread(interval: configuration.flushInterval, tick: tick)
        self.thread.withLock { $0 = thread }
    }

    /// Sends what is batched and aggregated now, and reopens the socket if it could not be opened before.
    public func flush() {
        for handler in self.aggregating.withLock({ Array($0.values) }) {
            handler.flush(into: self.sender)
        }
        let sets = self.sets.withLock { sets -> [LineKey: Set<String>] in
            let taken = sets
            sets = [:]
            return taken
        }
        for (key, members) in sets {
            for member in members { self.sender.line(key, member: member) }
        }
        self.sender.flush()
    }

    /// Sends what is batched and aggregated, stops the flush thread and closes the socket. Later calls are dropped
    /// and counted. Idempotent.
    public func shutdown() {
        let thread = self.thread.withLock { thread -> FlushThread? in
            let taken = thread
            thread = nil
            return taken
        }
        thread?.stop()
        self.flush()
        self.sender.close()
    }

    public var statistics: Statistics {
        Statistics(
            datagramsSent: self.sender.datagramsSent.load(ordering: .relaxed),
            datagramsDropped: self.sender.datagramsDropped.load(ordering: .relaxed),
            linesDropped: self.sender.linesDropped.load(ordering: .relaxed))
    }

    // MARK: swift-metrics

    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        let key = LineKey(name: label, type: "c", dimensions: dimensions, configuration: self.configuration)
        guard self.configuration.aggregates else { return CounterLines(key: key, sender: self.sender) }
        return self.register(AggregatedCounter(key: key))
    }

    public func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        let key = LineKey(name: label, type: "c", dimensions: dimensions, configuration: self.configuration)
        return self.register(FloatingPointCounter(key: key, sender: self.sender, aggregates: self.configuration.aggregates))
    }

    public func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        self.makeGauge(label: label, dimensions: dimensions)
    }

    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        guard aggregate else { return self.makeGauge(label: label, dimensions: dimensions) }
        let type = self.configuration.recorderType.rawValue
        return Samples(
            key: LineKey(name: label, type: type, dimensions: dimensions, configuration: self.configuration),
            sender: self.sender)
    }

    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        Samples(
            key: LineKey(name: label, type: "ms", dimensions: dimensions, configuration: self.configuration),
            sender: self.sender)
    }

    public func destroyCounter(_ handler: any CounterHandler) { self.unregister(handler) }
    public func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) { self.unregister(handler) }
    public func destroyMeter(_ handler: any MeterHandler) { self.unregister(handler) }
    public func destroyRecorder(_ handler: any RecorderHandler) { self.unregister(handler) }
    public func destroyTimer(_ handler: any TimerHandler) {}

    private func makeGauge(label: String, dimensions: [(String, String)]) -> Gauge {
        let key = LineKey(name: label, type: "g", dimensions: dimensions, configuration: self.configuration)
        return self.register(Gauge(key: key, sender: self.sender, aggregates: self.configuration.aggregates))
    }

    private func register<Handler: AggregatingHandler>(_ handler: Handler) -> Handler {
        self.aggregating.withLock { $0[ObjectIdentifier(handler)] = handler }
        return handler
    }

    /// Forgets a handler after sending what it holds.
    private func unregister(_ handler: AnyObject) {
        let removed = self.aggregating.withLock { $0.removeValue(forKey: ObjectIdentifier(handler)) }
        removed?.flush(into: self.sender)
    }

    // MARK: statsd and DogStatsD, directly

    /// Adds `amount` to a counter. With a `sampleRate` below 1 the call is sent that often, with `|@rate`, and the
    /// server scales it back; sampled calls are not aggregated in the client.
    public func increment(_ name: String, by amount: Int64 = 1, sampleRate: Double = 1, tags: [String] = []) {
        let key = LineKey(name: name, type: "c", tags: tags, configuration: self.configuration)
        if sampleRate >= 1 && self.configuration.aggregates {
            let counter = self.plainCounters.withLock { counters in
                if let counter = counters[key] { return counter }
                let counter = self.register(AggregatedCounter(key: key))
                counters[key] = counter
                return counter
            }
            counter.increment(by: amount)
        } else if Self.sampled(sampleRate) {
            self.sender.line(key, amount, tail: key.tail(sampleRate: sampleRate))
        }
    }

    /// Subtracts `amount` from a counter.
    public func decrement(_ name: String, by amount: Int64 = 1, sampleRate: Double = 1, tags: [String] = []) {
        self.increment(name, by: -amount, sampleRate: sampleRate, tags: tags)
    }

    /// Sets a gauge. A negative value is sent so that it is read as a value, not a delta.
    public func gauge(_ name: String, _ value: Double, tags: [String] = []) {
        let key = LineKey(name: name, type: "g", tags: tags, configuration: self.configuration)
        if self.configuration.aggregates {
            let gauge = self.plainGauges.withLock { gauges in
                if let gauge = gauges[key] { return gauge }
                let gauge = self.register(Gauge(key: key, sender: self.sender, aggregates: true))
                gauges[key] = gauge
                return gauge
            }
            gauge.set(value)
        } else {
            Gauge.write(value, key: key, into: self.sender)
        }
    }

    /// Records a duration in a timer, in milliseconds.
    public func timing(_ name: String, _ duration: Duration, sampleRate: Double = 1, tags: [String] = []) {
        guard Self.sampled(sampleRate) else { return }
        let key = LineKey(name: name, type: "ms", tags: tags, configuration: self.configuration)
        let nanoseconds = duration.components.seconds * 1_000_000_000
            + duration.components.attoseconds / 1_000_000_000
        self.sender.line(key, nanoseconds: nanoseconds, tail: key.tail(sampleRate: sampleRate))
    }

    /// Records a value in a DogStatsD distribution (`d`; Sidestat aggregates it like a timer).
    public func distribution(_ name: String, _ value: Double, sampleRate: Double = 1, tags: [String] = []) {
        guard Self.sampled(sampleRate) else { return }
        let key = LineKey(name: name, type: "d", tags: tags, configuration: self.configuration)
        self.sender.line(key, value, tail: key.tail(sampleRate: sampleRate))
    }

    /// Adds `member` to a set: the server counts the distinct members of an interval. Aggregated, each member is
    /// sent once an interval.
    public func set(_ name: String, _ member: String, tags: [String] = []) {
        let key = LineKey(name: name, type: "s", tags: tags, configuration: self.configuration)
        let member = LineFormat.name(member)
        if self.configuration.aggregates {
            self.sets.withLock { _ = $0[key, default: []].insert(member) }
        } else {
            self.sender.line(key, member: member)
        }
    }

    private static func sampled(_ rate: Double) -> Bool { rate >= 1 || Double.random(in: 0..<1) < rate }
}
