//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatConfiguration

/// statsd's repeater backend: `repeater` (the targets) and `repeaterProtocol`.
public struct RepeaterConfiguration: BackendSection, Hashable {
    public var targets: [RepeaterTarget] = []
    public var tcp = false

    public init() {}

    public static let names = ["repeater", "./backends/repeater"]
    public static let keys = ["repeater", "repeaterProtocol"]

    public init(reading object: JSObject, reader: inout ConfigurationReader, context: SectionContext) {
        switch object["repeater"] {
        case .undefined, .null:
            break
        case .array(let targets):
            for (index, target) in targets.enumerated() {
                guard case .object(let t) = target, let host = reader.string(t["host"], key: "repeater[\(index)].host"),
                    let port = reader.integer(t["port"], key: "repeater[\(index)].port", in: 1...65_535)
                else {
                    reader.problem("repeater[\(index)]", "must be an object like {host: \"10.0.0.2\", port: 8125}")
                    continue
                }
                self.targets.append(RepeaterTarget(host: host, port: port))
            }
        default:
            reader.problem("repeater", "must be an array of {host, port} objects")
        }
        switch object["repeaterProtocol"] {
        case .undefined, .null, .string("udp4"), .string("udp6"): self.tcp = false
        case .string("tcp"): self.tcp = true
        case let value: reader.problem("repeaterProtocol", "must be \"udp4\", \"udp6\" or \"tcp\", got \(value.typeDescription)")
        }
        if self.targets.isEmpty { reader.warning("the repeater backend is on but repeater lists no target") }
    }

    public func describe(into description: inout ConfigurationDescription) {
        let targets = self.targets.map { "{ host: \(description.quote($0.host)), port: \($0.port) }" }
        description.add("repeater", "[" + targets.joined(separator: ", ") + "]")
        description.add("repeaterProtocol", description.quote(self.tcp ? "tcp" : "udp4"))
    }

    public func makeBackend(_ context: BackendContext) -> any MetricsBackend {
        Repeater(
            targets: self.targets, tcp: self.tcp,
            shutdownTimeout: context.configuration.shutdownTimeout, logger: context.logger)
    }
}

public struct RepeaterTarget: Sendable, Hashable {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }
}
