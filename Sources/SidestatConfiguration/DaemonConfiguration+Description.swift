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
    /// The effective configuration as a statsd config object, for `check-config`.
    public var effectiveDescription: String { self.effectiveDescription(showingSecrets: false) }

    /// Whether a configuration key holds a secret (an API key, a token, a password, request headers): the management
    /// port's `config` and `check-config` print such values as `***`.
    public static func isSecret(_ key: String) -> Bool {
        let lowered = key.lowercased()
        return ["token", "apikey", "api_key", "password", "secret", "headers", "authorization"].contains {
            lowered.contains($0)
        }
    }

    /// The effective configuration; secrets (see `isSecret`) as `***` unless `showingSecrets`.
    public func effectiveDescription(showingSecrets: Bool) -> String {
        var description = ConfigurationDescription(showingSecrets: showingSecrets)
        func add(_ key: String, _ value: String) { description.add(key, value) }
        func quote(_ s: String) -> String { JSONText.quoted(s) }
        let servers = self.listeners.map { l -> String in
            let server: String
            switch l.transport {
            case .udp: server = "./servers/udp"
            case .tcp: server = "./servers/tcp"
            case .unixDatagram: server = "./servers/unixgram"
            }
            var parts = ["server: \(quote(server))"]
            if let socket = l.unixSocket {
                parts.append("socket: \(quote(socket))")
                if let mode = l.unixSocketMode { parts.append("socket_mod: 0o\(String(mode, radix: 8))") }
                if l.lengthPrefixed { parts.append("framing: \"length\"") }
            } else {
                parts.append("address: \(quote(l.address))")
                parts.append("port: \(l.port)")
                if l.ipv6 { parts.append("address_ipv6: true") }
            }
            return "{ " + parts.joined(separator: ", ") + " }"
        }
        add("servers", "[" + servers.joined(separator: ", ") + "]")
        add("mgmt_address", quote(self.managementAddress))
        add("mgmt_port", String(self.managementPort))
        add("backends", "[" + self.backends.map { quote("./backends/" + $0) }.joined(separator: ", ") + "]")
        add("flushInterval", String(self.flushInterval.inMilliseconds))
        add("percentThreshold", "[" + self.percentThreshold.map { JSNumber.string($0) }.joined(separator: ", ") + "]")
        if !self.histogram.isEmpty {
            let rules = self.histogram.map { rule in
                "{ metric: \(quote(rule.metric)), bins: [" + rule.bins.map { $0.limit == nil ? "\"inf\"" : $0.text }
                    .joined(separator: ", ") + "] }"
            }
            add("histogram", "[" + rules.joined(separator: ", ") + "]")
        }
        if !self.calculatedTimerMetrics.isEmpty {
            add("calculatedTimerMetrics", "[" + self.calculatedTimerMetrics.map(quote).joined(separator: ", ") + "]")
        }
        add("deleteIdleStats", String(self.deleteIdleStats))
        add("deleteCounters", String(self.deleteCounters))
        add("deleteTimers", String(self.deleteTimers))
        add("deleteSets", String(self.deleteSets))
        add("deleteGauges", String(self.deleteGauges))
        add("gaugesMaxTTL", String(self.gaugesMaxTTL))
        add("prefixStats", quote(self.prefixStats))
        add("keyNameSanitize", String(self.keyNameSanitize))
        add("dumpMessages", String(self.dumpMessages))
        if let keyFlush = self.keyFlush {
            var parts = ["interval: \(keyFlush.interval.inMilliseconds)", "percent: \(JSNumber.string(keyFlush.percent))"]
            if let log = keyFlush.logPath { parts.append("log: \(quote(log))") }
            add("keyFlush", "{ " + parts.joined(separator: ", ") + " }")
        }
        add("debug", String(self.debug))
        add("title", self.title.map(quote) ?? "false")
        add("healthStatus", quote(self.healthStatusUp ? "up" : "down"))
        add("log", "{ backend: \(quote(self.logBackend.rawValue)), application: \(quote(self.logApplication)) }")
        add("shutdownTimeout", String(self.shutdownTimeout.inMilliseconds))
        add("udpReceiveBuffer", String(self.udpReceiveBufferBytes))
        add("udpReaders", String(self.udpReaders))
        add("retryBufferBytes", String(self.retryBufferBytes))
        add("seriesBudget", String(self.seriesBudget))
        add("tcpIdleTimeout", String(self.tcpIdleTimeout))
        add("managementIdleTimeout", String(self.managementIdleTimeout))
        add("httpRequestTimeout", String(self.httpRequestTimeout))
        if !self.httpAllowedHosts.isEmpty {
            add("httpAllowedHosts", "[" + self.httpAllowedHosts.map(quote).joined(separator: ", ") + "]")
        }
        add(
            "processMetrics",
            self.memoryQuotaBytes.map { "{ enabled: \(self.processMetrics), memoryQuota: \($0) }" } ?? String(self.processMetrics))
        add("logMetrics", String(self.logMetrics))
        add("instance", quote(self.instance))
        for upstream in self.upstreams { upstream.describe(into: &description) }
        if let port = self.httpPort { add("httpPort", String(port)) }
        if let dashboard = self.dashboard {
            add("dashboard", "{ address: \(quote(dashboard.address)), port: \(dashboard.port), budgetMiB: \(dashboard.budgetMiB) }")
        }
        return (["{"] + description.lines + ["}"]).joined(separator: "\n")
    }
}
