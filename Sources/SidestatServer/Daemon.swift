//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatSupport
import CSidestat
import Logging
import NIOHTTP1
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
    public let http: HTTPEndpoint?
    /// The live dashboard's port, when it is on.
    public let dashboard: HTTPEndpoint?
    let logger: Logger

    /// Binds every socket. Throws (and binds nothing further) when an address is unusable.
    public static func start(
        configuration: DaemonConfiguration, output: any TextOutput = StandardOutput.shared, logger: Logger
    ) async throws -> Daemon {
        let state = DaemonState(healthUp: configuration.healthStatusUp)
        // One shard per UDP reader (a listener on both loopbacks has twice as many), one per Unix datagram socket.
        let udpCount = configuration.listeners.reduce(0) { count, listener in
            switch listener.transport {
            case .udp: count + (listener.alsoOnIPv6Loopback ? 2 : 1) * configuration.udpReaders
            case .unixDatagram: count + 1
            case .tcp: count
            }
        }
        let hasStream = configuration.listeners.contains { $0.transport == .tcp }
        let aggregator = Aggregator(
            shardCount: udpCount + (hasStream ? 1 : 0), sanitizeKeys: configuration.keyNameSanitize,
            deleteGauges: configuration.deleteGauges, gaugesMaxTTL: configuration.gaugesMaxTTL,
            keyFlush: configuration.keyFlush != nil, seriesBudget: configuration.seriesBudget)
        // The HTTP port: `httpPort`, else the one a backend serves its pages on.
        let httpListener = configuration.httpPort.map { (address: configuration.httpAddress, port: $0) }
            ?? configuration.upstreams.lazy.compactMap { ($0 as? any BackendSection)?.pageListener }.first
        let context = BackendContext(
            configuration: configuration, output: output, startupTime: Double(state.startupTime),
            httpEndpoint: httpListener.map { "http://\($0.address):\($0.port)" }, logger: logger)
        let backends = configuration.upstreams.map { upstream -> any MetricsBackend in
            guard let section = upstream as? any BackendSection else {
                preconditionFailure("\(type(of: upstream).name) has settings but no backend: conform it to BackendSection")
            }
            return section.makeBackend(context)
        }
        let forwarders = backends.compactMap(\.packetForwarder)
        var udpListeners: [UDPListener] = []
        var streamListeners: [StreamListener] = []
        var nextShard = 0
        for configured in configuration.listeners {
            // The listener as configured, then (on the default address) its twin on ::1 at the port it got.
            var listener = configured
            var twin = false
            while true {
                do {
                    switch listener.transport {
                    case .udp, .unixDatagram:
                        let readers = listener.transport == .udp ? configuration.udpReaders : 1
                        let udp = try UDPListener(
                            configuration: listener, receiveBufferBytes: configuration.udpReceiveBufferBytes,
                            readers: readers, firstShard: nextShard, aggregator: aggregator,
                            state: state, dumpMessages: configuration.dumpMessages, forwarders: forwarders,
                            logger: logger)
                        nextShard += readers
                        udpListeners.append(udp)
                        listener.port = udp.port
                        state.addBoundAddress(
                            udp.unixSocket.map { "unixgram=\($0)" }
                                ?? "\(twin ? "udp6" : "udp")=\(udp.localAddress):\(udp.port)")
                    case .tcp:
                        let stream = try await StreamListener.bind(
                            configuration: listener, shard: udpCount, aggregator: aggregator, state: state,
                            dumpMessages: configuration.dumpMessages, forwarders: forwarders,
                            idleTimeout: configuration.tcpIdleTimeout, logger: logger)
                        streamListeners.append(stream)
                        listener.port = stream.port
                        let address = twin ? "tcp6=[::1]" : "tcp=\(listener.address)"
                        state.addBoundAddress(stream.unixSocket.map { "unix=\($0)" } ?? "\(address):\(stream.port)")
                    }
                } catch let error as ListenError where twin {
                    logger.warning("Not listening on the IPv6 loopback; 127.0.0.1 only", metadata: ["error": "\(error)"])
                }
                guard configured.alsoOnIPv6Loopback, !twin else { break }
                twin = true
                listener.address = "::1"
                listener.ipv6 = true
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
        var http: HTTPEndpoint? = nil
        let pages = backends.filter(\.servesPages)
        if let (address, port) = httpListener, configuration.httpPort != nil || !pages.isEmpty {
            http = try await HTTPEndpoint.bind(host: address, port: port, logger: logger) { uri in
                Self.route(String(uri.prefix { $0 != "?" }), state: state, backends: backends)
            }
            state.addBoundAddress("http=\(address):\(http!.port)")
        }
        // The dashboard watches the flushes (after the backends) and answers on its own port.
        var flushBackends = backends
        var dashboard: HTTPEndpoint? = nil
        if let settings = configuration.dashboard {
            let interval = max(configuration.flushInterval.inSeconds, 0.001)
            let store = DashboardStore(
                slots: settings.flushes ?? min(3600, max(60, Int((3600 / interval).rounded()))),
                budgetBytes: settings.budgetMiB << 20)
            let internalPrefix = configuration.prefixStats + "."
            do {
                dashboard = try await HTTPEndpoint.bind(
                    host: settings.address, port: settings.port, name: "the dashboard's port", logger: logger
                ) { uri in DashboardRoutes.route(uri, store: store, backends: backends, internalPrefix: internalPrefix) }
                flushBackends.append(DashboardBackend(store: store))
                state.addBoundAddress("dashboard=\(settings.address):\(dashboard!.port)")
            } catch let error as ListenError where settings.isImplicit {
                logger.warning("No dashboard: \(error)")
            }
        }
        let flushService = FlushService(
            aggregator: aggregator, backends: flushBackends, configuration: configuration, state: state,
            flushState: flushState, logger: logger)
        let keyFlushService = configuration.keyFlush.map {
            KeyFlushService(configuration: $0, aggregator: aggregator, output: output, logger: logger)
        }
        if let title = configuration.title { title.withCString { sidestat_set_process_name($0) } }
        return Daemon(
            configuration: configuration, state: state, aggregator: aggregator, udpListeners: udpListeners,
            streamListeners: streamListeners, management: management, backends: backends,
            flushService: flushService, keyFlushService: keyFlushService, http: http, dashboard: dashboard,
            logger: logger)
    }

    /// `/healthz`: alive (and `health up` on the management port). `/readyz`: listeners bound, and every backend's
    /// last flush delivered or held whole for retry. Any other path: the page a backend serves there, if any.
    static func route(
        _ path: String, state: DaemonState, backends: [any MetricsBackend]
    ) -> HTTPEndpoint.Response {
        switch path {
        case "/healthz":
            return state.isHealthy
                ? .init(status: .ok, contentType: "text/plain", body: "ok\n")
                : .init(status: .serviceUnavailable, contentType: "text/plain", body: "health: down\n")
        case "/readyz":
            let failing = backends.filter { !$0.isHealthy }.map(\.name)
            if failing.isEmpty { return .init(status: .ok, contentType: "text/plain", body: "ready\n") }
            return .init(
                status: .serviceUnavailable, contentType: "text/plain",
                body: "not ready: dropping datapoints for " + failing.joined(separator: ", ") + "\n")
        default:
            for backend in backends {
                if let page = backend.page(path) { return .init(status: .ok, contentType: page.contentType, body: page.body) }
            }
            return .init(status: .notFound, contentType: "text/plain", body: "not found\n")
        }
    }

    private init(
        configuration: DaemonConfiguration, state: DaemonState, aggregator: Aggregator, udpListeners: [UDPListener],
        streamListeners: [StreamListener], management: ManagementServer, backends: [any MetricsBackend],
        flushService: FlushService, keyFlushService: KeyFlushService?, http: HTTPEndpoint?, dashboard: HTTPEndpoint?,
        logger: Logger
    ) {
        self.http = http
        self.dashboard = dashboard
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

        // Backends' own services stop after the listeners (a forwarder sends what they gave it last).
        for backend in self.backends {
            if let service = backend.service { services.append(.init(service: service, serviceName: backend.name)) }
        }
        services.append(.init(service: self.management, serviceName: "management"))
        if let http = self.http { services.append(.init(service: http, serviceName: "http")) }
        if let dashboard = self.dashboard { services.append(.init(service: dashboard, serviceName: "dashboard")) }
        for (index, listener) in self.streamListeners.enumerated() {
            services.append(.init(service: listener, serviceName: "tcp\(index)"))
        }
        for (index, listener) in self.udpListeners.enumerated() {
            services.append(.init(service: listener, serviceName: "udp\(index)"))
        }
        return services
    }

    /// Runs until SIGTERM or SIGINT, then stops listening, flushes once more and returns. SIGHUP reloads the
    /// configuration file (`environment` is what `process.env` reads then).
    public func run(environment: [String: String]) async throws {
        var services = self.services
        if let path = self.configuration.path {
            let reload = ReloadService(
                path: path, environment: environment, running: self.configuration,
                settings: self.flushService.settings, aggregator: self.aggregator, logger: self.logger)
            services.insert(.init(service: reload, serviceName: "reload"), at: 1)
        }
        var configuration = ServiceGroupConfiguration(
            services: services,
            logger: Logger(label: "sidestat.lifecycle", factory: { _ in SwiftLogNoOpLogHandler() }))
        configuration.maximumGracefulShutdownDuration = self.configuration.shutdownTimeout + .seconds(2)
        let group = ServiceGroup(configuration: configuration)
        // SIGTERM and SIGINT are trapped before "server is up": a supervisor that stops Sidestat the moment it is up
        // gets the graceful shutdown (and exit code 0), never the default action's death.
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
        self.logUp()
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            tasks.addTask {
                for await _ in signals { await group.triggerGracefulShutdown() }
            }
            try await tasks.next()  // the group has stopped
            tasks.cancelAll()
        }
    }

    /// Logs "server is up" with the bound addresses (tests and scripts read the ports from it), then a line per
    /// backend saying where its flushes go, and a warning when none leaves the process.
    public func logUp() {
        self.logger.info("server is up", metadata: self.upMetadata)
        for backend in self.backends {
            self.logger.info("backend \(backend.name): \(backend.destination)")
        }
        if let dashboard = self.dashboard, let settings = self.configuration.dashboard {
            let host = settings.address.contains(":") ? "[\(settings.address)]" : settings.address
            self.logger.info("dashboard at http://\(host):\(dashboard.port)/")
        }
        if self.configuration.path != nil, !self.backends.contains(where: \.deliversUpstream) {
            self.logger.warning(
                "No backend sends the metrics anywhere: set graphiteHost (or add an upstream to backends) to deliver them")
        }
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
