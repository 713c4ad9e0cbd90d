//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One listener: statsd's `server` module with its own address and port (an entry of `servers`).
public struct ListenerConfiguration: Sendable, Hashable {
    public enum Transport: String, Sendable, Hashable {
        case udp
        case tcp
    }

    public var transport: Transport = .udp
    /// Loopback unless the configuration says otherwise (DEVIATIONS #18).
    public var address = "127.0.0.1"
    public var port = 8125
    /// statsd's `address_ipv6`: a UDP6 socket (default address `::1`).
    public var ipv6 = false
    /// statsd's `socket`: a TCP listener on this Unix domain socket path instead of a port.
    public var unixSocket: String? = nil
    /// statsd's `socket_mod`: the permission bits set on the socket file.
    public var unixSocketMode: Int? = nil

    public init() {}
}

/// The Graphite backend's settings (statsd's `graphite*` keys and the `graphite` object).
public struct GraphiteConfiguration: Sendable, Hashable {
    public enum WireProtocol: String, Sendable, Hashable {
        case text
        case pickle
    }

    /// Nil: compute everything and send nothing, as statsd does.
    public var host: String? = nil
    public var port = 2003
    public var picklePort = 2004
    public var wireProtocol: WireProtocol = .text
    public var legacyNamespace = true
    public var globalPrefix = "stats"
    public var prefixCounter = "counters"
    public var prefixTimer = "timers"
    public var prefixGauge = "gauges"
    public var prefixSet = "sets"
    /// Nil when unset; `""` still adds a trailing `.`, as in statsd.
    public var globalSuffix: String? = nil
    /// statsd's `flush_counts`.
    public var flushCounts = true

    public init() {}
}

/// statsd's `keyFlush`: a periodic report of the busiest keys.
public struct KeyFlushConfiguration: Sendable, Hashable {
    public var intervalMilliseconds: Int
    public var percent: Double = 100
    public var logPath: String? = nil
}

/// A histogram rule: timers whose key contains `metric` get these bins.
public struct HistogramRule: Sendable, Hashable {
    public var metric: String
    /// Exclusive upper limits; nil is `inf`. `text` is how the bin was written, for its name.
    public var bins: [Bin]

    public struct Bin: Sendable, Hashable {
        public var limit: Double?
        public var text: String
    }
}

/// The daemon's whole configuration, with statsd's defaults.
public struct DaemonConfiguration: Sendable {
    public enum BackendKind: String, Sendable, Hashable, CaseIterable {
        case graphite
        case console
        case hostedgraphite
        case librato
        case influxdb
        case prometheus
        case otlp
        case repeater
    }

    /// Where the instance name goes in Graphite names.
    public enum GraphiteInstance: String, Sendable, Hashable {
        /// statsd's layout, unchanged (one statsd per key space).
        case none
        /// A path segment before the key: `stats_counts.web_1.hits`; `sumSeries(stats_counts.*.hits)` adds them up.
        case path
        /// A Graphite tag: `stats_counts.hits;instance=web.1`.
        case tag
    }

    public enum LogBackend: String, Sendable, Hashable {
        case stdout
        case syslog
    }

    /// The object the file evaluated to (statsd's `config`), for the management `config` command.
    public var source = JSObject()
    /// Where it was read from; nil for the embedded default.
    public var path: String? = nil

    public var listeners: [ListenerConfiguration] = [ListenerConfiguration()]
    public var managementAddress = "127.0.0.1"
    public var managementPort = 8126
    public var backends: [BackendKind] = [.graphite]
    /// The names as written in `backends`, for status output.
    public var backendNames: [String] = ["graphite"]
    public var flushIntervalMilliseconds = 10_000
    public var percentThreshold: [Double] = [90]
    public var histogram: [HistogramRule] = []
    public var calculatedTimerMetrics: [String] = []
    public var deleteIdleStats = false
    public var deleteCounters = false
    public var deleteTimers = false
    public var deleteSets = false
    public var deleteGauges = false
    public var gaugesMaxTTL = 1
    public var prefixStats = "statsd"
    public var keyNameSanitize = true
    public var dumpMessages = false
    public var keyFlush: KeyFlushConfiguration? = nil
    public var debug = false
    /// statsd's `title`: nil leaves the process name alone.
    public var title: String? = "sidestat"
    public var healthStatusUp = true
    public var logBackend: LogBackend = .stdout
    public var logApplication = "statsd"
    public var graphite = GraphiteConfiguration()
    public var consolePrettyPrint = false

    // Sidestat's own settings.

    /// This daemon's name among several (`instance`, default `$DYNO`, else the host name), so that N dynos never
    /// overwrite each other's series.
    public var instance = ""
    public var graphiteInstance: GraphiteInstance = .none
    public var hostedGraphite: HostedGraphiteConfiguration? = nil
    public var librato: LibratoConfiguration? = nil
    public var influxdb: InfluxDBConfiguration? = nil
    public var prometheus = PrometheusConfiguration()
    public var otlp: OTLPConfiguration? = nil
    /// statsd's `repeater`: raw lines forwarded to other statsd servers.
    public var repeater: [RepeaterTarget] = []
    public var repeaterTCP = false
    /// The small HTTP port for /healthz and /readyz (and /metrics with the Prometheus backend); nil for none.
    public var httpPort: Int? = nil
    public var httpAddress = "127.0.0.1"

    /// How long a shutdown may take to deliver the final flush.
    public var shutdownTimeoutMilliseconds = 10_000
    /// The UDP socket's receive buffer (SO_RCVBUF), in bytes.
    public var udpReceiveBufferBytes = 8 * 1024 * 1024
    /// UDP reader threads per listener (more than one uses SO_REUSEPORT).
    public var udpReaders = 1
    /// Each backend's buffer for flushes that could not be delivered, in bytes.
    public var retryBufferBytes = 16 * 1024 * 1024
    /// Live keys per type (counters, timers, gauges, sets) each ingest shard keeps; past it new keys are refused and
    /// counted in `statsd.series_dropped`.
    public var seriesBudget = 100_000
    /// A statsd TCP connection that sends nothing for this many seconds is closed (0: never).
    public var tcpIdleTimeout = 3600

    public init() {}

    /// The configuration Sidestat runs with no file: statsd's defaults with the console backend, so that a
    /// first run shows what it receives.
    public static var embeddedDefault: DaemonConfiguration { Self.embeddedDefault(environment: [:]) }

    /// The embedded default, plus the upstreams the platform's variables describe: Hosted Graphite from
    /// `HOSTEDGRAPHITE_APIKEY`, Librato from `LIBRATO_USER` and `LIBRATO_TOKEN` (and `LIBRATO_SOURCE`).
    public static func embeddedDefault(environment: [String: String]) -> DaemonConfiguration {
        var configuration = DaemonConfiguration()
        configuration.backends = [.console]
        configuration.backendNames = ["./backends/console"]
        configuration.instance = Self.defaultInstance(environment: environment)
        if let key = environment["HOSTEDGRAPHITE_APIKEY"], !key.isEmpty {
            configuration.hostedGraphite = HostedGraphiteConfiguration(apiKey: key)
            configuration.backends.append(.hostedgraphite)
            configuration.backendNames.append("hostedgraphite")
        }
        if let user = environment["LIBRATO_USER"], let token = environment["LIBRATO_TOKEN"], !user.isEmpty, !token.isEmpty {
            configuration.librato = LibratoConfiguration(
                user: user, token: token, source: environment["LIBRATO_SOURCE"] ?? configuration.instance)
            configuration.backends.append(.librato)
            configuration.backendNames.append("librato")
        }
        configuration.source = JSObject([
            ("port", .number(8125)), ("address", .string("127.0.0.1")), ("mgmt_port", .number(8126)),
            ("mgmt_address", .string("127.0.0.1")), ("flushInterval", .number(10_000)),
            ("backends", .array([.string("./backends/console")])),
        ])
        return configuration
    }

    /// With `$DYNO` set and Graphite names that carry no instance (statsd's names, the default): a warning that
    /// several dynos would overwrite each other's series, and what fixes it.
    public func instanceWarning(environment: [String: String]) -> String? {
        let sendsToGraphite = (self.backends.contains(.graphite) && self.graphite.host != nil)
            || self.backends.contains(.hostedgraphite)
        guard let dyno = environment["DYNO"], sendsToGraphite, self.graphiteInstance == .none else { return nil }
        return "DYNO is set (\(dyno)) but Graphite names carry no instance, as statsd's do: several dynos would "
            + "overwrite each other's series. Set graphite: {instance: \"path\"} (or \"tag\") to keep them apart"
    }

    /// `$DYNO`, else the host name.
    public static func defaultInstance(environment: [String: String]) -> String {
        if let dyno = environment["DYNO"], !dyno.isEmpty { return dyno }
        var name = [CChar](repeating: 0, count: 256)
        guard gethostname(&name, name.count) == 0 else { return "localhost" }
        return String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public var retention: RetentionSettings {
        RetentionSettings(
            deleteCounters: self.deleteCounters, deleteTimers: self.deleteTimers, deleteSets: self.deleteSets,
            deleteGauges: self.deleteGauges, gaugesMaxTTL: self.gaugesMaxTTL)
    }
}

/// Hosted Graphite: carbon plaintext with the API key as the first path segment.
public struct HostedGraphiteConfiguration: Sendable, Hashable {
    public var apiKey: String
    public var host = "carbon.hostedgraphite.com"
    public var port = 2003

    public init(apiKey: String) { self.apiKey = apiKey }
}

/// Librato's v1 metrics API.
public struct LibratoConfiguration: Sendable, Hashable {
    public var user: String
    public var token: String
    public var source: String
    public var api = "https://metrics-api.librato.com"

    public init(user: String, token: String, source: String) {
        self.user = user
        self.token = token
        self.source = source
    }
}

/// InfluxDB's line protocol over HTTP: `/write` (1.x) or `/api/v2/write` (2.x, when `token` or `org` is set).
public struct InfluxDBConfiguration: Sendable, Hashable {
    public var url = "http://127.0.0.1:8086"
    public var database = "statsd"
    public var username: String? = nil
    public var password: String? = nil
    public var token: String? = nil
    public var org: String? = nil
    public var bucket: String? = nil
    public var isVersion2: Bool { self.token != nil || self.org != nil }

    public init() {}
}

/// The Prometheus backend: an HTTP `/metrics` endpoint.
public struct PrometheusConfiguration: Sendable, Hashable {
    public var port = 9102
    public var address = "127.0.0.1"
    /// Histogram bucket bounds for timers, in seconds (timers are received in milliseconds).
    public var buckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
}

/// OpenTelemetry: OTLP over HTTP (protobuf) to `endpoint` + `/v1/metrics`.
public struct OTLPConfiguration: Sendable, Hashable {
    public var endpoint = "http://127.0.0.1:4318"
    public var headers: [String] = []
    public var serviceName = "sidestat"

    public init() {}
}

public struct RepeaterTarget: Sendable, Hashable {
    public var host: String
    public var port: Int
}

/// The `delete*` settings, as the aggregator needs them.
public struct RetentionSettings: Sendable, Hashable {
    public var deleteCounters: Bool
    public var deleteTimers: Bool
    public var deleteSets: Bool
    public var deleteGauges: Bool
    public var gaugesMaxTTL: Int
}

/// Everything wrong with a configuration, each problem naming its key and what is allowed.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
    public struct Problem: Sendable, Hashable {
        public var key: String
        public var message: String
        /// Where in the file, for a syntax error.
        public var line: Int? = nil
        public var column: Int? = nil
    }

    public var file: String?
    public var problems: [Problem]

    /// One line per problem: `FILE:LINE:COLUMN: message` for a syntax error, `FILE: key: message` for a value.
    public var description: String {
        self.problems.map { problem in
            if let line = problem.line, let column = problem.column {
                return "\(self.file ?? "(config)"):\(line):\(column): \(problem.message)"
            }
            return (self.file.map { "\($0): " } ?? "") + "\(problem.key): \(problem.message)"
        }.joined(separator: "\n")
    }
}
