//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

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
    public enum BackendKind: String, Sendable, Hashable {
        case graphite
        case console
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
    public var automaticConfigReload = true
    public var graphite = GraphiteConfiguration()
    public var consolePrettyPrint = false

    // Sidestat's own settings.

    /// How long a shutdown may take to deliver the final flush.
    public var shutdownTimeoutMilliseconds = 10_000
    /// The UDP socket's receive buffer (SO_RCVBUF), in bytes.
    public var udpReceiveBufferBytes = 8 * 1024 * 1024
    /// UDP reader threads per listener (more than one uses SO_REUSEPORT).
    public var udpReaders = 1
    /// Each backend's buffer for flushes that could not be delivered, in bytes.
    public var retryBufferBytes = 16 * 1024 * 1024

    public init() {}

    /// The configuration Sidestat runs with no file: statsd's defaults with the console backend, so that a
    /// first run shows what it receives.
    public static var embeddedDefault: DaemonConfiguration {
        var configuration = DaemonConfiguration()
        configuration.backends = [.console]
        configuration.backendNames = ["./backends/console"]
        configuration.source = JSObject([
            ("port", .number(8125)), ("address", .string("127.0.0.1")), ("mgmt_port", .number(8126)),
            ("mgmt_address", .string("127.0.0.1")), ("flushInterval", .number(10_000)),
            ("backends", .array([.string("./backends/console")])),
        ])
        return configuration
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
    }

    public var file: String?
    public var problems: [Problem]

    public var description: String {
        let prefix = self.file.map { "\($0): " } ?? ""
        return self.problems.map { "\(prefix)\($0.key): \($0.message)" }.joined(separator: "\n")
    }
}
