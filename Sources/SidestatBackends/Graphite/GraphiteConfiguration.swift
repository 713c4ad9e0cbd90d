//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatConfiguration
import SidestatProtocol

/// The Graphite backend's settings: statsd's `graphite*` keys, `flush_counts` and the `graphite` object.
public struct GraphiteConfiguration: BackendSection, Hashable {
    public enum WireProtocol: String, Sendable, Hashable {
        case text
        case pickle
    }

    /// Where the instance name goes in Graphite names.
    public enum Instance: String, Sendable, Hashable {
        /// statsd's layout, unchanged (one statsd per key space).
        case none
        /// A path segment before the key: `stats_counts.web_1.hits`; `sumSeries(stats_counts.*.hits)` adds them up.
        case path
        /// A Graphite tag: `stats_counts.hits;instance=web.1`.
        case tag
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
    /// statsd's names unless the file sets `instance` or `graphite.instance`.
    public var instance: Instance = .none

    public init() {}

    public static let names = ["graphite", "./backends/graphite", "./backends/graphite.js"]
    public static let keys = [
        "graphiteHost", "graphitePort", "graphitePicklePort", "graphiteProtocol", "flush_counts", "graphite",
    ]
    /// The keys that shape names, which Hosted Graphite shares.
    static let namingKeys = ["flush_counts", "graphite"]

    public init(reading object: JSObject, reader: inout ConfigurationReader, context: SectionContext) {
        self.init(namesFrom: object, reader: &reader, context: context)
        if let host = reader.string(object["graphiteHost"], key: "graphiteHost"), !host.isEmpty { self.host = host }
        if let port = reader.integer(object["graphitePort"], key: "graphitePort", in: 1...65_535, falsyDefault: 2003) {
            self.port = port
        }
        if let port = reader.integer(
            object["graphitePicklePort"], key: "graphitePicklePort", in: 1...65_535, falsyDefault: 2004)
        {
            self.picklePort = port
        }
        switch object["graphiteProtocol"] {
        case .undefined, .null, .string("text"): self.wireProtocol = .text
        case .string("pickle"): self.wireProtocol = .pickle
        case let value: reader.problem("graphiteProtocol", "must be \"text\" or \"pickle\", got \(value.typeDescription)")
        }
        if self.host != nil { self.warnAboutInstance(object, reader: &reader, context: context) }
    }

    /// The naming settings alone (`flush_counts` and the `graphite` object), for any Graphite-like upstream.
    init(namesFrom object: JSObject, reader: inout ConfigurationReader, context: SectionContext) {
        self.flushCounts = reader.bool(object["flush_counts"], key: "flush_counts") ?? true
        // statsd's names unless the file asks for an instance: the same file gives the same names as statsd.
        self.instance = context.instanceIsExplicit ? .path : .none
        let graphite = reader.section(object, "graphite", example: "{legacyNamespace: false, globalPrefix: \"stats\"}")
        self.legacyNamespace = reader.bool(graphite["legacyNamespace"], key: "graphite.legacyNamespace") ?? true
        for (name, path) in [
            ("globalPrefix", \Self.globalPrefix), ("prefixCounter", \.prefixCounter), ("prefixTimer", \.prefixTimer),
            ("prefixGauge", \.prefixGauge), ("prefixSet", \.prefixSet),
        ] {
            if let value = reader.string(graphite[name], key: "graphite." + name) {
                self[keyPath: path] = reader.metricPath(value, key: "graphite." + name)
            }
        }
        self.globalSuffix = reader.string(graphite["globalSuffix"], key: "graphite.globalSuffix")
            .map { reader.metricPath($0, key: "graphite.globalSuffix") }
        if let mode = reader.string(graphite["instance"], key: "graphite.instance") {
            if let value = Instance(rawValue: mode) {
                self.instance = value
            } else {
                reader.problem("graphite.instance", "must be \"path\", \"tag\" or \"none\", got \"\(mode)\"")
            }
        }
    }

    /// With `$DYNO` set and names that carry no instance (statsd's names, the default): a warning that several dynos
    /// would overwrite each other's series, and what fixes it.
    func warnAboutInstance(_ object: JSObject, reader: inout ConfigurationReader, context: SectionContext) {
        guard let dyno = context.environment["DYNO"], self.instance == .none else { return }
        if case .object(let graphite) = object["graphite"], graphite.contains("instance") { return }
        reader.warning(
            "DYNO is set (\(dyno)) but Graphite names carry no instance, as statsd's do: several dynos would "
                + "overwrite each other's series. Set graphite: {instance: \"path\"} (or \"tag\") to keep them apart")
    }

    /// The encoder's naming for this daemon, each line starting with `linePrefix`.
    func naming(instance name: String, linePrefix: String) -> GraphiteEncoder.Naming {
        switch self.instance {
        case .none: return .init(linePrefix: linePrefix)
        case .path: return .init(linePrefix: linePrefix, instance: name)
        case .tag: return .init(linePrefix: linePrefix, instance: name, instanceAsTag: true)
        }
    }

    public func describe(into description: inout ConfigurationDescription) {
        description.add("graphiteHost", self.host.map(description.quote) ?? "undefined")
        description.add("graphitePort", String(self.port))
        description.add("graphitePicklePort", String(self.picklePort))
        description.add("graphiteProtocol", description.quote(self.wireProtocol.rawValue))
        self.describeNames(into: &description)
    }

    func describeNames(into description: inout ConfigurationDescription) {
        description.add("flush_counts", String(self.flushCounts))
        var graphite = [
            "legacyNamespace: \(self.legacyNamespace)", "globalPrefix: \(description.quote(self.globalPrefix))",
            "prefixCounter: \(description.quote(self.prefixCounter))",
            "prefixTimer: \(description.quote(self.prefixTimer))",
            "prefixGauge: \(description.quote(self.prefixGauge))", "prefixSet: \(description.quote(self.prefixSet))",
        ]
        if let suffix = self.globalSuffix { graphite.append("globalSuffix: \(description.quote(suffix))") }
        graphite.append("instance: \(description.quote(self.instance.rawValue))")
        description.add("graphite", description.object(graphite))
    }

    public func makeBackend(_ context: BackendContext) -> any MetricsBackend {
        GraphiteBackend(
            configuration: self, naming: self.naming(instance: context.configuration.instance, linePrefix: ""),
            sanitizeNames: !context.configuration.keyNameSanitize,
            retryBufferBytes: context.configuration.retryBufferBytes, startupTime: context.startupTime)
    }
}
