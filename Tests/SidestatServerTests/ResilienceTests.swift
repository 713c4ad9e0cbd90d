//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import Testing

extension EndToEnd {
    /// What a child, a file or a local client can do must not take Sidestat down or leak its secrets.
    struct ResilienceTests {
        /// Processes whose command line contains `marker`.
        static func processes(containing marker: String) -> [String] {
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
            return entries.compactMap { entry -> String? in
                guard Int32(entry) != nil,
                    let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline"), !data.isEmpty
                else { return nil }
                let command = String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
                return command.contains(marker) ? "\(entry): \(command)" : nil
            }
        }

        @Test("a child that double-forks a daemon: start stops it, flushes once more and exits within its grace period")
        func doubleFork() throws {
            let sink = try LineSink()
            let directory = TestPaths.temporaryDirectory()
            try testConfig(graphitePort: sink.port, flushInterval: 60_000).write(
                to: directory.appendingPathComponent("s.js"), atomically: true, encoding: .utf8)
            // The daemon holds the output pipe; a second process shows its descriptors.
            try """
            web: setsid sleep 1002 & sleep 1
            probe: ls -l /proc/$$/fd; sleep 30

            """.write(to: directory.appendingPathComponent("Procfile"), atomically: true, encoding: .utf8)
            let started = Date()
            let process = try SidestatProcess(
                arguments: ["start", "--config", "s.js", "-t", "2", "--no-color"], waitForUp: true,
                workingDirectory: directory)
            Send.udp(["forked.n:4|c"], port: process.udpPort)
            let status = process.waitForExit(timeout: 20)
            let elapsed = Date().timeIntervalSince(started)
            #expect(status == 0, "\(process.output)")
            // web exits after 1 s; the others get the 2 s grace period, and a second more at most.
            #expect(elapsed < 1 + 2 + 1.5, "took \(elapsed) s\n\(process.output)")
            #expect(Self.processes(containing: "sleep 1002").isEmpty, "\(Self.processes(containing: "sleep 1002"))")
            #expect(sink.lines.value("stats_counts.forked.n") == "4", "\(process.output)")
            // The children's descriptors: stdin, stdout and stderr only; no socket or epoll of Sidestat's.
            let fds = RunnerTests.lines(process.output, "probe.1").filter { $0.contains(" -> ") }
            #expect(!fds.isEmpty, "\(process.output)")
            #expect(!fds.contains { $0.contains("socket:") || $0.contains("eventpoll") || $0.contains("anon_inode") }, "\(fds)")
        }

        @Test("start killed outright (SIGKILL): each child gets its parent-death signal and stops")
        func parentDeath() throws {
            let directory = TestPaths.temporaryDirectory()
            try testConfig(graphitePort: nil).write(
                to: directory.appendingPathComponent("s.js"), atomically: true, encoding: .utf8)
            try "web: exec sleep 1003\nworker: exec sleep 1004\n".write(
                to: directory.appendingPathComponent("Procfile"), atomically: true, encoding: .utf8)
            let process = try SidestatProcess(
                arguments: ["start", "--config", "s.js", "--no-color"], waitForUp: true, workingDirectory: directory)
            #expect(process.waitForOutput("worker.1 started"))
            #expect(Self.processes(containing: "sleep 1003").count == 1 && Self.processes(containing: "sleep 1004").count == 1)
            process.signal(SIGKILL)
            _ = process.waitForExit()
            #expect(
                waitUntil(timeout: 5) {
                    Self.processes(containing: "sleep 1003").isEmpty && Self.processes(containing: "sleep 1004").isEmpty
                }, "\(Self.processes(containing: "sleep 100"))")
        }

        @Test("a config file nested 10,000 deep stops start-up with exit code 2 and the place, for every command")
        func deepConfig() throws {
            let path = TestPaths.temporaryDirectory().appendingPathComponent("deep.js")
            try ("{ a: " + String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000) + " }")
                .write(to: path, atomically: true, encoding: .utf8)
            for arguments in [["check-config", path.path], ["--config", path.path], ["run", "--config", path.path, "--", "true"]] {
                let (status, output) = try SidestatProcess.run(arguments)
                #expect(status == 2, "\(arguments): \(output)")
                #expect(output.contains("deep.js:1:"), "\(output)")
                #expect(output.contains("nested more than 32 levels deep"), "\(output)")
            }
        }

        @Test("secrets never leave through the management port or check-config, unless asked for")
        func secrets() throws {
            let config = testConfig(
                graphitePort: nil,
                extra: """
                    backends: ["librato", "influxdb", "hostedgraphite"],
                    librato: {user: "u", token: "librato-token-1234", api: "http://127.0.0.1:1"},
                    influxdb: {url: "http://127.0.0.1:1", username: "me", password: "influx-pass-5678"},
                    hostedGraphite: {apiKey: "hg-key-9012", host: "127.0.0.1", port: 1}
                    """)
            let daemon = try SidestatProcess(config: config)
            let shown = try Send.management(["config\n"], port: daemon.managementPort, until: "\u{0}", timeout: 1)
            daemon.terminate()
            #expect(shown.contains("librato > token: ***"), "\(shown)")
            for secret in ["librato-token-1234", "influx-pass-5678", "hg-key-9012"] {
                #expect(!shown.contains(secret), "\(shown)")
            }
            let path = TestPaths.temporaryDirectory().appendingPathComponent("c.js")
            try config.write(to: path, atomically: true, encoding: .utf8)
            let (_, effective) = try SidestatProcess.run(["check-config", path.path])
            #expect(effective.contains("token: \"***\"") && !effective.contains("librato-token-1234"), "\(effective)")
            let (_, revealed) = try SidestatProcess.run(["check-config", "--show-secrets", path.path])
            #expect(revealed.contains("librato-token-1234") && revealed.contains("influx-pass-5678"), "\(revealed)")
        }

        @Test("a key past 1,024 bytes is a bad line; the good lines around it count")
        func longKey() throws {
            let sink = try LineSink()
            let daemon = try SidestatProcess(config: testConfig(graphitePort: sink.port))
            let long = String(repeating: "k", count: 2000)
            Send.udp(["before:1|c\n\(long):5|c\nafter:2|c"], port: daemon.udpPort)
            let flush = try #require(sink.waitForFlush { $0.name == "stats_counts.after" }).lines
            #expect(flush.value("stats_counts.before") == "1")
            #expect(flush.value("stats_counts.statsd.bad_lines_seen") == "1")
            #expect(!flush.contains { $0.name.contains("kkkkkkkk") })
            daemon.terminate()
            #expect(daemon.output.contains("key longer than 1024 bytes (2000)"), "\(daemon.output)")
        }

        @Test("20 MB without a newline on the TCP and management ports: bounded, counted, flushes stay on time")
        func endlessLines() throws {
            let sink = try LineSink()
            let daemon = try SidestatProcess(
                config: testConfig(graphitePort: sink.port, extra: "server: './servers/tcp'"))
            let chunk = [UInt8](repeating: UInt8(ascii: "x"), count: 1 << 20)
            let tcp = try Send.connect(port: daemon.tcpPort)
            let management = try Send.connect(port: daemon.managementPort)
            for _ in 0..<20 {
                for fd in [tcp, management] {
                    var sent = 0
                    while sent < chunk.count {
                        let count = chunk[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
                        guard count > 0 else { break }
                        sent += count
                    }
                }
            }
            _ = Array(":1|c\nafter.long:3|c\n".utf8).withUnsafeBytes { send(tcp, $0.baseAddress, $0.count, 0) }
            _ = Array("\nhealth\n".utf8).withUnsafeBytes { send(management, $0.baseAddress, $0.count, 0) }
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(management, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            shutdown(management, Int32(SHUT_WR))
            let answer = String(decoding: Send.readAll(management), as: UTF8.self)
            close(management)
            close(tcp)
            #expect(answer == "ERROR\nhealth: up\n", "\(answer)")
            let flush = try #require(sink.waitForFlush { $0.name == "stats_counts.after.long" }).lines
            #expect(flush.value("stats_counts.after.long") == "3")
            let bad = sink.lines.filter { $0.name == "stats_counts.statsd.bad_lines_seen" }.reduce(0) { $0 + Int($1.value)! }
            #expect(bad == 1, "\(daemon.output)")
            // Flushes kept their one-second rhythm meanwhile.
            let stamps = Set(sink.lines.filter { $0.name == "stats_counts.statsd.packets_received" }.map(\.timestamp))
            #expect(stamps.count >= 2)
            daemon.terminate()
        }

        @Test("SIGHUP reloads the file: an invalid one is kept out, a valid one's delete options apply at once")
        func hangUpReloads() throws {
            let sink = try LineSink()
            let path = TestPaths.temporaryDirectory().appendingPathComponent("reload.js")
            let base = testConfig(graphitePort: sink.port)
            try base.write(to: path, atomically: true, encoding: .utf8)
            let daemon = try SidestatProcess(arguments: ["--config", path.path])
            Send.udp(["idle.c:1|c"], port: daemon.udpPort)
            _ = try #require(sink.waitForFlush { $0.name == "stats_counts.idle.c" && $0.value == "1" })
            try "{ port: 'x' }".write(to: path, atomically: true, encoding: .utf8)
            daemon.signal(SIGHUP)
            #expect(daemon.waitForOutput("Configuration not reloaded; the running one is kept"), "\(daemon.output)")
            try base.replacingOccurrences(of: "\n}", with: ",\n  deleteCounters: true\n}")
                .write(to: path, atomically: true, encoding: .utf8)
            daemon.signal(SIGHUP)
            #expect(daemon.waitForOutput("config.applied=deleteCounters"), "\(daemon.output)")
            // From the next flush on, the idle counter is no longer sent as 0.
            let connection = sink.connectionCount
            let later = try #require(sink.waitForFlush(at: connection + 1))
            #expect(!later.has("stats_counts.idle.c"), "\(later)")
            #expect(daemon.terminate() == 0)
        }

        @Test("SIGHUP under start stops the processes as SIGTERM does, then the final flush; exit code 129")
        func hangUpUnderStart() throws {
            let sink = try LineSink()
            let directory = TestPaths.temporaryDirectory()
            try testConfig(graphitePort: sink.port, flushInterval: 60_000).write(
                to: directory.appendingPathComponent("s.js"), atomically: true, encoding: .utf8)
            try "web: sleep 30\n".write(to: directory.appendingPathComponent("Procfile"), atomically: true, encoding: .utf8)
            let process = try SidestatProcess(
                arguments: ["start", "--config", "s.js"], waitForUp: true, workingDirectory: directory)
            Send.udp(["hup.n:6|c"], port: process.udpPort)
            _ = try waitUntil(timeout: 10) {
                try Send.management(["counters\n"], port: process.managementPort).contains("hup.n")
            }
            process.signal(SIGHUP)
            #expect(process.waitForExit(timeout: 20) == 129, "\(process.output)")
            #expect(process.output.contains("SIGHUP received"))
            #expect(sink.lines.value("stats_counts.hup.n") == "6", "\(process.output)")
        }

        @Test("the series budget end to end: new keys past it refused and counted as statsd.series_dropped, logged once")
        func seriesBudget() throws {
            let sink = try LineSink()
            let daemon = try SidestatProcess(config: testConfig(graphitePort: sink.port, extra: "seriesBudget: 50"))
            Send.udp(["steady:1|c"], port: daemon.udpPort)
            Send.udp((0..<80).map { "api.user_\($0).hits:1|c" }.chunked(20).map { $0.joined(separator: "\n") }, port: daemon.udpPort)
            Send.udp(["steady:1|c"], port: daemon.udpPort)
            let flush = try #require(sink.waitForFlush { $0.name == "stats_counts.statsd.series_dropped" }).lines
            #expect(flush.value("stats_counts.statsd.series_dropped") == "31", "\(flush)")
            #expect(flush.value("stats_counts.steady") == "2")
            #expect(flush.filter { $0.name.hasPrefix("stats_counts.api.") }.count == 49)
            // The management port tells it too: the total since start in `stats` once a flush counted some.
            let stats = try Send.management(["stats\n"], port: daemon.managementPort)
            #expect(stats.contains("messages.series_dropped: 31\n"), "\(stats)")
            daemon.terminate()
            let logged = daemon.output.components(separatedBy: "Series budget reached (50 counter keys)").count - 1
            #expect(logged == 1, "\(daemon.output)")
            #expect(daemon.output.contains("busiest prefixes: api.user_0 (1)") || daemon.output.contains("busiest prefixes: api."), "\(daemon.output)")
        }

        @Test("at a listener's bound, a new connection takes the place of the one idle the longest")
        func connectionBound() throws {
            let daemon = try SidestatProcess(config: testConfig(graphitePort: nil))
            var open: [Int32] = []
            defer { for fd in open { close(fd) } }
            for _ in 0..<64 { open.append(try Send.connect(port: daemon.managementPort)) }
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            for fd in open { setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size)) }
            // Each of the 64 is served: the first answers, and is then the one used last.
            let first = open[0]
            _ = Array("health\n".utf8).withUnsafeBytes { send(first, $0.baseAddress, $0.count, 0) }
            var buffer = [UInt8](repeating: 0, count: 64)
            #expect(recv(first, &buffer, buffer.count, 0) == 11)  // health: up\n
            // The 65th is served; the second, idle the longest, is closed by the server.
            #expect(try Send.management(["health\n"], port: daemon.managementPort, until: "\n") == "health: up\n")
            #expect(recv(open[1], &buffer, buffer.count, 0) == 0)
            #expect(daemon.waitForOutput("At the connection bound: the connection idle the longest is closed for a new one"))
            // The first still works.
            _ = Array("health\n".utf8).withUnsafeBytes { send(first, $0.baseAddress, $0.count, 0) }
            #expect(recv(first, &buffer, buffer.count, 0) == 11)
            #expect(daemon.terminate() == 0)
        }

        @Test("a TCP client silent past tcpIdleTimeout is closed; what it sent counts, and a new connection works")
        func tcpIdleTimeout() throws {
            let sink = try LineSink()
            let daemon = try SidestatProcess(
                config: testConfig(graphitePort: sink.port, extra: "server: './servers/tcp', tcpIdleTimeout: 1"))
            let idle = try Send.connect(port: daemon.tcpPort)
            defer { close(idle) }
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(idle, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            _ = Array("before.idle:2|c\n".utf8).withUnsafeBytes { send(idle, $0.baseAddress, $0.count, 0) }
            // The server closes its side: the client reads the end of the stream (not its 10 s timeout).
            let started = Date()
            var byte: UInt8 = 0
            #expect(recv(idle, &byte, 1, 0) == 0)
            #expect(Date().timeIntervalSince(started) < 8)
            #expect(daemon.waitForOutput("Closing a connection idle for 1 s (tcpIdleTimeout)"))
            try Send.tcp([Array("after.idle:3|c\n".utf8)], port: daemon.tcpPort)
            let before = try #require(sink.waitForFlush { $0.name == "stats_counts.before.idle" }).lines
            #expect(before.value("stats_counts.before.idle") == "2")
            #expect(sink.waitForFlush { $0.name == "stats_counts.after.idle" && $0.value == "3" } != nil)
            #expect(daemon.terminate() == 0)
        }

        @Test("a slow reader that half-closes (nc -q1) gets the whole /metrics page and the whole counters dump")
        func slowReaders() throws {
            let daemon = try SidestatProcess(
                config: testConfig(graphitePort: nil, extra: "backends: [\"prometheus\"], prometheus: {port: \(freePort())}"))
            // 40,000 counters: megabytes of exposition and JSON, far more than the socket buffers between us hold.
            let lines = (0..<40_000).map { "slow.reader.counter_with_a_long_name_\($0):1|c" }
            Send.udp(lines.chunked(25).map { $0.joined(separator: "\n") }, port: daemon.udpPort)
            var page = 0
            #expect(
                try waitUntil(timeout: 20) {
                    page = try HTTP.get(port: daemon.httpPort, path: "/metrics").body.utf8.count
                    return page > 1_000_000
                }, "the /metrics page stayed at \(page) bytes")

            let scraper = try Send.connect(port: daemon.httpPort, receiveBuffer: 4096)
            defer { close(scraper) }
            _ = Array("GET /metrics HTTP/1.0\r\n\r\n".utf8).withUnsafeBytes { send(scraper, $0.baseAddress, $0.count, 0) }
            shutdown(scraper, Int32(SHUT_WR))
            let response = String(decoding: Send.readSlowly(scraper), as: UTF8.self)
            let head = try #require(response.range(of: "\r\n\r\n"), "\(response.prefix(200))")
            let length = response[..<head.lowerBound].split(separator: "\r\n")
                .first { $0.lowercased().hasPrefix("content-length:") }
                .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) }
            #expect(length ?? 0 > 1_000_000)
            #expect(response[head.upperBound...].utf8.count == length, "the body was cut")

            let client = try Send.connect(port: daemon.managementPort, receiveBuffer: 4096)
            defer { close(client) }
            _ = Array("counters\n".utf8).withUnsafeBytes { send(client, $0.baseAddress, $0.count, 0) }
            shutdown(client, Int32(SHUT_WR))
            let dump = String(decoding: Send.readSlowly(client), as: UTF8.self)
            #expect(dump.utf8.count > 1_000_000)
            #expect(dump.hasSuffix("}\nEND\n\n"), "the dump was cut at \(dump.utf8.count) bytes")
            #expect(daemon.terminate() == 0)
        }
    }
}
