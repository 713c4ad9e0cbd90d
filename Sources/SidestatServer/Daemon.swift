//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatSupport
import CSidestat
import Logging
import NIOCore
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
    /// The aggregator's shard for what Sidestat makes itself.
    let localShard: Int
    let flushHooks: FlushHooks
    public let http: HTTPEndpoint?
    /// A backend's own port for its pages (`prometheus.port`), when `httpPort` is set too.
    public let pagePort: HTTPEndpoint?
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
        // The last shard takes what Sidestat makes itself (process metrics, l2met log lines).
        let localShard = udpCount + (hasStream ? 1 : 0)
        let aggregator = Aggregator(
            shardCount: localShard + 1, sanitizeKeys: configuration.keyNameSanitize,
            deleteGauges: configuration.deleteGauges, gaugesMaxTTL: configuration.gaugesMaxTTL,
            keyFlush: configuration.keyFlush != nil, seriesBudget: configuration.seriesBudget)
        // Every TCP connection of every listener, so that the one idle the longest makes room at a bound.
        let registry = ConnectionRegistry()
        let policy = HTTPEndpoint.Policy(
            allowedHosts: configuration.httpAllowedHosts, requestTimeout: .seconds(Int64(configuration.httpRequestTimeout)))
        // The HTTP port, bound before the backends are made so that they name its real port (`httpPort: 0`): it is
        // `httpPort`, else the one a backend serves its pages on (`prometheus.port`). With both set, the pages are
        // served on the backend's port too, where the file says.
        let router = PageRouter()
        let pageSection = configuration.upstreams.lazy.compactMap { $0 as? any BackendSection }
            .first { $0.pageListener != nil }
        func bindHTTP(_ address: String, _ port: Int, name: String) async throws -> HTTPEndpoint {
            try await HTTPEndpoint.bind(host: address, port: port, name: name, policy: policy, registry: registry, logger: logger) {
                uri in router.route(String(uri.prefix { $0 != "?" }), state: state)
            }
        }
        var http: HTTPEndpoint? = nil
        var pagePort: (address: String, endpoint: HTTPEndpoint)? = nil
        if let port = configuration.httpPort {
            http = try await bindHTTP(configuration.httpAddress, port, name: "the HTTP port")
            state.addBoundAddress("http=\(configuration.httpAddress):\(http!.port)")
            if let section = pageSection, section.pageListenerIsExplicit, let listener = section.pageListener,
                listener.port != port || listener.address != configuration.httpAddress
            {
                let endpoint = try await bindHTTP(listener.address, listener.port, name: "the \(type(of: section).name) port")
                pagePort = (listener.address, endpoint)
                state.addBoundAddress("\(type(of: section).name)=\(listener.address):\(endpoint.port)")
            }
        } else if let listener = pageSection?.pageListener {
            http = try await bindHTTP(listener.address, listener.port, name: "the \(type(of: pageSection!).name) port")
            state.addBoundAddress("http=\(listener.address):\(http!.port)")
        }
        let pageEndpoint: String? = {
            if let (address, endpoint) = pagePort { return "http://\(Self.host(address)):\(endpoint.port)" }
            guard let http else { return nil }
            return "http://\(Self.host(configuration.httpPort != nil ? configuration.httpAddress : pageSection!.pageListener!.address)):\(http.port)"
        }()
        let context = BackendContext(
            configuration: configuration, output: output, startupTime: Double(state.startupTime),
            httpEndpoint: pageEndpoint, logger: logger)
        let backends = configuration.upstreams.map { upstream -> any MetricsBackend in
            guard let section = upstream as? any BackendSection else {
                preconditionFailure("\(type(of: upstream).name) has settings but no backend: conform it to BackendSection")
            }
            return section.makeBackend(context)
        }
        router.set(backends)
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
                            idleTimeout: configuration.tcpIdleTimeout, registry: registry, logger: logger)
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
            idleTimeout: configuration.managementIdleTimeout, registry: registry, logger: logger)
        state.addBoundAddress("mgmt=\(configuration.managementAddress):\(management.port)")
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
                    host: settings.address, port: settings.port, name: "the dashboard's port", policy: policy,
                    registry: registry, logger: logger
                ) { uri in DashboardRoutes.route(uri, store: store, backends: backends, internalPrefix: internalPrefix) }
                flushBackends.append(DashboardBackend(store: store))
                state.addBoundAddress("dashboard=\(settings.address):\(dashboard!.port)")
            } catch let error as ListenError where settings.isImplicit {
                logger.warning("No dashboard: \(error)")
            }
        }
        let flushHooks = FlushHooks()
        let flushService = FlushService(
            aggregator: aggregator, backends: flushBackends, configuration: configuration, state: state,
            flushState: flushState, hooks: flushHooks, logger: logger)
        let keyFlushService = configuration.keyFlush.map {
            KeyFlushService(configuration: $0, aggregator: aggregator, output: output, logger: logger)
        }
        if let title = configuration.title { title.withCString { sidestat_set_process_name($0) } }
        return Daemon(
            configuration: configuration, state: state, aggregator: aggregator, udpListeners: udpListeners,
            streamListeners: streamListeners, management: management, backends: backends,
            flushService: flushService, keyFlushService: keyFlushService, http: http, pagePort: pagePort?.endpoint,
            dashboard: dashboard, localShard: localShard, flushHooks: flushHooks, logger: logger)
    }

    /// Aggregates statsd lines Sidestat makes itself (process metrics, l2met): not counted as received packets.
    /// Returns how many lines were bad.
    @discardableResult
    public func ingestLocal(_ lines: String) -> Int {
        guard !lines.isEmpty else { return 0 }
        var lines = lines
        let bad = lines.withUTF8 { bytes in
            self.aggregator.shards[self.localShard].ingestUncounted(
                UnsafeRawBufferPointer(bytes), sequence: self.aggregator.nextSequence())
        }
        return bad
    }

    /// Counts lines Sidestat read and could not use (a malformed l2met token) in `bad_lines_seen`.
    public func countBadLines(_ count: Int) {
        self.aggregator.countBadLines(count, shard: self.localShard)
    }

    /// Runs `hook` at each flush tick, just before the interval is taken: what it ingests is in that flush.
    public func beforeEachFlush(_ hook: @escaping @Sendable () -> Void) {
        self.flushHooks.add(hook)
    }

    /// An address as a URL's host (`[::1]`).
    static func host(_ address: String) -> String { address.contains(":") ? "[\(address)]" : address }

    /// `/healthz`: alive (and `health up` on the management port). `/readyz`: listeners bound, and every backend's
    /// last flush delivered or held whole for retry. Any other path: the page a backend serves there, if any.
    static func route(
        _ path: String, state: DaemonState, backends: [any MetricsBackend]
    ) -> HTTPEndpoint.Response {
        PageRouter.route(path, state: state, backends: backends)
    }

    private init(
        configuration: DaemonConfiguration, state: DaemonState, aggregator: Aggregator, udpListeners: [UDPListener],
        streamListeners: [StreamListener], management: ManagementServer, backends: [any MetricsBackend],
        flushService: FlushService, keyFlushService: KeyFlushService?, http: HTTPEndpoint?, pagePort: HTTPEndpoint?,
        dashboard: HTTPEndpoint?, localShard: Int, flushHooks: FlushHooks, logger: Logger
    ) {
        self.localShard = localShard
        self.flushHooks = flushHooks
        self.http = http
        self.pagePort = pagePort
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
        if let pages = self.pagePort { services.append(.init(service: pages, serviceName: "pages")) }
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
            // `name=where`; `where` may be empty, never the name.
            let parts = address.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            metadata[String(parts[0]), default: ""] = .string(parts.count > 1 ? String(parts[1]) : "")
        }
        return metadata
    }
}
