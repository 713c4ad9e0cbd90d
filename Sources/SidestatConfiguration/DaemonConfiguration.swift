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
        /// DogStatsD's Unix datagram socket (`server: "./servers/unixgram"` with `socket`).
        case unixDatagram
    }

    public var transport: Transport = .udp
    /// Loopback unless the configuration says otherwise (DEVIATIONS #18).
    public var address = "127.0.0.1"
    public var port = 8125
    /// statsd's `address_ipv6`: a UDP6 socket (default address `::1`).
    public var ipv6 = false
    /// With no address in the file: the same port on `::1` too, so that a client whose `localhost` is `::1` loses
    /// nothing (where the host has no IPv6 loopback, a warning and 127.0.0.1 alone).
    public var alsoOnIPv6Loopback = true
    /// statsd's `socket`: a TCP listener on this Unix domain socket path instead of a port.
    public var unixSocket: String? = nil
    /// statsd's `socket_mod`: the permission bits set on the socket file.
    public var unixSocketMode: Int? = nil
    /// A stream listener's framing (`framing: "length"`): each payload behind its length in 4 bytes, little-endian,
    /// as DogStatsD's stream sockets (and `unixstream://` clients) send it; otherwise newline-delimited lines.
    public var lengthPrefixed = false

    public init() {}
}

/// statsd's `keyFlush`: a periodic report of the busiest keys.
public struct KeyFlushConfiguration: Sendable, Hashable {
    public var interval: Duration
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
    /// The upstreams `backends` lists, in its order, each with its own settings (see `UpstreamSection`).
    public var upstreams: [any UpstreamSection] = []
    /// Every upstream `backends` could have named (the registry the file was read with, to read it again).
    public var registeredUpstreams: [any UpstreamSection.Type] = []
    public var flushInterval: Duration = .seconds(10)
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

    // Sidestat's own settings.

    /// This daemon's name among several (`instance`, default `$DYNO`, else the host name), so that N dynos never
    /// overwrite each other's series.
    public var instance = ""
    /// The small HTTP port for /healthz and /readyz (and the pages backends serve); nil for none.
    public var httpPort: Int? = nil
    public var httpAddress = "127.0.0.1"
    /// The live local dashboard (`dashboard: {port, address, budgetMiB}`); nil when off.
    public var dashboard: DashboardConfiguration? = nil
    /// `dashboard: false` in the file: not even `sidestat start` turns it on.
    public var dashboardDeclined = false

    /// How long a shutdown may take to deliver the final flush.
    public var shutdownTimeout: Duration = .seconds(10)
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
    /// A management connection that sends nothing for this many seconds is closed (0: never).
    public var managementIdleTimeout = 300
    /// An HTTP request (the health port, `/metrics`, the dashboard) must arrive whole within this many seconds of
    /// the connection opening or the last answer; else the connection is closed.
    public var httpRequestTimeout = 10
    /// Under `sidestat start`: each process's and the dyno's memory and CPU, at each flush (`processMetrics`).
    public var processMetrics = true
    /// The dyno's memory quota, in bytes, where the memory cgroup sets none (`processMetrics: {memoryQuota}`).
    public var memoryQuotaBytes: Int? = nil
    /// Under `sidestat start`: the l2met metrics in the processes' log lines (`count#`, `measure#`, ...).
    public var logMetrics = true
    /// Host names (with or without a port) the HTTP ports answer besides loopback ones (`localhost`, `127.x.x.x`,
    /// `[::1]`) and their own bound address: a request for any other `Host` is refused (421), so that a web page
    /// cannot read them through DNS rebinding.
    public var httpAllowedHosts: [String] = []

    public init() {}

    /// The configuration Sidestat runs with no file: statsd's defaults with `upstreams` (the backends' registry
    /// chooses them: the console, so that a first run shows what it receives, plus those the environment asks for).
    /// - Returns: the configuration and the warnings to log.
    public static func embeddedDefault(
        environment: [String: String],
        upstreams: (SectionContext, inout ConfigurationReader) -> [any UpstreamSection]
    ) -> (configuration: DaemonConfiguration, warnings: [String]) {
        var configuration = DaemonConfiguration()
        var reader = ConfigurationReader()
        configuration.instance = Self.defaultInstance(environment: environment)
        configuration.upstreams = upstreams(
            SectionContext(environment: environment, instance: configuration.instance, instanceIsExplicit: false),
            &reader)
        configuration.source = JSObject([
            ("port", .number(8125)), ("address", .string("127.0.0.1")), ("mgmt_port", .number(8126)),
            ("mgmt_address", .string("127.0.0.1")), ("flushInterval", .number(10_000)),
            ("backends", .array(configuration.backends.prefix(1).map { .string("./backends/" + $0) })),
        ])
        return (configuration, reader.warnings)
    }

    /// The names of the upstreams, in order.
    public var backends: [String] { self.upstreams.map { type(of: $0).name } }

    /// The settings of the upstream of this type, if `backends` lists it.
    public func upstream<Section: UpstreamSection>(_ type: Section.Type) -> Section? {
        self.upstreams.lazy.compactMap { $0 as? Section }.first
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

/// Where the dashboard is served, and the memory its history may take.
public struct DashboardConfiguration: Sendable, Hashable {
    public var address = "127.0.0.1"
    public var port = 8127
    /// The history's budget: past it, the keys updated longest ago are evicted (and counted).
    public var budgetMiB = 32
    /// Flushes kept per key; nil for an hour's worth (360 at statsd's 10 s), at most 3600.
    public var flushes: Int? = nil
    /// Turned on by `sidestat start` on a developer's machine rather than by the file: a port already taken is a
    /// warning then, not a reason to stop.
    public var isImplicit = false

    public init(address: String = "127.0.0.1", port: Int = 8127, budgetMiB: Int = 32, isImplicit: Bool = false) {
        self.address = address
        self.port = port
        self.budgetMiB = budgetMiB
        self.isImplicit = isImplicit
    }
}
