//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatConfiguration

/// statsd's console backend: the `console` object.
public struct ConsoleConfiguration: BackendSection, Hashable {
    public var prettyPrint = false

    public init() {}

    public static let names = ["console", "./backends/console", "./backends/console.js"]
    public static let keys = ["console"]

    public init(reading object: JSObject, reader: inout ConfigurationReader, context: SectionContext) {
        let console = reader.section(object, "console", example: "{prettyprint: false}")
        self.prettyPrint = reader.bool(console["prettyprint"], key: "console.prettyprint") ?? false
    }

    public func describe(into description: inout ConfigurationDescription) {
        description.add("console", "{ prettyprint: \(self.prettyPrint) }")
    }

    public func makeBackend(_ context: BackendContext) -> any MetricsBackend {
        ConsoleBackend(output: context.output, prettyPrint: self.prettyPrint, startupTime: context.startupTime)
    }
}
