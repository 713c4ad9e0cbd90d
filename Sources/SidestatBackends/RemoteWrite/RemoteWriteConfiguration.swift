//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatConfiguration

/// Prometheus Remote-Write 1.0: the `remoteWrite` object, or the `PROMETHEUS_REMOTE_WRITE_*` variables.
public struct RemoteWriteConfiguration: BackendSection, Hashable {
    public enum Histograms: String, Sendable, Hashable {
        /// Native (exponential) histograms: one series per timer, merging exactly across dynos.
        case native
        /// `_bucket`, `_sum` and `_count` series, for receivers without native histograms.
        case classic
    }

    public var url = ""
    /// Extra request headers, `Name: value` (`X-Scope-OrgID` for a Mimir tenant, say).
    public var headers: [String] = []
    public var username: String? = nil
    public var password: String? = nil
    public var bearerToken: String? = nil
    public var histograms = Histograms.native
    /// Classic bucket bounds for timers, in seconds, and for distributions, in their own unit.
    public var buckets = PrometheusConfiguration().buckets
    public var distributionBuckets = PrometheusConfiguration().distributionBuckets
    /// Labels every series carries (`job`, `env`...), as Prometheus's `external_labels`.
    public var labels: [String: String] = [:]

    public init(url: String) { self.url = url }

    public static let names = ["remotewrite", "remote_write", "prometheus-remote-write", "./backends/remotewrite"]
    public static let keys = ["remoteWrite"]

    /// The environment's names for the settings.
    public static let urlVariable = "PROMETHEUS_REMOTE_WRITE_URL"
    public static let usernameVariable = "PROMETHEUS_REMOTE_WRITE_USERNAME"
    public static let passwordVariable = "PROMETHEUS_REMOTE_WRITE_PASSWORD"
    public static let bearerTokenVariable = "PROMETHEUS_REMOTE_WRITE_BEARER_TOKEN"
    public static let histogramsVariable = "PROMETHEUS_REMOTE_WRITE_HISTOGRAMS"

    /// Headers the protocol sets, which a user must not override (the spec says so).
    static let protocolHeaders = ["content-encoding", "content-type", "x-prometheus-remote-write-version", "user-agent"]

    static let sectionKeys = [
        "url", "headers", "username", "password", "bearerToken", "histograms", "buckets", "distributionBuckets", "labels",
    ]

    public init(reading object: JSObject, reader: inout ConfigurationReader, context: SectionContext) {
        let section = reader.section(
            object, "remoteWrite", example: "{url: \"https://prometheus.example.com/api/v1/write\", bearerToken: \"...\"}")
        reader.warnUnknownKeys(in: section, of: "remoteWrite", known: Self.sectionKeys)
        let environment = context.environment
        func text(_ key: String, _ variable: String) -> String? {
            reader.string(section[key], key: "remoteWrite.\(key)") ?? environment[variable].flatMap { $0.isEmpty ? nil : $0 }
        }
        self.url = text("url", Self.urlVariable) ?? ""
        self.username = text("username", Self.usernameVariable)
        self.password = text("password", Self.passwordVariable)
        self.bearerToken = text("bearerToken", Self.bearerTokenVariable)
        if let histograms = text("histograms", Self.histogramsVariable) {
            if let value = Histograms(rawValue: histograms) {
                self.histograms = value
            } else {
                reader.problem("remoteWrite.histograms", "must be \"native\" or \"classic\", got \"\(histograms)\"")
            }
        }
        if let buckets = PrometheusConfiguration.buckets(
            section["buckets"], key: "remoteWrite.buckets", unit: "seconds", &reader)
        {
            self.buckets = buckets
        }
        if let buckets = PrometheusConfiguration.buckets(
            section["distributionBuckets"], key: "remoteWrite.distributionBuckets", unit: "the values' unit", &reader)
        {
            self.distributionBuckets = buckets
        }
        switch section["headers"] {
        case .undefined, .null: break
        case .object(let headers):
            for (name, value) in headers.pairs {
                guard let text = reader.string(value, key: "remoteWrite.headers.\(name)") else { continue }
                if Self.protocolHeaders.contains(name.lowercased()) {
                    reader.problem(
                        "remoteWrite.headers.\(name)",
                        "is set by the Remote-Write protocol and cannot be changed (the headers Sidestat sets: Content-Encoding, Content-Type, X-Prometheus-Remote-Write-Version, User-Agent)")
                } else if name.isEmpty || name.contains(where: { $0 == ":" || $0 == " " || $0 == "\n" || $0 == "\r" })
                    || text.contains(where: { $0 == "\n" || $0 == "\r" })
                {
                    reader.problem("remoteWrite.headers.\(name)", "must be a header name and a one-line value")
                } else {
                    self.headers.append("\(name): \(text)")
                }
            }
        case let value:
            reader.problem("remoteWrite.headers", "must be an object like {\"X-Scope-OrgID\": \"tenant\"}, got \(value.typeDescription)")
        }
        switch section["labels"] {
        case .undefined, .null: break
        case .object(let labels):
            for (name, value) in labels.pairs {
                guard let text = reader.string(value, key: "remoteWrite.labels.\(name)") else { continue }
                if !Self.isLabelName(name) || name.hasPrefix("__") || ["le", "quantile", "sidestat_instance"].contains(name) {
                    reader.problem(
                        "remoteWrite.labels.\(name)",
                        "must be a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __), and not le, quantile or sidestat_instance")
                } else if text.isEmpty {
                    reader.problem("remoteWrite.labels.\(name)", "must not be empty (an empty value means no label)")
                } else {
                    self.labels[name] = text
                }
            }
        case let value:
            reader.problem("remoteWrite.labels", "must be an object like {job: \"web\"}, got \(value.typeDescription)")
        }
        self.validate(&reader)
    }

    /// From `PROMETHEUS_REMOTE_WRITE_URL` (and the other variables), without a configuration file.
    public init?(environment context: SectionContext, reader: inout ConfigurationReader) {
        guard let url = context.environment[Self.urlVariable], !url.isEmpty else { return nil }
        self.init(reading: JSObject(), reader: &reader, context: context)
    }

    func validate(_ reader: inout ConfigurationReader) {
        if self.url.isEmpty {
            reader.problem(
                "remoteWrite.url",
                "is required: the receiver's Remote-Write endpoint, such as \"https://prometheus.example.com/api/v1/write\" (or set \(Self.urlVariable))")
        } else if !(self.url.hasPrefix("http://") || self.url.hasPrefix("https://")) || self.url.contains(" ") {
            reader.problem("remoteWrite.url", "must be an http:// or https:// URL, got \"\(self.url)\"")
        }
        if self.bearerToken != nil && (self.username != nil || self.password != nil) {
            reader.problem("remoteWrite.bearerToken", "cannot be used with remoteWrite.username and password: pick one")
        }
        if (self.username == nil) != (self.password == nil) {
            reader.problem("remoteWrite.password", "basic authentication needs both remoteWrite.username and remoteWrite.password")
        }
        if (self.bearerToken != nil || self.username != nil),
            self.headers.contains(where: { $0.lowercased().hasPrefix("authorization:") })
        {
            reader.problem("remoteWrite.headers.Authorization", "cannot be used with remoteWrite.username or bearerToken")
        }
    }

    static func isLabelName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, first == "_" || ("a"..."z").contains(first) || ("A"..."Z").contains(first)
        else { return false }
        return name.unicodeScalars.allSatisfy {
            $0 == "_" || ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0)
        }
    }

    public func describe(into description: inout ConfigurationDescription) {
        var parts = ["url: \(description.quote(self.url))"]
        if let username = self.username { parts.append("username: \(description.quote(username))") }
        if let password = self.password { parts.append("password: \(description.secret(password))") }
        if let token = self.bearerToken { parts.append("bearerToken: \(description.secret(token))") }
        if !self.headers.isEmpty {
            let headers = self.headers.map { header -> String in
                let parts = header.split(separator: ":", maxSplits: 1).map { String($0) }
                let value = parts.count > 1 ? String(parts[1].dropFirst()) : ""
                return "\(description.quote(parts[0])): \(description.secret(value))"
            }
            parts.append("headers: \(description.object(headers))")
        }
        parts.append("histograms: \(description.quote(self.histograms.rawValue))")
        if !self.labels.isEmpty {
            parts.append(
                "labels: \(description.object(self.labels.sorted { $0.key < $1.key }.map { "\($0.key): \(description.quote($0.value))" }))")
        }
        description.add("remoteWrite", description.object(parts))
    }

    public func makeBackend(_ context: BackendContext) -> any MetricsBackend {
        RemoteWriteBackend(configuration: self, context: context)
    }
}
