//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatSupport
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import SidestatAggregation
import SidestatBackends
import SidestatConfiguration
import SidestatProtocol

/// statsd's management port: `help`, `stats`, `counters`, `timers`, `gauges`, `sets`, `delcounters`,
/// `deltimers`, `delgauges`, `delsets`, `health`, `config` and `quit`, one command per line (DEVIATIONS #19).
public final class ManagementServer: Service, Sendable {
    let server: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>
    let commands: ManagementCommands
    let registry: ConnectionRegistry
    let logger: Logger
    public let port: Int
    /// The longest command line read; a longer one is answered `ERROR`.
    static let maximumCommandBytes = 4096

    /// - Parameter idleTimeout: seconds a connection may send nothing before it is closed (0: never).
    static func bind(
        host: String, port: Int, commands: ManagementCommands, idleTimeout: Int = 300,
        registry: ConnectionRegistry = ConnectionRegistry(), logger: Logger
    ) async throws -> ManagementServer {
        let server: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>
        do {
            // A client that half-closes after its command (`nc -q1`, `nc -N`) still gets the whole answer.
            server = try await ServerBootstrap.sidestat(backlog: 64, registry: registry, logger: logger, kind: "Management")
                .childChannelOption(.allowRemoteHalfClosure, value: true)
                .bind(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if idleTimeout > 0 {
                            try channel.pipeline.syncOperations.addHandlers(
                                IdleStateHandler(readTimeout: .seconds(Int64(idleTimeout))),
                                CloseIdleConnection(seconds: idleTimeout, setting: "managementIdleTimeout", logger: logger))
                        }
                        return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw ListenError("the management port", address: host, port: port, error: error)
        }
        return ManagementServer(server: server, commands: commands, registry: registry, logger: logger)
    }

    private init(
        server: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>, commands: ManagementCommands,
        registry: ConnectionRegistry, logger: Logger
    ) {
        self.server = server
        self.commands = commands
        self.registry = registry
        self.logger = logger
        self.port = server.channel.localAddress?.port ?? 0
    }

    public func run() async throws {
        try await acceptConnections(
            on: self.server, registry: self.registry, logger: self.logger, kind: "Management", maximumConnections: 64
        ) { inbound, writer, connection in
            var session = ManagementSession(commands: self.commands)
            for try await buffer in inbound {
                connection.touch()
                let (replies, quit) = buffer.withUnsafeReadableBytes { session.receive($0.bindMemory(to: UInt8.self)) }
                if !replies.isEmpty {
                    connection.busy(true)
                    for reply in replies { try await writer.write(ByteBuffer(string: reply)) }
                    connection.busy(false)
                }
                if quit { return }
            }
            if let reply = session.finish() { try await writer.write(ByteBuffer(string: reply)) }
        }
    }
}

/// What the management port reads from one connection: lines of commands, each answered in turn. Separate from the
/// socket so that it can be tested and fuzzed directly.
public struct ManagementSession {
    let commands: ManagementCommands
    /// Commands are short: a longer line is cut (and answered ERROR), so a client sending megabytes without a
    /// newline costs a bounded buffer and one look at each byte.
    var framer = LineFramer(maximumLineBytes: ManagementServer.maximumCommandBytes)
    var closed = false

    public init(commands: ManagementCommands) {
        self.commands = commands
    }

    /// Lines read so far: the first one decides whether this is a web page's request.
    var linesRead = 0

    /// Takes the next bytes from the client: the replies to the commands they complete, and whether the connection
    /// ends here (the client asked to `quit`, or it is an HTTP request; nothing after that is answered or run).
    public mutating func receive(_ bytes: UnsafeBufferPointer<UInt8>) -> (replies: [String], quit: Bool) {
        guard !self.closed else { return ([], true) }
        var lines: [(text: String, cut: Bool)] = []
        self.framer.append(bytes) { lines.append(($0, $1)) }
        var replies: [String] = []
        for line in lines {
            self.linesRead += 1
            // A browser's request (a web page's fetch() or form, maybe through DNS rebinding) starts with an HTTP
            // request line: nothing it carries is run. statsd answers such a chunk ERROR and runs nothing too.
            if self.linesRead == 1, Self.isHTTPRequestLine(line.text) {
                self.closed = true
                return ([], true)
            }
            // A line past the bound is no command: answered ERROR, never run cut.
            guard !line.cut else {
                replies.append("ERROR\n")
                continue
            }
            guard let reply = self.commands.execute(line.text) else {
                self.closed = true
                return (replies, true)
            }
            replies.append(reply)
        }
        return (replies, false)
    }

    /// `METHOD /target HTTP/1.x`: a method in capitals, a target, and an HTTP version.
    static func isHTTPRequestLine(_ line: String) -> Bool {
        let parts = line.split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count == 3, parts[2].hasPrefix("HTTP/") else { return false }
        return !parts[0].isEmpty && parts[0].allSatisfy { $0.isASCII && $0.isUppercase }
    }

    /// The client closed its side: a last command without a newline still counts, as in statsd.
    public mutating func finish() -> String? {
        guard !self.closed else { return nil }
        self.closed = true
        var last: [String] = []
        self.framer.finish { last.append($0) }
        guard let line = last.first, !line.allSatisfy({ $0 == " " || $0 == "\r" }) else { return nil }
        if self.linesRead == 0, Self.isHTTPRequestLine(line.hasSuffix("\r") ? String(line.dropLast()) : line) { return nil }
        return self.commands.execute(line)
    }
}

/// The management commands, separate from the socket so that they can be tested directly.
public struct ManagementCommands: Sendable {
    let aggregator: Aggregator
    let state: DaemonState
    let backends: [any MetricsBackend]
    let configuration: DaemonConfiguration
    let flushState: FlushState

    public init(
        aggregator: Aggregator, state: DaemonState, backends: [any MetricsBackend], configuration: DaemonConfiguration,
        flushState: FlushState
    ) {
        self.aggregator = aggregator
        self.state = state
        self.backends = backends
        self.configuration = configuration
        self.flushState = flushState
    }

    /// The reply to one command line, or nil for `quit` (close the connection).
    public func execute(_ rawLine: String) -> String? {
        let words = rawLine.trimmingJSWhitespace().split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        let command = words.first ?? ""
        let parameters = Array(words.dropFirst())
        switch command {
        case "help":
            return "Commands: stats, counters, timers, gauges, sets, delcounters, deltimers, delgauges, delsets, health, "
                + "config, quit\n\n"
        case "health":
            if let action = parameters.first?.lowercased() {
                if action == "up" { self.state.isHealthy = true }
                if action == "down" { self.state.isHealthy = false }
            }
            return "health: \(self.state.isHealthy ? "up" : "down")\n"
        case "stats":
            return self.stats()
        case "config":
            return self.config()
        case "counters", "timers", "gauges", "sets":
            return self.dump(command) + "\nEND\n\n"
        case "delcounters": return self.delete(.counter, parameters)
        case "deltimers": return self.delete(.timer, parameters)
        case "delgauges": return self.delete(.gauge, parameters)
        case "delsets": return self.delete(.set, parameters)
        case "quit":
            return nil
        default:
            return "ERROR\n"
        }
    }

    func stats() -> String {
        let now = WallClock.unixSeconds()
        var text = "uptime: \(now - self.state.startupTime)\n"
        text += "messages.last_msg_seen: \(now - self.state.lastMessageSeenTime)\n"
        text += "messages.bad_lines_seen: \(self.state.badLinesSeenTotal)\n"
        // Only once the series budget refused keys, so that statsd's output is unchanged otherwise.
        if self.state.seriesDropped > 0 { text += "messages.series_dropped: \(self.state.seriesDropped)\n" }
        for backend in self.backends {
            for (name, value) in backend.status() {
                let shown = name.hasPrefix("last_") ? Double(now) - value : value
                text += "\(backend.name).\(name): \(JSNumber.string(shown))\n"
            }
        }
        return text + "END\n\n"
    }

    /// statsd's `config`: each key of the file, objects one level deep as `key > sub: value`, then the keys statsd
    /// adds itself. No END line, as in statsd.
    func config() -> String {
        var source = self.configuration.source
        let c = self.configuration
        // What statsd writes into its config object as it starts and after its first flush.
        source["gaugesMaxTTL"] = .number(Double(c.gaugesMaxTTL))
        source["deleteIdleStats"] = .bool(c.deleteIdleStats)
        source["flushInterval"] = .number(Double(c.flushInterval.inMilliseconds))
        if self.flushState.flushCount > 0 {
            source["deleteCounters"] = .bool(c.deleteCounters)
            source["deleteTimers"] = .bool(c.deleteTimers)
            source["deleteSets"] = .bool(c.deleteSets)
            source["deleteGauges"] = .bool(c.deleteGauges)
        }
        var text = "\n"
        // Any local client can ask: API keys, tokens and passwords are never shown.
        func shown(_ key: String, _ value: JSValue) -> String {
            DaemonConfiguration.isSecret(key) ? "***" : value.stringValue
        }
        for (key, value) in source.pairs {
            switch value {
            case .object(let object):
                for (subkey, subvalue) in object.pairs { text += "\(key) > \(subkey): \(shown(subkey, subvalue))\n" }
            case .array(let items):
                for (index, item) in items.enumerated() { text += "\(key) > \(index): \(item.stringValue)\n" }
            case .null:
                break
            default:
                text += "\(key): \(shown(key, value))\n"
            }
        }
        return text
    }

    func dump(_ kind: String) -> String {
        let snapshot = self.aggregator.peek()
        var fields: [String] = []
        switch kind {
        case "counters":
            let prefix = self.configuration.prefixStats
            fields.append(Self.jsonField(prefix + ".bad_lines_seen", Self.jsonNumber(Double(snapshot.counts.badLinesSeen))))
            fields.append(Self.jsonField(prefix + ".packets_received", Self.jsonNumber(Double(snapshot.counts.packetsReceived))))
            fields.append(Self.jsonField(prefix + ".metrics_received", Self.jsonNumber(Double(snapshot.counts.metricsReceived))))
            if snapshot.counts.seriesDropped > 0 {
                fields.append(Self.jsonField(prefix + ".series_dropped", Self.jsonNumber(Double(snapshot.counts.seriesDropped))))
            }
            for counter in snapshot.counters {
                fields.append(Self.jsonField(snapshot.string(counter.key), Self.jsonNumber(counter.value)))
            }
        case "timers":
            for timer in snapshot.timers {
                let values = snapshot.timerSamples[timer.samples].map(Self.jsonNumber).joined(separator: ",")
                fields.append(Self.jsonField(snapshot.string(timer.key), "[" + values + "]"))
            }
        case "gauges":
            for gauge in snapshot.gauges {
                fields.append(Self.jsonField(snapshot.string(gauge.key), Self.jsonNumber(gauge.value)))
            }
            if let lag = self.flushState.timestampLag {
                fields.append(Self.jsonField(self.configuration.prefixStats + ".timestamp_lag", Self.jsonNumber(lag)))
            }
        default:
            for set in snapshot.sets {
                let members = snapshot.setMembers[set.members].map { Self.jsonString(snapshot.string($0)) }
                fields.append(Self.jsonField(snapshot.string(set.key), "[" + members.joined(separator: ",") + "]"))
            }
        }
        return "{" + fields.joined(separator: ",") + "}"
    }

    func delete(_ kind: MetricKind, _ names: [String]) -> String {
        var text = ""
        for name in names {
            var deleted: [String] = []
            if kind == .counter {
                // statsd's own counters are reset, never removed (DEVIATIONS #12).
                for key in FlushService.internalCounterNames(prefix: self.configuration.prefixStats)
                where key == name || (name.hasSuffix(".*") && key.hasPrefix(String(name.dropLast()))) {
                    deleted.append(key)
                }
                if !deleted.isEmpty { self.aggregator.resetInternalCounters() }
            }
            deleted += self.aggregator.delete(kind: kind, matching: name)
            if deleted.isEmpty {
                text += "metric \(name) not found\n"
            }
            for key in deleted { text += "deleted: \(key)\n" }
        }
        return text + "END\n\n"
    }

    static func jsonField(_ key: String, _ value: String) -> String { jsonString(key) + ":" + value }

    static func jsonNumber(_ value: Double) -> String { value.isFinite ? JSNumber.string(value) : "null" }

    static func jsonString(_ text: String) -> String { JSONText.quoted(text) }
}

extension String {
    /// JavaScript's `trim()`.
    func trimmingJSWhitespace() -> String {
        var utf8 = Array(self.utf8)
        return utf8.withUnsafeMutableBytes { bytes in
            let raw = UnsafeRawBufferPointer(bytes)
            return String(decoding: raw[JSWhitespace.trim(raw)], as: UTF8.self)
        }
    }
}
