//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatConfiguration
import SidestatProtocol

/// Hosted Graphite: carbon plaintext with the API key as the first path segment, named as the Graphite backend
/// names (`flush_counts` and the `graphite` object apply to both).
public struct HostedGraphiteConfiguration: BackendSection, Hashable {
    public var apiKey: String
    public var host = "carbon.hostedgraphite.com"
    public var port = 2003
    /// The names' settings, from the keys the Graphite backend reads.
    public var naming = GraphiteConfiguration()

    public init(apiKey: String) { self.apiKey = apiKey }

    public static let names = ["hostedgraphite", "./backends/hostedgraphite"]
    public static let keys = ["hostedGraphite"] + GraphiteConfiguration.namingKeys

    public init(reading object: JSObject, reader: inout ConfigurationReader, context: SectionContext) {
        let section = reader.section(object, "hostedGraphite", example: "{apiKey: \"...\"}")
        let key = reader.string(section["apiKey"], key: "hostedGraphite.apiKey")
            ?? context.environment["HOSTEDGRAPHITE_APIKEY"]
        self.init(apiKey: reader.metricPath(key ?? "", key: "hostedGraphite.apiKey", secret: true))
        if self.apiKey.isEmpty {
            reader.problem("hostedGraphite.apiKey", "is required by the hostedgraphite backend (or set HOSTEDGRAPHITE_APIKEY)")
        }
        if let host = reader.string(section["host"], key: "hostedGraphite.host") { self.host = host }
        if let port = reader.integer(section["port"], key: "hostedGraphite.port", in: 1...65_535) { self.port = port }
        self.naming = GraphiteConfiguration(namesFrom: object, reader: &reader, context: context)
        self.naming.warnAboutInstance(object, reader: &reader, context: context)
    }

    /// From `HOSTEDGRAPHITE_APIKEY`.
    public init?(environment context: SectionContext, reader: inout ConfigurationReader) {
        guard let key = context.environment["HOSTEDGRAPHITE_APIKEY"], !key.isEmpty else { return nil }
        self.init(apiKey: reader.metricPath(key, key: "HOSTEDGRAPHITE_APIKEY", secret: true))
        self.naming.warnAboutInstance(JSObject(), reader: &reader, context: context)
    }

    public func describe(into description: inout ConfigurationDescription) {
        description.add(
            "hostedGraphite",
            description.object([
                "apiKey: \(description.secret(self.apiKey))", "host: \(description.quote(self.host))",
                "port: \(self.port)",
            ]))
        self.naming.describeNames(into: &description)
    }

    public func makeBackend(_ context: BackendContext) -> any MetricsBackend {
        var graphite = self.naming
        graphite.host = self.host
        graphite.port = self.port
        graphite.wireProtocol = .text
        return GraphiteBackend(
            name: Self.name, configuration: graphite,
            naming: graphite.naming(instance: context.configuration.instance, linePrefix: self.apiKey + "."),
            sanitizeNames: !context.configuration.keyNameSanitize,
            retryBufferBytes: context.configuration.retryBufferBytes, startupTime: context.startupTime)
    }
}
