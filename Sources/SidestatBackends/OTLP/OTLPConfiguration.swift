//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatConfiguration

/// OpenTelemetry: OTLP over HTTP (protobuf) to `endpoint` + `/v1/metrics` (or `OTEL_EXPORTER_OTLP_ENDPOINT`).
public struct OTLPConfiguration: BackendSection, Hashable {
    public var endpoint = "http://127.0.0.1:4318"
    public var headers: [String] = []
    public var serviceName = "sidestat"

    public init() {}

    public static let names = ["otlp", "opentelemetry", "./backends/otlp"]
    public static let keys = ["otlp"]

    public init(reading object: JSObject, reader: inout ConfigurationReader, context: SectionContext) {
        let otlp = reader.section(object, "otlp", example: "{endpoint: \"http://127.0.0.1:4318\"}")
        if let endpoint = reader.string(otlp["endpoint"], key: "otlp.endpoint")
            ?? context.environment["OTEL_EXPORTER_OTLP_ENDPOINT"]
        {
            self.endpoint = endpoint
        }
        while self.endpoint.hasSuffix("/") { self.endpoint.removeLast() }
        if case .object(let headers) = otlp["headers"] {
            for (key, value) in headers.pairs {
                if let text = reader.string(value, key: "otlp.headers.\(key)") { self.headers.append("\(key): \(text)") }
            }
        }
        if let name = reader.string(otlp["serviceName"], key: "otlp.serviceName") { self.serviceName = name }
    }

    public func describe(into description: inout ConfigurationDescription) {
        description.add(
            "otlp",
            description.object([
                "endpoint: \(description.quote(self.endpoint))", "serviceName: \(description.quote(self.serviceName))",
            ]))
    }

    public func makeBackend(_ context: BackendContext) -> any MetricsBackend {
        HTTPBackend(
            name: Self.name, destination: "OTLP/HTTP at \(self.endpoint)/v1/metrics", context: context, acceptsLatePoints: true
        ) {
            OTLPEncoder.requests($0, configuration: self, instance: $1)
        }
    }
}
