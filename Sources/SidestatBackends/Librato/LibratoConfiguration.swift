//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatConfiguration

/// Librato's v1 metrics API: the `librato` object, or `LIBRATO_USER`, `LIBRATO_TOKEN` and `LIBRATO_SOURCE`.
public struct LibratoConfiguration: BackendSection, Hashable {
    public var user: String
    public var token: String
    public var source: String
    public var api = "https://metrics-api.librato.com"

    public init(user: String, token: String, source: String) {
        self.user = user
        self.token = token
        self.source = source
    }

    public static let names = ["librato", "statsd-librato-backend", "./backends/librato"]
    public static let keys = ["librato"]

    public init(reading object: JSObject, reader: inout ConfigurationReader, context: SectionContext) {
        let librato = reader.section(object, "librato", example: "{user: \"...\", token: \"...\"}")
        let environment = context.environment
        let user = reader.string(librato["user"], key: "librato.user")
            ?? reader.string(librato["email"], key: "librato.email") ?? environment["LIBRATO_USER"] ?? ""
        let token = reader.string(librato["token"], key: "librato.token") ?? environment["LIBRATO_TOKEN"] ?? ""
        let source = reader.string(librato["source"], key: "librato.source") ?? environment["LIBRATO_SOURCE"]
        self.init(user: user, token: token, source: source ?? context.instance)
        if user.isEmpty || token.isEmpty {
            reader.problem(
                "librato.token",
                "librato.user (or email) and librato.token are required (or set LIBRATO_USER and LIBRATO_TOKEN)")
        }
        if let api = reader.string(librato["api"], key: "librato.api") { self.api = api }
    }

    /// From `LIBRATO_USER` and `LIBRATO_TOKEN` (and `LIBRATO_SOURCE`).
    public init?(environment context: SectionContext, reader: inout ConfigurationReader) {
        let environment = context.environment
        guard let user = environment["LIBRATO_USER"], let token = environment["LIBRATO_TOKEN"], !user.isEmpty,
            !token.isEmpty
        else { return nil }
        self.init(user: user, token: token, source: environment["LIBRATO_SOURCE"] ?? context.instance)
    }

    public func describe(into description: inout ConfigurationDescription) {
        description.add(
            "librato",
            description.object([
                "user: \(description.quote(self.user))", "token: \(description.secret(self.token))",
                "source: \(description.quote(self.source))", "api: \(description.quote(self.api))",
            ]))
    }

    public func makeBackend(_ context: BackendContext) -> any MetricsBackend {
        HTTPBackend(name: Self.name, destination: "Librato's API at \(self.api)/v1/metrics", context: context) {
            data, _ in LibratoEncoder.requests(data, configuration: self)
        }
    }
}
