//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import Testing

extension EndToEnd {
    /// What a statsd user meets in the first ten minutes: the management port with real clients, restarts, statsd's
    /// start-up lines and names, and configuration mistakes caught.
    struct DropInTests {
        /// Connects to the management port, writes `request`, half-closes (as `nc -q1` and `nc -N` do) and reads the
        /// answer until the server closes.
        static func halfClosing(_ request: String, port: Int) throws -> String {
            let fd = try Send.connect(port: port)
            defer { close(fd) }
            _ = Array(request.utf8).withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            shutdown(fd, Int32(SHUT_WR))
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            return String(decoding: Send.readAll(fd), as: UTF8.self)
        }

        static func file(_ text: String, name: String = "config.js") throws -> String {
            let path = TestPaths.temporaryDirectory().appendingPathComponent(name)
            try text.write(to: path, atomically: true, encoding: .utf8)
            return path.path
        }

        @Test("the management port answers a client that half-closes after its command, with or without a newline")
        func managementHalfClose() throws {
            let daemon = try SidestatProcess(config: testConfig(graphitePort: nil))
            let stats = try Self.halfClosing("stats\n", port: daemon.managementPort)
            #expect(stats.hasPrefix("uptime: ") && stats.hasSuffix("END\n\n"), "\(stats)")
            #expect(try Self.halfClosing("health", port: daemon.managementPort) == "health: up\n")
            #expect(
                try Self.halfClosing("help\n", port: daemon.managementPort)
                    == "Commands: stats, counters, timers, gauges, sets, delcounters, deltimers, delgauges, delsets, "
                    + "health, config, quit\n\n")
            daemon.terminate()
        }

        @Test("a client that keeps the connection gets an answer to each command on it, as plain nc does")
        func managementKeepsConnection() throws {
            let daemon = try SidestatProcess(config: testConfig(graphitePort: nil))
            let fd = try Send.connect(port: daemon.managementPort)
            defer { close(fd) }
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            func ask(_ command: String, until end: String) -> String {
                _ = Array(command.utf8).withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
                var received: [UInt8] = []
                var buffer = [UInt8](repeating: 0, count: 65536)
                while !String(decoding: received, as: UTF8.self).hasSuffix(end) {
                    let count = recv(fd, &buffer, buffer.count, 0)
                    if count <= 0 { break }
                    received += buffer[0..<count]
                }
                return String(decoding: received, as: UTF8.self)
            }
            #expect(ask("health\n", until: "\n") == "health: up\n")
            #expect(ask("gauges\n", until: "END\n\n").hasSuffix("END\n\n"))
            #expect(ask("health down\n", until: "\n") == "health: down\n")
            daemon.terminate()
        }

        @Test("a restart right after a client used the management port binds at once")
        func restartAfterManagementUse() throws {
            let config = testConfig(graphitePort: nil)
            let first = try SidestatProcess(config: config)
            // `quit`: the server closes first, so its side of the connection is the one left in TIME-WAIT.
            _ = try Send.management(["stats\n", "quit\n"], port: first.managementPort, until: "\u{0}", timeout: 1)
            #expect(first.terminate() == 0)
            let start = Date()
            let second = try SidestatProcess(config: config)
            #expect(Date().timeIntervalSince(start) < 1, "\(second.output)")
            #expect(second.managementPort == first.managementPort)
            #expect(second.terminate() == 0)
        }

        @Test("a port in use: one line naming the listener, the address and the port; exit code 2")
        func managementPortInUse() throws {
            let first = try SidestatProcess(config: testConfig(graphitePort: nil))
            let path = try Self.file("{ port: \(freePort()), mgmt_port: \(first.managementPort) }")
            let (status, output) = try SidestatProcess.run(["--config", path])
            #expect(status == 2)
            #expect(
                output.hasSuffix(
                    "sidestat: cannot listen on the management port 127.0.0.1:\(first.managementPort): address already "
                        + "in use (is another statsd or Sidestat running?)\n"), "\(output)")
            first.terminate()
        }

        @Test("start-up: statsd's reading line, server is up, then where each backend sends")
        func startupLines() throws {
            let sink = try LineSink()
            let path = try Self.file(testConfig(graphitePort: sink.port, extra: "backends: ['./backends/graphite', './backends/console']"))
            let daemon = try SidestatProcess(arguments: [path])
            let lines = daemon.output.split(separator: "\n").map(String.init)
            // node's util.log: `29 Nov 18:57:52 - [1234] reading config file: PATH`, as statsd prints it.
            #expect(
                lines.first?.range(
                    of: #"^\d{1,2} \w{3} \d\d:\d\d:\d\d - \[\#(daemon.process.processIdentifier)\] reading config file: "#
                        + NSRegularExpression.escapedPattern(for: path) + "$", options: .regularExpression) != nil,
                "\(lines)")
            #expect(lines.count >= 4 && lines[1].contains("INFO: server is up"), "\(lines)")
            #expect(lines[2].hasSuffix("INFO: backend graphite: carbon plaintext to 127.0.0.1:\(sink.port)"), "\(lines)")
            #expect(lines[3].hasSuffix("INFO: backend console: each flush printed to standard output"), "\(lines)")
            // statsd starts graphiteStats.last_exception at 0.
            let flush = try #require(sink.waitForFlush { $0.name.hasSuffix("graphiteStats.last_exception") }).lines
            #expect(flush.value("stats.statsd.graphiteStats.last_exception") == "0")
            daemon.terminate()

            let defaults = try SidestatProcess(arguments: [])
            #expect(defaults.output.contains("reading config file: none given, using the embedded default"))
            #expect(!defaults.output.contains("WARNING"), "\(defaults.output)")
            defaults.terminate()
        }

        @Test("configuration mistakes: the nearest key suggested, nothing sent said so, unsupported keys named")
        func configurationWarnings() throws {
            let path = try Self.file(
                """
                {
                  port: \(freePort()), mgmt_port: \(freePort()),
                  graphitehost: "127.0.0.1", backend: ["./backends/graphite"],
                  automaticConfigReload: true, debugInterval: 10000
                }
                """)
            let daemon = try SidestatProcess(arguments: ["--config", path])
            let output = daemon.output
            #expect(output.contains(#"unknown configuration key "graphitehost" is ignored (did you mean "graphiteHost"?)"#), "\(output)")
            #expect(output.contains(#"unknown configuration key "backend" is ignored (did you mean "backends"?)"#), "\(output)")
            #expect(output.contains("automaticConfigReload is not supported and is ignored"), "\(output)")
            #expect(output.contains("debugInterval is not supported and is ignored"), "\(output)")
            #expect(output.contains("backend graphite: no graphiteHost: each flush is computed and sent nowhere"), "\(output)")
            #expect(output.contains("WARNING: No backend sends the metrics anywhere"), "\(output)")
            daemon.terminate()
            let (status, effective) = try SidestatProcess.run(["check-config", path])
            #expect(status == 0)
            #expect(!effective.contains("automaticConfigReload:"), "\(effective)")
        }

        @Test(
            "configuration errors: percentThreshold 0 or false, and syntax errors as FILE:LINE:COLUMN",
            arguments: [
                ("{ percentThreshold: 0 }", ": percentThreshold: must be above -100 and at most 100, and not 0, got 0"),
                ("{ percentThreshold: false }", ": percentThreshold: must be a number, got the boolean false"),
                ("{\n  port: 8125,\n  flushInterval: 1000\n  graphiteHost: 'x'\n}", "config.js:4:3: expected"),
            ])
        func configurationErrors(source: String, message: String) throws {
            let path = try Self.file(source)
            let (status, output) = try SidestatProcess.run(["check-config", path])
            #expect(status == 2)
            #expect(output.contains(message), "\(output)")
        }

        @Test("a string built from an unset environment variable is named in a warning")
        func undefinedInString() throws {
            let path = try Self.file(
                """
                { graphite: { legacyNamespace: false, globalPrefix: process.env.SIDESTAT_TEST_UNSET_KEY + ".statsd" },
                  graphiteHost: process.env.SIDESTAT_TEST_UNSET_HOST || "127.0.0.1" }
                """)
            let (status, output) = try SidestatProcess.run(["check-config", path])
            #expect(status == 0)
            #expect(
                output.contains(
                    #"graphite.globalPrefix is "undefined.statsd": it was built from an environment variable that is "#
                        + "not set (process.env.SIDESTAT_TEST_UNSET_KEY, process.env.SIDESTAT_TEST_UNSET_HOST)"),
                "\(output)")
            #expect(!output.contains("graphiteHost is"), "\(output)")
        }

        @Test("with DYNO set and no graphite.instance: statsd's names in real carbon, and one warning")
        func dynoKeepsStatsdNames() throws {
            let carbon = try CarbonCache()
            defer { carbon.stop() }
            let path = try Self.file(testConfig(graphitePort: carbon.linePort))
            var environment = ProcessInfo.processInfo.environment
            environment["DYNO"] = "web.1"
            let daemon = try SidestatProcess(arguments: ["--config", path], environment: environment)
            Send.udp(["hits:3|c"], port: daemon.udpPort)
            #expect(carbon.waitFor("stats_counts.hits") { $0 == 3 }.contains { $0.1 == 3 }, "\(daemon.output)")
            #expect(daemon.terminate() == 0)
            #expect(!FileManager.default.fileExists(atPath: carbon.directory.appendingPathComponent("storage/whisper/stats_counts/web_1").path))
            let warnings = daemon.output.components(separatedBy: "DYNO is set (web.1) but Graphite names carry no instance").count - 1
            #expect(warnings == 1, "\(daemon.output)")
        }

        @Test("an unreachable upstream: one short sentence, logged once rather than at every flush")
        func readableUpstreamErrors() throws {
            let sink = try LineSink()
            sink.stop()
            let daemon = try SidestatProcess(config: testConfig(graphitePort: sink.port, flushInterval: 200))
            // Wait until the retry buffer holds several failed flushes (each is about 700 bytes).
            func queuedBytes() -> Int {
                let stats = (try? Send.management(["stats\n"], port: daemon.managementPort)) ?? ""
                return stats.split(separator: "\n").first { $0.hasPrefix("graphite.queued_bytes: ") }
                    .flatMap { Int($0.split(separator: " ")[1]) } ?? 0
            }
            #expect(waitUntil(timeout: 10) { queuedBytes() > 3000 })
            #expect(daemon.terminate() == 0)
            let warnings = daemon.output.split(separator: "\n").filter { $0.contains("WARNING: Flush failed") }
            #expect(warnings.count == 1, "\(daemon.output)")
            #expect(warnings.first?.contains("error=graphite 127.0.0.1:\(sink.port): connection refused") == true, "\(warnings)")
        }

        @Test("sidestat --version and sidestat version")
        func version() throws {
            for arguments in [["--version"], ["version"]] {
                let (status, output) = try SidestatProcess.run(arguments)
                #expect(status == 0)
                #expect(output.range(of: #"^sidestat \d+\.\d+\.\d+\n$"#, options: .regularExpression) != nil, "\(output)")
            }
        }
    }
}
