//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatSupport
import SidestatProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension DaemonConfiguration {
    /// The keys statsd's core reads, plus Sidestat's own; with the upstreams' keys, anything else gets a warning.
    static let coreKeys: Set<String> = [
        "port", "address", "address_ipv6", "server", "servers", "socket", "socket_mod", "framing", "mgmt_port",
        "mgmt_address",
        "backends", "flushInterval", "percentThreshold", "histogram", "calculatedTimerMetrics", "deleteIdleStats",
        "deleteCounters", "deleteTimers", "deleteSets", "deleteGauges", "gaugesMaxTTL", "prefixStats",
        "keyNameSanitize", "dumpMessages", "keyFlush", "debug", "debugInterval", "title", "healthStatus", "log",
        "automaticConfigReload",
        // Sidestat
        "shutdownTimeout", "udpReceiveBuffer", "udpReaders", "retryBufferBytes", "instance", "httpPort", "httpAddress",
        "seriesBudget", "tcpIdleTimeout", "dashboard", "managementIdleTimeout", "httpRequestTimeout", "httpAllowedHosts",
        "processMetrics", "logMetrics",
    ]

    /// Reads a statsd configuration file (`config.js` or JSON). `upstreams`: the sections `backends` may name (the
    /// backends' registry); the first is the default, as Graphite is statsd's.
    /// - Returns: the configuration and the warnings to log (unknown keys, values statsd silently corrects).
    public static func load(
        path: String, environment: [String: String], upstreams: [any UpstreamSection.Type]
    ) throws -> (configuration: DaemonConfiguration, warnings: [String]) {
        let source: String
        do {
            source = try readTextFile(path)
        } catch {
            throw ConfigurationError(
                file: path, problems: [.init(key: "(file)", message: "cannot read the file: \(error.reason)")])
        }
        let value: JSValue
        let unset: [String]
        do {
            (value, unset) = try ConfigScript.evaluateReportingUnset(source, environment: environment)
        } catch {
            throw ConfigurationError(
                file: path, problems: [.init(key: "(syntax)", message: error.message, line: error.line, column: error.column)])
        }
        guard case .object(let object) = value else {
            throw ConfigurationError(
                file: path,
                problems: [.init(key: "(file)", message: "must evaluate to an object, got \(value.typeDescription)")])
        }
        var result = try Self.from(object, file: path, environment: environment, upstreams: upstreams)
        result.configuration.path = path
        if !unset.isEmpty {
            // `process.env.KEY + ".statsd"` with KEY unset is the string "undefined.statsd": say which variable.
            let names = unset.map { "process.env.\($0)" }.joined(separator: ", ")
            for (key, text) in Self.strings(in: .object(object), path: "") where text.contains("undefined") {
                result.warnings.append(
                    "\(key) is \"\(text)\": it was built from an environment variable that is not set (\(names))")
            }
        }
        return result
    }

    /// Every string in a configuration value, with its key path (`graphite.globalPrefix`, `repeater[0].host`).
    static func strings(in value: JSValue, path: String) -> [(String, String)] {
        switch value {
        case .string(let text): return [(path, text)]
        case .object(let object):
            return object.pairs.flatMap { Self.strings(in: $0.1, path: path.isEmpty ? $0.0 : path + "." + $0.0) }
        case .array(let items):
            return items.enumerated().flatMap { Self.strings(in: $0.1, path: "\(path)[\($0.0)]") }
        default: return []
        }
    }

    /// The known key a misspelt one most likely meant: the same letters in another case, or at most two edits
    /// away (a third of the key's length for long keys).
    public static func nearestKey(to key: String, in known: Set<String>) -> String? {
        if let sameLetters = known.first(where: { $0.lowercased() == key.lowercased() }) { return sameLetters }
        let limit = max(2, key.count / 4)
        let scored = known.map { ($0, Self.editDistance(key.lowercased(), $0.lowercased())) }.filter { $0.1 <= limit }
        return scored.min { $0.1 < $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }?.0
    }

    /// Levenshtein distance.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a.unicodeScalars)
        let b = Array(b.unicodeScalars)
        guard !a.isEmpty else { return b.count }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in stride(from: 1, through: b.count, by: 1) {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }

    /// Builds a configuration from an evaluated config object, collecting every problem before failing.
    public static func from(
        _ object: JSObject, file: String? = nil, environment: [String: String] = [:],
        upstreams: [any UpstreamSection.Type] = []
    ) throws -> (configuration: DaemonConfiguration, warnings: [String]) {
        var reader = ConfigurationReader()
        var c = DaemonConfiguration()
        c.source = object
        c.registeredUpstreams = upstreams

        let knownKeys = Self.coreKeys.union(upstreams.flatMap { $0.keys })
        for key in object.keys where !knownKeys.contains(key) { reader.unknownKey(key, known: knownKeys) }
        // statsd keys Sidestat does not act on: say so rather than seem to.
        if object["automaticConfigReload"].truthy {
            reader.warning(
                "automaticConfigReload is not supported and is ignored: the file is read once; restart to apply a change")
        }
        if !object["debugInterval"].isNullish {
            reader.warning("debugInterval is not supported and is ignored")
        }

        // Listeners: `servers`, or the top level as the only one.
        func listener(_ value: JSObject, prefix: String) -> ListenerConfiguration {
            var l = ListenerConfiguration()
            if let server = reader.string(value["server"], key: prefix + "server") {
                switch server {
                case "./servers/udp", "udp", "./servers/udp.js": l.transport = .udp
                case "./servers/tcp", "tcp", "./servers/tcp.js": l.transport = .tcp
                case "./servers/unixgram", "unixgram": l.transport = .unixDatagram
                default:
                    reader.problem(
                        prefix + "server",
                        "must be \"./servers/udp\", \"./servers/tcp\" or \"./servers/unixgram\", got \"\(server)\"")
                }
            }
            l.ipv6 = reader.bool(value["address_ipv6"], key: prefix + "address_ipv6") ?? false
            if l.ipv6 { l.address = "::1" }
            if let address = reader.nonEmptyString(
                value["address"], key: prefix + "address", what: "an IP address or host name to listen on, such as \"127.0.0.1\"")
            {
                l.address = address
            }
            // An address in the file means exactly that address.
            l.alsoOnIPv6Loopback = l.address == "127.0.0.1" && !l.ipv6 && value["address"].isNullish
            if let port = reader.integer(value["port"], key: prefix + "port", in: 0...65_535, falsyDefault: 8125) {
                l.port = port
            }
            l.unixSocket = reader.nonEmptyString(
                value["socket"], key: prefix + "socket", what: "the path of the socket file, such as \"/tmp/statsd.sock\"")
            if l.unixSocket != nil {
                // statsd's `socket` is a TCP server's Unix stream socket; `./servers/unixgram` makes it a datagram one.
                if l.transport != .unixDatagram { l.transport = .tcp }
                l.alsoOnIPv6Loopback = false
            } else if l.transport == .unixDatagram {
                reader.problem(prefix + "socket", "is required by ./servers/unixgram (the socket file's path)")
            }
            switch value["framing"] {
            case .undefined, .null, .string("newline"): l.lengthPrefixed = false
            case .string("length") where l.transport == .tcp: l.lengthPrefixed = true
            case let framing:
                reader.problem(
                    prefix + "framing",
                    "must be \"newline\" or \"length\" (a TCP or Unix stream listener only), got \(framing.typeDescription)")
            }
            switch value["socket_mod"] {
            case .undefined, .null:
                break
            case .string(let text):
                // node's fs.chmod reads a string as octal ("0666", "666", "0o666").
                let digits = text.hasPrefix("0o") || text.hasPrefix("0O") ? String(text.dropFirst(2)) : text
                if let mode = Int(digits, radix: 8), !digits.isEmpty, mode <= 0o7777 {
                    l.unixSocketMode = mode
                } else {
                    reader.problem(prefix + "socket_mod", "must be a file mode: octal digits in a string (\"0660\") or a number (0o660), got \"\(text)\"")
                }
            default:
                if let mode = reader.integer(value["socket_mod"], key: prefix + "socket_mod", in: 0...0o7777) {
                    l.unixSocketMode = mode
                }
            }
            return l
        }
        switch object["servers"] {
        case .undefined, .null:
            c.listeners = [listener(object, prefix: "")]
        case .array(let items) where !items.isEmpty:
            c.listeners = items.enumerated().compactMap { index, item in
                guard case .object(let server) = item else {
                    reader.problem("servers[\(index)]", "must be an object like {server: \"./servers/udp\", port: 8125}")
                    return nil
                }
                return listener(server, prefix: "servers[\(index)].")
            }
        default:
            reader.problem("servers", "must be a non-empty array of listener objects, got \(object["servers"].typeDescription)")
        }

        if let address = reader.nonEmptyString(
            object["mgmt_address"], key: "mgmt_address", what: "the management port's address, such as \"127.0.0.1\"")
        {
            c.managementAddress = address
        }
        if let port = reader.integer(object["mgmt_port"], key: "mgmt_port", in: 0...65_535, falsyDefault: 8126) {
            c.managementPort = port
        }

        let selected = Self.selectedUpstreams(object["backends"], from: upstreams, reader: &reader)

        if let interval = reader.integer(
            object["flushInterval"], key: "flushInterval", in: 1...86_400_000, falsyDefault: 10_000)
        {
            c.flushInterval = .milliseconds(interval)
        }

        // percentThreshold: a number or a list; unset means 90. (statsd's `|| 90` also turns 0 and false into 90;
        // 0 is an error here, as for every value that is not a percentile.)
        let thresholds: [JSValue]
        switch object["percentThreshold"] {
        case .array(let items): thresholds = items
        case .undefined, .null: thresholds = [.number(90)]
        case let value: thresholds = [value]
        }
        c.percentThreshold = []
        for (index, value) in thresholds.enumerated() {
            let key = thresholds.count == 1 && !(object["percentThreshold"].isArray) ? "percentThreshold" : "percentThreshold[\(index)]"
            guard let number = reader.number(value, key: key) else { continue }
            // DEVIATIONS #9: statsd emits NaN or drops metrics for these.
            if number == 0 || number > 100 || number <= -100 {
                reader.problem(key, "must be above -100 and at most 100, and not 0, got \(JSNumber.string(number))")
                continue
            }
            c.percentThreshold.append(number)
        }

        switch object["histogram"] {
        case .undefined, .null:
            break
        case .array(let rules):
            for (index, rule) in rules.enumerated() {
                guard case .object(let ruleObject) = rule else {
                    reader.problem("histogram[\(index)]", "must be an object like {metric: \"foo\", bins: [10, \"inf\"]}")
                    continue
                }
                let metric = reader.string(ruleObject["metric"], key: "histogram[\(index)].metric") ?? ""
                guard case .array(let bins) = ruleObject["bins"] else {
                    reader.problem("histogram[\(index)].bins", "must be an array of numbers or \"inf\"")
                    continue
                }
                var parsed: [HistogramRule.Bin] = []
                for (binIndex, bin) in bins.enumerated() {
                    let key = "histogram[\(index)].bins[\(binIndex)]"
                    switch bin {
                    case .string("inf"):
                        parsed.append(.init(limit: nil, text: "inf"))
                    case .number(let value) where value.isFinite:
                        parsed.append(.init(limit: value, text: JSNumber.string(value)))
                    case .string(let text) where JSValue.string(text).numberValue.isFinite && !text.isEmpty:
                        parsed.append(.init(limit: JSValue.string(text).numberValue, text: text))
                    default:
                        reader.problem(key, "must be a number or \"inf\", got \(bin.typeDescription)")
                    }
                }
                c.histogram.append(HistogramRule(metric: metric, bins: parsed))
            }
        default:
            reader.problem("histogram", "must be an array of {metric, bins} objects")
        }

        switch object["calculatedTimerMetrics"] {
        case .undefined, .null:
            break
        case .array(let names):
            for (index, name) in names.enumerated() {
                if let text = reader.string(name, key: "calculatedTimerMetrics[\(index)]") {
                    c.calculatedTimerMetrics.append(text)
                }
            }
        default:
            reader.problem("calculatedTimerMetrics", "must be an array of statistic names such as \"mean\", \"upper_percent\"")
        }

        // deleteIdleStats turns the four on unless each is set on its own.
        c.deleteIdleStats = reader.bool(object["deleteIdleStats"], key: "deleteIdleStats") ?? false
        c.deleteCounters = reader.bool(object["deleteCounters"], key: "deleteCounters") ?? c.deleteIdleStats
        c.deleteTimers = reader.bool(object["deleteTimers"], key: "deleteTimers") ?? c.deleteIdleStats
        c.deleteSets = reader.bool(object["deleteSets"], key: "deleteSets") ?? c.deleteIdleStats
        c.deleteGauges = reader.bool(object["deleteGauges"], key: "deleteGauges") ?? c.deleteIdleStats

        // statsd forces anything but an integer above 1 to 1, silently: keep that, with a warning.
        switch object["gaugesMaxTTL"] {
        case .undefined:
            c.gaugesMaxTTL = 1
        case .number(let ttl) where ttl == ttl.rounded() && ttl > 1 && ttl < 1e9:
            c.gaugesMaxTTL = Int(ttl)
        case let value:
            c.gaugesMaxTTL = 1
            reader.warning("gaugesMaxTTL: \(value.typeDescription) is not an integer above 1; using 1, as statsd does")
        }

        if let prefix = reader.string(object["prefixStats"], key: "prefixStats") {
            c.prefixStats = reader.metricPath(prefix, key: "prefixStats")
        }
        c.keyNameSanitize = reader.bool(object["keyNameSanitize"], key: "keyNameSanitize") ?? true
        c.dumpMessages = reader.bool(object["dumpMessages"], key: "dumpMessages") ?? false
        c.debug = reader.bool(object["debug"], key: "debug") ?? false

        if case .object(let keyFlush) = object["keyFlush"] {
            if let interval = reader.integer(keyFlush["interval"], key: "keyFlush.interval", in: 0...86_400_000, falsyDefault: 0),
                interval > 0
            {
                var k = KeyFlushConfiguration(interval: .milliseconds(interval))
                if let percent = reader.number(keyFlush["percent"], key: "keyFlush.percent") {
                    if percent > 0 && percent <= 100 {
                        k.percent = percent
                    } else {
                        reader.problem("keyFlush.percent", "must be above 0 and at most 100, got \(JSNumber.string(percent))")
                    }
                }
                k.logPath = reader.string(keyFlush["log"], key: "keyFlush.log")
                c.keyFlush = k
            }
        } else if !object["keyFlush"].isNullish {
            reader.problem("keyFlush", "must be an object like {interval: 10000, percent: 10, log: \"/path\"}")
        }

        switch object["title"] {
        case .undefined: c.title = "sidestat"
        case .bool(false): c.title = nil
        case .string(let title): c.title = title
        case let value: reader.problem("title", "must be a string or false, got \(value.typeDescription)")
        }

        switch object["healthStatus"] {
        case .undefined, .null, .string("up"): c.healthStatusUp = true
        case .string("down"): c.healthStatusUp = false
        case let value: reader.problem("healthStatus", "must be \"up\" or \"down\", got \(value.typeDescription)")
        }

        if case .object(let log) = object["log"] {
            switch log["backend"] {
            case .undefined, .null, .string("stdout"): c.logBackend = .stdout
            case .string("syslog"): c.logBackend = .syslog
            case let value: reader.problem("log.backend", "must be \"stdout\" or \"syslog\", got \(value.typeDescription)")
            }
            if let application = reader.string(log["application"], key: "log.application") {
                c.logApplication = application
            }
        } else if !object["log"].isNullish {
            reader.problem("log", "must be an object like {backend: \"stdout\"}")
        }

        let explicitInstance = reader.string(object["instance"], key: "instance")
        c.instance = explicitInstance ?? Self.defaultInstance(environment: environment)
        let context = SectionContext(
            environment: environment, instance: c.instance, instanceIsExplicit: explicitInstance != nil)
        c.upstreams = selected.map { $0.init(reading: object, reader: &reader, context: context) }
        // statsd reads a backend's keys only when it loads the backend: say so rather than seem to act on them.
        let selectedKeys = Set(selected.flatMap { $0.keys })
        for section in upstreams where !selected.contains(where: { ObjectIdentifier($0) == ObjectIdentifier(section) }) {
            for key in section.keys where object.contains(key) && !selectedKeys.contains(key) {
                reader.warning("\(key) is ignored: add \"./backends/\(section.name)\" to backends")
            }
        }
        if let port = reader.integer(object["httpPort"], key: "httpPort", in: 0...65_535) { c.httpPort = port }
        if let address = reader.nonEmptyString(
            object["httpAddress"], key: "httpAddress", what: "the HTTP port's address, such as \"127.0.0.1\"")
        {
            c.httpAddress = address
        }
        if let seconds = reader.integer(object["httpRequestTimeout"], key: "httpRequestTimeout", in: 1...3600) {
            c.httpRequestTimeout = seconds
        }
        if let seconds = reader.integer(
            object["managementIdleTimeout"], key: "managementIdleTimeout", in: 0...(86_400 * 365))
        {
            c.managementIdleTimeout = seconds
        }
        switch object["httpAllowedHosts"] {
        case .undefined, .null:
            break
        case .array(let hosts):
            for (index, host) in hosts.enumerated() {
                if let name = reader.nonEmptyString(
                    host, key: "httpAllowedHosts[\(index)]", what: "a host name the HTTP ports answer, such as \"metrics.internal\"")
                {
                    c.httpAllowedHosts.append(name.lowercased())
                }
            }
        case let value:
            reader.problem("httpAllowedHosts", "must be a list of host names, such as [\"metrics.internal\"], got \(value.typeDescription)")
        }
        switch object["dashboard"] {
        case .undefined, .null:
            break
        case .bool(false):
            c.dashboardDeclined = true
        case .bool(true):
            c.dashboard = DashboardConfiguration()
        default:
            let section = reader.section(object, "dashboard", example: "{port: 8127, address: \"127.0.0.1\", budgetMiB: 32, flushes: 360}")
            var dashboard = DashboardConfiguration()
            if let port = reader.integer(section["port"], key: "dashboard.port", in: 0...65_535) { dashboard.port = port }
            if let address = reader.nonEmptyString(
                section["address"], key: "dashboard.address", what: "the dashboard's address, such as \"127.0.0.1\"")
            {
                dashboard.address = address
            }
            if let budget = reader.integer(section["budgetMiB"], key: "dashboard.budgetMiB", in: 1...4096) {
                dashboard.budgetMiB = budget
            }
            if let flushes = reader.integer(section["flushes"], key: "dashboard.flushes", in: 2...3600) {
                dashboard.flushes = flushes
            }
            for key in section.keys where !["port", "address", "budgetMiB", "flushes"].contains(key) {
                reader.warning("dashboard.\(key) is not a dashboard setting (port, address, budgetMiB, flushes): ignored")
            }
            c.dashboard = dashboard
        }

        // Sidestat's own keys.
        if let timeout = reader.integer(
            object["shutdownTimeout"], key: "shutdownTimeout", in: 0...3_600_000, falsyDefault: 10_000)
        {
            c.shutdownTimeout = .milliseconds(timeout)
        }
        if let bytes = reader.integer(
            object["udpReceiveBuffer"], key: "udpReceiveBuffer", in: 4096...1_073_741_824, falsyDefault: 8 * 1024 * 1024)
        {
            c.udpReceiveBufferBytes = bytes
        }
        if let readers = reader.integer(object["udpReaders"], key: "udpReaders", in: 1...64, falsyDefault: 1) {
            c.udpReaders = readers
        }
        if let bytes = reader.integer(
            object["retryBufferBytes"], key: "retryBufferBytes", in: 0...(1 << 40), falsyDefault: 16 * 1024 * 1024)
        {
            c.retryBufferBytes = bytes
        }

        if let budget = reader.integer(object["seriesBudget"], key: "seriesBudget", in: 1...100_000_000) {
            c.seriesBudget = budget
        }
        if let seconds = reader.integer(object["tcpIdleTimeout"], key: "tcpIdleTimeout", in: 0...(86_400 * 365)) {
            c.tcpIdleTimeout = seconds
        }

        switch object["processMetrics"] {
        case .undefined, .null, .bool(true):
            break
        case .bool(false):
            c.processMetrics = false
        case .object(let section):
            reader.warnUnknownKeys(in: section, of: "processMetrics", known: ["enabled", "memoryQuota"])
            c.processMetrics = reader.bool(section["enabled"], key: "processMetrics.enabled") ?? true
            if !section["memoryQuota"].isNullish {
                c.memoryQuotaBytes = reader.size(section["memoryQuota"], key: "processMetrics.memoryQuota")
            }
        case let value:
            reader.problem(
                "processMetrics", "must be true, false or an object like {memoryQuota: \"512MB\"}, got \(value.typeDescription)")
        }
        c.logMetrics = reader.bool(object["logMetrics"], key: "logMetrics") ?? true

        reader.finishUnknownKeys()
        if !reader.problems.isEmpty {
            throw ConfigurationError(file: file, problems: reader.problems)
        }
        return (c, reader.warnings)
    }

    /// The sections `backends` names, each once, in order; unset: the first of `upstreams` (statsd's default).
    static func selectedUpstreams(
        _ value: JSValue, from upstreams: [any UpstreamSection.Type], reader: inout ConfigurationReader
    ) -> [any UpstreamSection.Type] {
        var selected: [any UpstreamSection.Type] = []
        switch value {
        case .undefined, .null:
            return Array(upstreams.prefix(1))
        case .array(let items):
            for (index, item) in items.enumerated() {
                guard case .string(let name) = item, let section = upstreams.first(where: { $0.names.contains(name) })
                else {
                    let names = upstreams.map { JSONText.quoted("./backends/" + $0.name) }.joined(separator: ", ")
                    reader.problem("backends[\(index)]", "must be one of \(names); got \(item.typeDescription)")
                    continue
                }
                if !selected.contains(where: { ObjectIdentifier($0) == ObjectIdentifier(section) }) { selected.append(section) }
            }
        default:
            reader.problem("backends", "must be an array of backend names, got \(value.typeDescription)")
        }
        return selected
    }
}
