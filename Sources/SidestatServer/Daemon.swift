//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import CSidestat
import Logging
import ServiceLifecycle
import SidestatAggregation
import SidestatBackends
import SidestatConfiguration
import UnixSignals

/// The composition root: turns a configuration into bound listeners, backends and the flusher, and runs them as
/// one service group in dependency order (listeners stop first, the final flush runs last).
public final class Daemon: Sendable {
    public let configuration: DaemonConfiguration
    public let state: DaemonState
    public let aggregator: Aggregator
    public let udpListeners: [UDPListener]
    public let streamListeners: [StreamListener]
    public let management: ManagementServer
    public let backends: [any MetricsBackend]
    let flushService: FlushService
    let keyFlushService: KeyFlushService?
    let logger: Logger

    /// Binds every socket. Throws (and binds nothing further) when an address is unusable.
    public static func start(
        configuration: DaemonConfiguration, output: any TextOutput = StandardOutput.shared, logger: Logger
    ) async throws -> Daemon {
        let state = DaemonState(healthUp: configuration.healthStatusUp)
        let udpCount = configuration.listeners.filter { $0.transport == .udp }.count * configuration.udpReaders
        let hasStream = configuration.listeners.contains { $0.transport == .tcp }
        let aggregator = Aggregator(
            shardCount: udpCount + (hasStream ? 1 : 0), sanitizeKeys: configuration.keyNameSanitize,
            deleteGauges: configuration.deleteGauges, gaugesMaxTTL: configuration.gaugesMaxTTL,
            keyFlush: configuration.keyFlush != nil)
        var udpListeners: [UDPListener] = []
        var streamListeners: [StreamListener] = []
        var nextShard = 0
        for listener in configuration.listeners {
            switch listener.transport {
            case .udp:
                let udp = try UDPListener(
                    configuration: listener, receiveBufferBytes: configuration.udpReceiveBufferBytes,
                    readers: configuration.udpReaders, firstShard: nextShard, aggregator: aggregator, state: state,
                    dumpMessages: configuration.dumpMessages, logger: logger)
                nextShard += configuration.udpReaders
                udpListeners.append(udp)
                state.addBoundAddress("udp=\(udp.localAddress):\(udp.port)")
            case .tcp:
                let stream = try await StreamListener.bind(
                    configuration: listener, shard: udpCount, aggregator: aggregator, state: state,
                    dumpMessages: configuration.dumpMessages, logger: logger)
                streamListeners.append(stream)
                state.addBoundAddress(stream.unixSocket.map { "unix=\($0)" } ?? "tcp=\(listener.address):\(stream.port)")
            }
        }
        let startupTime = Double(state.startupTime)
        let backends: [any MetricsBackend] = configuration.backends.map { kind in
            switch kind {
            case .graphite:
                return GraphiteBackend(
                    configuration: configuration.graphite, sanitizeNames: !configuration.keyNameSanitize,
                    retryBufferBytes: configuration.retryBufferBytes, startupTime: startupTime)
            case .console:
                return ConsoleBackend(
                    output: output, prettyPrint: configuration.consolePrettyPrint, startupTime: startupTime)
            }
        }
        let flushState = FlushState()
        let commands = ManagementCommands(
            aggregator: aggregator, state: state, backends: backends, configuration: configuration,
            flushState: flushState)
        let management = try await ManagementServer.bind(
            host: configuration.managementAddress, port: configuration.managementPort, commands: commands,
            logger: logger)
        state.addBoundAddress("mgmt=\(configuration.managementAddress):\(management.port)")
        let flushService = FlushService(
            aggregator: aggregator, backends: backends, configuration: configuration, state: state,
            flushState: flushState, logger: logger)
        let keyFlushService = configuration.keyFlush.map {
            KeyFlushService(configuration: $0, aggregator: aggregator, output: output, logger: logger)
        }
        if let title = configuration.title { title.withCString { sidestat_set_process_name($0) } }
        return Daemon(
            configuration: configuration, state: state, aggregator: aggregator, udpListeners: udpListeners,
            streamListeners: streamListeners, management: management, backends: backends,
            flushService: flushService, keyFlushService: keyFlushService, logger: logger)
    }

    private init(
        configuration: DaemonConfiguration, state: DaemonState, aggregator: Aggregator, udpListeners: [UDPListener],
        streamListeners: [StreamListener], management: ManagementServer, backends: [any MetricsBackend],
        flushService: FlushService, keyFlushService: KeyFlushService?, logger: Logger
    ) {
        self.configuration = configuration
        self.state = state
        self.aggregator = aggregator
        self.udpListeners = udpListeners
        self.streamListeners = streamListeners
        self.management = management
        self.backends = backends
        self.flushService = flushService
        self.keyFlushService = keyFlushService
        self.logger = logger
    }

    /// The services in start order; shutdown runs in reverse, so listeners stop before the final flush.
    public var services: [ServiceGroupConfiguration.ServiceConfiguration] {
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: self.flushService, serviceName: "flush")
        ]
        if let keyFlush = self.keyFlushService { services.append(.init(service: keyFlush, serviceName: "keyFlush")) }
        services.append(.init(service: self.management, serviceName: "management"))
        for (index, listener) in self.streamListeners.enumerated() {
            services.append(.init(service: listener, serviceName: "tcp\(index)"))
        }
        for (index, listener) in self.udpListeners.enumerated() {
            services.append(.init(service: listener, serviceName: "udp\(index)"))
        }
        return services
    }

    /// Runs until SIGTERM or SIGINT, then stops listening, flushes once more and returns.
    public func run() async throws {
        var configuration = ServiceGroupConfiguration(
            services: self.services, gracefulShutdownSignals: [.sigterm, .sigint],
            logger: Logger(label: "sidestat.lifecycle", factory: { _ in SwiftLogNoOpLogHandler() }))
        configuration.maximumGracefulShutdownDuration = .milliseconds(
            self.configuration.shutdownTimeoutMilliseconds + 2000)
        self.logUp()
        try await ServiceGroup(configuration: configuration).run()
    }

    /// Logs "server is up" with the bound addresses (tests and scripts read the ports from it).
    public func logUp() {
        self.logger.info("server is up", metadata: self.upMetadata)
        // Start-up code (configuration, binding) is cold from here on: let the kernel take its pages back.
        _ = sidestat_page_out_executable()
    }

    var upMetadata: Logger.Metadata {
        var metadata: Logger.Metadata = [:]
        for address in self.state.addresses {
            let parts = address.split(separator: "=", maxSplits: 1)
            metadata[String(parts[0]), default: ""] = .string(String(parts[1]))
        }
        return metadata
    }
}
