//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import SidestatConfiguration
import SidestatSupport

/// An upstream's configuration section that also makes its backend.
public protocol BackendSection: UpstreamSection {
    /// The backend these settings describe.
    func makeBackend(_ context: BackendContext) -> any MetricsBackend

    /// The address and port of the HTTP port this backend needs when `httpPort` is unset (the page it serves), or nil.
    var pageListener: (address: String, port: Int)? { get }

    /// Whether the file set that port itself: then the pages are served there even when `httpPort` is set too.
    var pageListenerIsExplicit: Bool { get }
}

extension BackendSection {
    public var pageListener: (address: String, port: Int)? { nil }
    public var pageListenerIsExplicit: Bool { false }
}

/// What a backend may take from the daemon when it is made.
public struct BackendContext: Sendable {
    /// The core settings (`instance`, `keyNameSanitize`, `retryBufferBytes`, `seriesBudget`, `shutdownTimeout`...).
    public var configuration: DaemonConfiguration
    /// Where the console writes.
    public var output: any TextOutput
    /// Unix seconds at start-up; statsd reports it as the first `last_flush` and `last_exception`.
    public var startupTime: Double
    /// `http://ADDRESS:PORT` of the HTTP port when it is open.
    public var httpEndpoint: String?
    public var logger: Logger

    public init(
        configuration: DaemonConfiguration, output: any TextOutput, startupTime: Double, httpEndpoint: String?,
        logger: Logger
    ) {
        self.configuration = configuration
        self.output = output
        self.startupTime = startupTime
        self.httpEndpoint = httpEndpoint
        self.logger = logger
    }
}

/// Every upstream `backends` may name. Adding one is a folder and a line here (docs/adding-a-backend.md).
public enum BackendRegistry {
    /// The first is the default when a file sets no `backends`, as Graphite is statsd's.
    public static let sections: [any BackendSection.Type] = [
        GraphiteConfiguration.self,
        ConsoleConfiguration.self,
        HostedGraphiteConfiguration.self,
        LibratoConfiguration.self,
        InfluxDBConfiguration.self,
        PrometheusConfiguration.self,
        OTLPConfiguration.self,
        RemoteWriteConfiguration.self,
        RepeaterConfiguration.self,
    ]

    /// Reads a configuration file with `sections`.
    public static func load(
        path: String, environment: [String: String], sections: [any BackendSection.Type] = Self.sections
    ) throws -> (configuration: DaemonConfiguration, warnings: [String]) {
        try DaemonConfiguration.load(path: path, environment: environment, upstreams: sections.map { $0 })
    }

    /// The configuration without a file: the console, so that a first run shows what it receives, plus every
    /// upstream the environment asks for (`HOSTEDGRAPHITE_APIKEY`, `LIBRATO_USER` and `LIBRATO_TOKEN`).
    public static func embeddedDefault(
        environment: [String: String], sections: [any BackendSection.Type] = Self.sections
    ) -> (configuration: DaemonConfiguration, warnings: [String]) {
        DaemonConfiguration.embeddedDefault(environment: environment) { context, reader in
            [ConsoleConfiguration()] + sections.compactMap { $0.init(environment: context, reader: &reader) }
        }
    }
}
