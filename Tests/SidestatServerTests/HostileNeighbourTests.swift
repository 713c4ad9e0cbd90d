//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import Testing

extension EndToEnd {
    /// What a web page, a process holding idle sockets, or a careless config can do to the local ports: one test per
    /// item of issue 23, each against a real `sidestat` (docs/reliability.md's threat model).
    struct HostileNeighbourTests {
        /// Connects, writes `bytes` in one piece, and reads until the server closes (or `timeout`).
        static func exchange(_ bytes: [UInt8], port: Int, timeout: Int = 5) throws -> (reply: String, closed: Bool) {
            let fd = try Send.connect(port: port)
            defer { close(fd) }
            var limit = timeval(tv_sec: timeout, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
            _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            var received: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let count = recv(fd, &buffer, buffer.count, 0)
                if count == 0 { return (String(decoding: received, as: UTF8.self), true) }
                if count < 0 { return (String(decoding: received, as: UTF8.self), false) }
                received += buffer[0..<count]
            }
        }

        static func health(_ daemon: SidestatProcess) throws -> String {
            try Send.management(["health\n"], port: daemon.managementPort, until: "\n", timeout: 5)
        }

        /// Whether the server closes `fd` (reads its end) within `seconds`.
        static func closedByServer(_ fd: Int32, within seconds: Int) -> Bool {
            var limit = timeval(tv_sec: seconds, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
            var byte: UInt8 = 0
            return recv(fd, &byte, 1, 0) == 0
        }

        @Test("1. a web page's POST to the management port runs nothing: the connection closes, health stays up")
        func webPageRunsNothing() throws {
            let daemon = try SidestatProcess(config: testConfig(graphitePort: nil, extra: "httpPort: 0"))
            // What Chromium sends for fetch("http://127.0.0.1:8126/", {method: "POST", mode: "no-cors", body: ...}).
            let request = "POST / HTTP/1.1\r\nHost: 127.0.0.1:\(daemon.managementPort)\r\nConnection: keep-alive\r\n"
                + "Content-Length: 12\r\nContent-Type: text/plain;charset=UTF-8\r\nOrigin: http://127.0.0.2:8000\r\n"
                + "Accept: */*\r\n\r\nhealth down\n"
            let (reply, closed) = try Self.exchange(Array(request.utf8), port: daemon.managementPort)
            #expect(closed)
            #expect(reply.isEmpty, "nothing is answered: \(reply)")
            #expect(try Self.health(daemon) == "health: up\n")
            #expect(try HTTP.get(port: daemon.httpPort, path: "/healthz").status == 200)
            // statsd's line protocol is unchanged otherwise.
            #expect(try Send.management(["stats\nhealth\n"], port: daemon.managementPort, until: "health: up\n").contains("uptime:"))
            #expect(daemon.terminate() == 0)
        }

        @Test("2. idle connections lock no one out: the one idle the longest makes room; idle ones are closed in time")
        func idleConnections() throws {
            let dashboardPort = freePort()
            let daemon = try SidestatProcess(
                config: testConfig(
                    graphitePort: nil,
                    extra: "httpPort: 0, dashboard: {port: \(dashboardPort)}, managementIdleTimeout: 2, httpRequestTimeout: 2"))
            var idle: [Int32] = []
            defer { for fd in idle { close(fd) } }
            for port in [daemon.managementPort, daemon.httpPort, dashboardPort] {
                for _ in 0..<100 { idle.append(try Send.connect(port: port)) }
            }
            #expect(try Self.health(daemon) == "health: up\n")
            #expect(try HTTP.get(port: daemon.httpPort, path: "/healthz").status == 200)
            #expect(try HTTP.get(port: dashboardPort, path: "/").status == 200)
            // Idle connections do not stay: the HTTP ports close one that sent no whole request within
            // httpRequestTimeout, the management port one silent for managementIdleTimeout.
            for port in [daemon.managementPort, daemon.httpPort, dashboardPort] {
                let fd = try Send.connect(port: port)
                defer { close(fd) }
                #expect(Self.closedByServer(fd, within: 8), "port \(port)")
            }
            #expect(daemon.terminate() == 0)
        }

        @Test("3. DNS rebinding: another Host is refused (421); only GET and HEAD; one 400; the dashboard's headers")
        func dnsRebinding() throws {
            let dashboardPort = freePort()
            let daemon = try SidestatProcess(
                config: testConfig(
                    graphitePort: nil,
                    extra: """
                        backends: ['prometheus'], httpPort: 0, httpAllowedHosts: ['metrics.internal'],
                        dashboard: {port: \(dashboardPort)}
                        """))
            let port = daemon.httpPort
            for host in ["evil.example.com:\(port)", "evil.example.com", "192.168.1.7:\(port)", "localhost.evil.com"] {
                let response = try HTTP.request("GET", port: port, path: "/metrics", host: host)
                #expect(response.status == 421, "\(host): \(response.status)")
                #expect(!response.body.contains("# TYPE"))
                #expect(try HTTP.request("GET", port: dashboardPort, path: "/api/keys", host: host).status == 421)
            }
            for host in ["127.0.0.1:\(port)", "localhost:\(port)", "LOCALHOST", "127.0.0.5", "[::1]:\(port)", "metrics.internal:\(port)", "app.localhost", ""] {
                #expect(try HTTP.request("GET", port: port, path: "/healthz", host: host).status == 200, "\(host)")
            }
            for method in ["DELETE", "TRACE", "OPTIONS", "POST", "PUT"] {
                let response = try HTTP.request(method, port: dashboardPort, path: "/")
                #expect(response.status == 405, "\(method)")
                #expect(response.headers["allow"] == "GET, HEAD")
                #expect(!response.body.contains("<html"))
            }
            let head = try HTTP.request("HEAD", port: port, path: "/healthz")
            #expect(head.status == 200 && head.body.isEmpty && head.headers["content-length"] == "3")
            // A malformed request: one 400, then the connection closes.
            for garbage in ["GET /\r\n\r\n", "GARBAGE\r\n\r\n", "GET / HTTP/1.1\r\nbad header\r\n\r\n"] {
                let (reply, closed) = try Self.exchange(Array(garbage.utf8), port: dashboardPort)
                #expect(reply.components(separatedBy: "HTTP/1.1 400").count - 1 == 1, "\(garbage.debugDescription): \(reply)")
                #expect(closed)
            }
            // The dashboard: nothing inline, a strict policy, no sniffing, no framing.
            let page = try HTTP.get(port: dashboardPort, path: "/")
            #expect(page.headers["content-security-policy"]?.contains("default-src 'self'") == true, "\(page.headers)")
            #expect(page.headers["x-content-type-options"] == "nosniff")
            #expect(page.headers["x-frame-options"] == "DENY")
            #expect(!page.body.contains("<script>") && !page.body.contains("<style>") && !page.body.contains("style="))
            #expect(try HTTP.get(port: dashboardPort, path: "/dashboard.js").headers["content-type"]?.hasPrefix("text/javascript") == true)
            #expect(try HTTP.get(port: dashboardPort, path: "/dashboard.css").status == 200)
            #expect(daemon.terminate() == 0)
        }

        /// CPU seconds (user + system) a process has used.
        static func cpuSeconds(_ pid: Int32) -> Double {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return 0 }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return ((Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0)) / Double(sysconf(Int32(_SC_CLK_TCK)))
        }

        @Test("4. out of descriptors (ulimit -n 64, 80 clients): no spinning, logged once, health answers")
        func descriptorsRunOut() throws {
            let config = try writeConfig(
                testConfig(graphitePort: nil, extra: "server: './servers/tcp', httpPort: 0"))
            let daemon = try SidestatProcess(
                arguments: ["-c", "ulimit -n 64 && exec \(TestPaths.sidestat) --config \(config)"], executable: "/bin/sh")
            var clients: [Int32] = []
            defer { for fd in clients { close(fd) } }
            for _ in 0..<80 { clients.append(try Send.connect(port: daemon.tcpPort)) }
            let pid = daemon.process.processIdentifier
            // Let the accept loops meet the limit, then measure a while of it.
            #expect(daemon.waitForOutput("Cannot accept a connection"))
            let start = Self.cpuSeconds(pid)
            let clock = Date()
            Thread.sleep(forTimeInterval: 2)  // the window the CPU is measured over, not a wait for an event
            let used = (Self.cpuSeconds(pid) - start) / Date().timeIntervalSince(clock)
            #expect(used < 0.3, "the server used \(used) of a core while out of descriptors")
            // The management port and /healthz still answer: idle connections make room.
            #expect(try waitUntil(timeout: 10) { (try? Self.health(daemon)) == "health: up\n" })
            #expect(try waitUntil(timeout: 10) { (try? HTTP.get(port: daemon.httpPort, path: "/healthz").status) == 200 })
            #expect(daemon.output.components(separatedBy: "Cannot accept a connection").count - 1 <= 3, "logged once per listener")
            for fd in clients { close(fd) }
            clients = []
            #expect(try Self.health(daemon) == "health: up\n")
            #expect(daemon.terminate() == 0)
        }

        @Test("5. an empty socket path or TCP address stops start-up with exit code 2 and the key, never a crash")
        func emptySocketOrAddress() throws {
            for (extra, key) in [
                ("socket: ''", "socket"), ("servers: [{server: './servers/tcp', address: ''}]", "servers[0].address"),
                ("servers: [{server: './servers/unixgram', socket: ''}]", "servers[0].socket"),
            ] {
                let config = try writeConfig(testConfig(graphitePort: nil, extra: extra))
                for command in [["check-config", config], ["--config", config]] {
                    let (status, output) = try SidestatProcess.run(command)
                    #expect(status == 2, "\(command) \(extra): \(output)")
                    #expect(output.contains("\(key): must not be empty"), "\(output)")
                }
            }
        }

        @Test("6. a management line over 4 KiB is answered ERROR and not run")
        func longManagementLine() throws {
            let daemon = try SidestatProcess(config: testConfig(graphitePort: nil))
            let line = "health down" + String(repeating: " ", count: 5000) + "\n"
            let reply = try Send.management([line, "health\n"], port: daemon.managementPort, until: "health: up\n")
            #expect(reply == "ERROR\nhealth: up\n", "\(reply)")
            #expect(daemon.terminate() == 0)
        }

        @Test("7. socket_mod given as a string is octal, as node's fs.chmod reads it")
        func socketModOctal() throws {
            let directory = TestPaths.temporaryDirectory()
            let stream = directory.appendingPathComponent("s.sock").path
            let datagram = directory.appendingPathComponent("d.sock").path
            let daemon = try SidestatProcess(
                config: testConfig(
                    graphitePort: nil,
                    extra: """
                        servers: [{server: './servers/tcp', socket: '\(stream)', socket_mod: '0666'},
                                  {server: './servers/unixgram', socket: '\(datagram)', socket_mod: '640'}]
                        """))
            for (path, mode) in [(stream, 0o666), (datagram, 0o640)] {
                let attributes = try FileManager.default.attributesOfItem(atPath: path)
                #expect((attributes[.posixPermissions] as? Int) == mode, "\(path): \(String((attributes[.posixPermissions] as? Int) ?? 0, radix: 8))")
            }
            #expect(daemon.terminate() == 0)
            let bad = try writeConfig(testConfig(graphitePort: nil, extra: "socket: '/tmp/x.sock', socket_mod: '0999'"))
            let (status, output) = try SidestatProcess.run(["check-config", bad])
            #expect(status == 2 && output.contains("socket_mod: must be a file mode"), "\(output)")
        }

        @Test("8. httpPort and prometheus.port: /metrics where the file says, and every log line names the real port")
        func httpPortAndPrometheusPort() throws {
            let metricsPort = freePort()
            let both = try SidestatProcess(
                config: testConfig(graphitePort: nil, extra: "backends: ['prometheus'], httpPort: 0, prometheus: {port: \(metricsPort)}"))
            #expect(both.httpPort > 0)
            #expect(try waitUntil(timeout: 10) { try HTTP.get(port: metricsPort, path: "/metrics").body.contains("# TYPE") })
            #expect(try HTTP.get(port: both.httpPort, path: "/healthz").status == 200)
            #expect(both.output.contains("backend prometheus: scraped at http://127.0.0.1:\(metricsPort)/metrics"), "\(both.output)")
            #expect(both.terminate() == 0)
            // httpPort 0 alone: the log names the port it got, never 0.
            let zero = try SidestatProcess(config: testConfig(graphitePort: nil, extra: "backends: ['prometheus'], httpPort: 0"))
            #expect(zero.output.contains("scraped at http://127.0.0.1:\(zero.httpPort)/metrics"), "\(zero.output)")
            #expect(!zero.output.contains(":0/metrics"))
            #expect(try waitUntil(timeout: 10) { try HTTP.get(port: zero.httpPort, path: "/metrics").body.contains("# TYPE") })
            #expect(zero.terminate() == 0)
        }

        @Test("9. the dashboard: one row per key and type, values exact as Doubles")
        func dashboardRowsAndValues() throws {
            let dashboardPort = freePort()
            let daemon = try SidestatProcess(
                config: testConfig(graphitePort: nil, extra: "dashboard: {port: \(dashboardPort)}"))
            Send.udp(["multi:3|c\nmulti:7|g\nmulti:12|ms\nbig:16777217|g\nwhen:1796649065|g"], port: daemon.udpPort)
            var keys: [[String: Any]] = []
            #expect(
                try waitUntil(timeout: 10) {
                    let body = try HTTP.get(port: dashboardPort, path: "/api/keys?q=&points=1").body
                    keys = ((HTTP.json(body) as? [String: Any])?["keys"] as? [[String: Any]]) ?? []
                    return keys.filter { $0["name"] as? String == "multi" }.count == 3
                })
            let multi = keys.filter { $0["name"] as? String == "multi" }
            #expect(Set(multi.compactMap { $0["kind"] as? String }) == ["counter", "gauge", "timer"])
            #expect(number(multi.first { $0["kind"] as? String == "gauge" }?["last"]) == 7)
            #expect(number(multi.first { $0["kind"] as? String == "timer" }?["last"]) == 12)
            #expect(number(keys.first { $0["name"] as? String == "big" }?["last"]) == 16_777_217)
            #expect(number(keys.first { $0["name"] as? String == "when" }?["last"]) == 1_796_649_065)
            let gauge = try HTTP.get(port: dashboardPort, path: "/api/series?key=multi&kind=gauge").body
            #expect(gauge.contains("\"kind\":\"gauge\"") && gauge.contains("7"), "\(gauge)")
            #expect(daemon.terminate() == 0)
        }

        @Test("10. a prefix from the environment cannot inject Graphite lines: prefixes and suffixes are cleaned")
        func prefixInjection() throws {
            let sink = try LineSink()
            let config = try writeConfig(
                testConfig(
                    graphitePort: sink.port,
                    extra: "graphite: {globalPrefix: process.env.EVIL_PREFIX, globalSuffix: process.env.EVIL_PREFIX}, prefixStats: process.env.EVIL_PREFIX"))
            var environment = ProcessInfo.processInfo.environment
            environment["EVIL_PREFIX"] = "app\nevil.injected 777 0\nstats"
            let daemon = try SidestatProcess(arguments: ["--config", config], environment: environment)
            Send.udp(["hits:1|c"], port: daemon.udpPort)
            let flush = try #require(sink.waitForFlush { $0.name.contains("hits") })
            #expect(!flush.lines.contains { $0.name.hasPrefix("evil") || $0.value == "777" }, "\(flush.lines)")
            #expect(flush.lines.allSatisfy { !$0.name.contains(" ") })
            #expect(daemon.output.contains("graphite.globalPrefix \"app\\nevil.injected 777 0\\nstats\" holds characters"), "\(daemon.output)")
            #expect(daemon.terminate() == 0)
        }

        @Test("11. 80,000 unknown keys: 20 named, the rest counted, in linear time")
        func unknownKeys() throws {
            let keys = (0..<80_000).map { "k\($0): 1" }.joined(separator: ",\n")
            let config = try writeConfig("{\n" + keys + "\n}\n")
            let started = Date()
            let (status, output) = try SidestatProcess.run(["check-config", config], timeout: 60)
            let elapsed = Date().timeIntervalSince(started)
            #expect(status == 0)
            #expect(output.components(separatedBy: "unknown configuration key \"").count - 1 == 20)
            #expect(output.contains("79980 more unknown configuration keys are ignored"), "\(output.suffix(300))")
            // A quadratic check took 6 to 10 s for 40,000 keys; a linear one takes well under a second for twice that.
            #expect(elapsed < 20, "took \(elapsed) s")
        }

        @Test("12. an empty address stops start-up with exit code 2, naming the key, in check-config too")
        func emptyAddress() throws {
            for (extra, key) in [
                ("address: ''", "address"), ("mgmt_address: ''", "mgmt_address"), ("httpPort: 0, httpAddress: ''", "httpAddress"),
                ("dashboard: {address: ''}", "dashboard.address"),
            ] {
                let config = try writeConfig(testConfig(graphitePort: nil, extra: extra))
                for command in [["check-config", config], ["--config", config]] {
                    let (status, output) = try SidestatProcess.run(command)
                    #expect(status == 2, "\(command) \(extra): \(output)")
                    #expect(output.contains("\(key): must not be empty"), "\(output)")
                    #expect(!output.contains("cannot resolve"))
                }
            }
        }

        @Test("a page from another loopback origin in Chromium POSTs to the management and HTTP ports: health stays up")
        func browserOnAnotherOrigin() throws {
            let python = try TestPaths.playwrightPython()
            let daemon = try SidestatProcess(config: testConfig(graphitePort: nil, extra: "httpPort: 0"))
            let site = TestPaths.temporaryDirectory()
            try """
                <!doctype html><title>attack</title><script>
                async function attack() {
                  for (const body of ["health down\\n", "delcounters statsd.bad_lines_seen\\n"]) {
                    try { await fetch("http://127.0.0.1:\(daemon.managementPort)/", {method: "POST", mode: "no-cors", body}); } catch (e) {}
                  }
                  try { await fetch("http://127.0.0.1:\(daemon.httpPort)/healthz", {method: "POST", mode: "no-cors", body: "x"}); } catch (e) {}
                  document.title = "done";
                }
                attack();
                </script>
                """.write(to: site.appendingPathComponent("index.html"), atomically: true, encoding: .utf8)
            let sitePort = freePort()
            let server = ChildServer()
            try server.launch("/usr/bin/python3", ["-m", "http.server", "--bind", "127.0.0.2", "--directory", site.path, String(sitePort)])
            defer { server.stop() }
            #expect(try waitUntil(timeout: 10) { (try? Send.connect(port: sitePort, address: "127.0.0.2")).map { close($0); return true } ?? false })
            let script = """
                from playwright.sync_api import sync_playwright
                with sync_playwright() as p:
                    browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
                    page = browser.new_page()
                    page.goto("http://127.0.0.2:\(sitePort)/")
                    page.wait_for_function("document.title === 'done'", timeout=15000)
                    print("attacked")
                    browser.close()
                """
            let (status, output) = runProcess(python, ["-c", script])
            #expect(status == 0 && output.contains("attacked"), "\(output)")
            #expect(try Self.health(daemon) == "health: up\n")
            #expect(try HTTP.get(port: daemon.httpPort, path: "/healthz").status == 200)
            #expect(daemon.terminate() == 0)
        }
    }
}
