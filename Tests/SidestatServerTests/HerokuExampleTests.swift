//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import Testing

extension EndToEnd {
    /// Examples/heroku-flask as a dyno runs it: `sidestat start -f Procfile.chain` with gunicorn, Flask and
    /// python-statsd from PyPI, Graphite pointed at a listening sink.
    struct HerokuExampleTests {
        @Test("five requests, SIGTERM: the final flush delivers Homepage_hits 5 and nothing is left running")
        func homepageHits() throws {
            let venv = TestPaths.packageRoot.appendingPathComponent(".build/venvs/heroku-flask/bin")
            guard FileManager.default.isExecutableFile(atPath: venv.appendingPathComponent("gunicorn").path) else {
                throw TestFailure("gunicorn is missing: run scripts/test, which installs Examples/heroku-flask/requirements.txt")
            }
            let example = TestPaths.packageRoot.appendingPathComponent("Examples/heroku-flask")
            let directory = TestPaths.temporaryDirectory()
            for file in ["web.py", "Procfile.chain", "statsd-config.js"] {
                try FileManager.default.copyItem(
                    at: example.appendingPathComponent(file), to: directory.appendingPathComponent(file))
            }
            let sink = try LineSink()
            // The example's own config, with free ports for this machine.
            let statsdPort = freePort()
            let config = try String(contentsOf: directory.appendingPathComponent("statsd-config.js"), encoding: .utf8)
                .replacingOccurrences(of: "port: 8125,", with: "port: \(statsdPort), mgmt_port: \(freePort()),")
                .replacingOccurrences(of: "flushInterval: 10000", with: "flushInterval: 60000")
            try config.write(to: directory.appendingPathComponent("statsd-config.js"), atomically: true, encoding: .utf8)
            let webPort = freePort()
            var environment = ProcessInfo.processInfo.environment
            environment["PATH"] = venv.path + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
            environment["PORT"] = String(webPort)
            environment["GRAPHITE_HOST"] = "127.0.0.1"
            environment["GRAPHITE_PORT"] = String(sink.port)
            environment["DYNO"] = "web.1"
            let sidestat = try SidestatProcess(
                arguments: ["start", "-f", "Procfile.chain", "--config", "statsd-config.js"], environment: environment,
                waitForUp: true, workingDirectory: directory)
            #expect(sidestat.udpPort == statsdPort)
            // Wait until gunicorn listens (a connection, not a request: requests count).
            #expect(waitUntil(timeout: 30) { (try? Send.connect(port: webPort)).map { close($0) } != nil })
            for _ in 0..<5 {
                let response = try HTTP.get(port: webPort, path: "/")
                #expect(response.status == 200)
                #expect(response.body == "Hello World!")
            }
            // No wait: on SIGTERM the UDP reader drains what the kernel holds before the final flush.
            let status = sidestat.terminate(timeout: 30)
            let output = sidestat.output
            #expect(status == 143, "\(output)")
            // The example names each dyno's series (graphite: {instance: "path"}).
            #expect(sink.lines.value("stats_counts.web_1.Homepage_hits") == "5", "\(output)")
            #expect(output.contains("statsd.1 | DEBUG: Homepage hits:1|c"), "\(output)")
            #expect(output.contains("web.1    | ") && output.contains("Listening at"), "\(output)")
            let groups = RunnerTests.pids(output)
            #expect(!groups.isEmpty)
            #expect(RunnerTests.survivors(inGroups: groups).isEmpty, "\(RunnerTests.survivors(inGroups: groups))")
        }
    }
}
