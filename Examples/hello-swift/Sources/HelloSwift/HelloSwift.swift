//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import Hummingbird
import Metrics
import SidestatClient

/// "Hello World!" on `$PORT`, and a `Homepage hits` counter sent to the statsd server that `sidestat start` names in
/// `STATSD_HOST` and `STATSD_PORT`.
@main
struct HelloSwift {
    static func main() async throws {
        let statsd = SidestatClient()
        MetricsSystem.bootstrap(statsd)

        let homepageHits = Counter(label: "Homepage hits")
        let router = Router()
        router.get("/") { _, _ -> String in
            homepageHits.increment()
            return "Hello World!"
        }
        let port = ProcessInfo.processInfo.environment["PORT"].flatMap(Int.init) ?? 5000
        let app = Application(router: router, configuration: .init(address: .hostname("0.0.0.0", port: port)))
        // Runs until SIGTERM or SIGINT (what `sidestat start` and a dyno restart send), then stops serving.
        try await app.runService()
        // Sends what is batched before the process exits.
        statsd.shutdown()
    }
}
