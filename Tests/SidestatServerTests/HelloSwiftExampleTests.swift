//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import Testing

extension EndToEnd {
    /// Examples/hello-swift as its README runs it: `sidestat start -f Procfile` with the Hummingbird app, which
    /// reports through swift-metrics and SidestatClient to the address `sidestat start` gives it.
    struct HelloSwiftExampleTests {
        @Test("Hummingbird + SidestatClient: requests, then SIGTERM at once; the final flush has every homepage hit")
        func homepageHits() throws {
            let example = TestPaths.packageRoot.appendingPathComponent("Examples/hello-swift")
            let binary = example.appendingPathComponent(".build/release/HelloSwift")
            guard FileManager.default.isExecutableFile(atPath: binary.path) else {
                throw TestFailure("\(binary.path) is missing: run scripts/test, which builds Examples/hello-swift")
            }
            let sink = try LineSink()
            let config = TestPaths.temporaryDirectory().appendingPathComponent("config.js")
            try testConfig(graphitePort: sink.port, flushInterval: 60_000).write(to: config, atomically: true, encoding: .utf8)
            let webPort = freePort()
            var environment = ProcessInfo.processInfo.environment
            environment["PORT"] = String(webPort)
            let sidestat = try SidestatProcess(
                arguments: ["start", "-f", "Procfile", "--config", config.path], environment: environment,
                waitForUp: true, workingDirectory: example)
            #expect(waitUntil(timeout: 30) { (try? Send.connect(port: webPort)).map { close($0) } != nil })
            for _ in 0..<7 {
                let response = try HTTP.request("GET", port: webPort, path: "/", headers: ["Connection: close"])
                #expect(response.status == 200)
                #expect(response.body == "Hello World!")
            }
            // At once: the last hits are still in the client's batch, and reach Sidestat only through its shutdown.
            let status = sidestat.terminate(timeout: 30)
            let output = sidestat.output
            #expect(status == 0 || status == 143, "\(output)")
            // Summed over flushes, should a slow machine see an interval end on the way.
            let hits = sink.values("stats_counts.Homepage_hits").compactMap(Int.init).reduce(0, +)
            #expect(hits == 7, "\(output)")
            #expect(sink.lines.value("stats_counts.statsd.bad_lines_seen") == "0")
            #expect(output.contains("web.1    | ") && output.contains("Server started and listening on 0.0.0.0:\(webPort)"), "\(output)")
            let groups = RunnerTests.pids(output)
            #expect(!groups.isEmpty)
            #expect(RunnerTests.survivors(inGroups: groups).isEmpty, "\(RunnerTests.survivors(inGroups: groups))")
        }
    }
}
