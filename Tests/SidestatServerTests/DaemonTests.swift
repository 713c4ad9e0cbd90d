//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import Testing

extension EndToEnd {
    /// The daemon as a user runs it: command lines, listeners, backends.
    struct DaemonTests {
        @Test("with no configuration it listens on 127.0.0.1:8125 and 8126 and prints flushes to the console")
        func embeddedDefault() throws {
            let daemon = try SidestatProcess(arguments: [])
            #expect(daemon.udpPort == 8125)
            #expect(daemon.managementPort == 8126)
            Send.udp(["Homepage hits:1|c"], port: 8125)
            // No wait: on SIGTERM the UDP reader drains what the kernel holds before the final flush.
            #expect(daemon.terminate() == 0)
            // console.log('Flushing stats at ', date): two spaces, then node's Date string.
            #expect(
                daemon.output.range(
                    of: #"\nFlushing stats at  \w{3} \w{3} \d\d \d{4} \d\d:\d\d:\d\d GMT[+-]\d{4} \("#,
                    options: .regularExpression) != nil, "\(daemon.output)")
            #expect(daemon.output.contains("Homepage_hits: 1"))
        }

        @Test(
            "reads its configuration the ways statsd users call it",
            arguments: [["--config", "FILE"], ["FILE"], ["serve", "--config", "FILE"], ["serve", "FILE"], ["-c", "FILE"]])
        func commandLines(arguments: [String]) throws {
            let sink = try LineSink()
            let path = TestPaths.temporaryDirectory().appendingPathComponent("config.js")
            try testConfig(graphitePort: sink.port, flushInterval: 200).write(to: path, atomically: true, encoding: .utf8)
            let daemon = try SidestatProcess(arguments: arguments.map { $0 == "FILE" ? path.path : $0 })
            Send.udp(["cli:1|c"], port: daemon.udpPort)
            #expect(sink.value("stats_counts.cli") == "1")
            daemon.terminate()
        }

        @Test("every command has --help", arguments: [[], ["serve"], ["check-config"]])
        func help(command: [String]) throws {
            let (status, output) = try SidestatProcess.run(command + ["--help"])
            #expect(status == 0)
            #expect(output.contains("USAGE:"))
        }

        @Test("check-config prints the effective configuration of a valid file")
        func checkConfig() throws {
            let path = TestPaths.temporaryDirectory().appendingPathComponent("config.js")
            try "{ graphiteHost: process.env.GH || 'carbon.example', flushInterval: 5 * 1000, unknownThing: 1 }"
                .write(to: path, atomically: true, encoding: .utf8)
            let (status, output) = try SidestatProcess.run(["check-config", path.path])
            #expect(status == 0)
            #expect(output.contains("graphiteHost: \"carbon.example\""))
            #expect(output.contains("flushInterval: 5000"))
            #expect(output.contains("address: \"127.0.0.1\""))
            #expect(output.contains("unknown configuration key \"unknownThing\""))
        }

        @Test(
            "a bad configuration stops start-up with exit code 2 and one clear message",
            arguments: [
                ("{ port: 'x' }", "port: must be a number"),
                ("{\n  graphiteHost: require('os').hostname()\n}", "config.js:2:17: `require` is not allowed"),
                ("{ flushInterval: 1000, }\n{", "only one expression"),
            ])
        func badConfiguration(source: String, message: String) throws {
            let path = TestPaths.temporaryDirectory().appendingPathComponent("config.js")
            try source.write(to: path, atomically: true, encoding: .utf8)
            for command in [["--config", path.path], ["check-config", path.path]] {
                let (status, output) = try SidestatProcess.run(command)
                #expect(status == 2)
                #expect(output.contains(message), "\(output)")
            }
            let (status, output) = try SidestatProcess.run(["--config", "/nonexistent/config.js"])
            #expect(status == 2)
            #expect(output.contains("cannot read the file"))
        }

        @Test("a port in use stops start-up with a message naming it")
        func portInUse() throws {
            let first = try SidestatProcess(config: testConfig(graphitePort: nil))
            let path = TestPaths.temporaryDirectory().appendingPathComponent("config.js")
            try "{ port: \(first.udpPort), mgmt_port: \(freePort()) }".write(to: path, atomically: true, encoding: .utf8)
            let (status, output) = try SidestatProcess.run(["--config", path.path])
            #expect(status == 2)
            #expect(
                output.hasSuffix("] reading config file: \(path.path)\nsidestat: cannot listen on UDP 127.0.0.1:\(first.udpPort): address already in use "
                    + "(is another statsd or Sidestat running?)\n"), "\(output)")
            first.terminate()
        }

        @Test("TCP: lines split across segments are joined, and a last line without newline is kept at close")
        func tcp() throws {
            let sink = try LineSink()
            let daemon = try SidestatProcess(config: testConfig(graphitePort: sink.port, extra: "server: './servers/tcp'"))
            #expect(daemon.tcpPort != 0)
            try Send.tcp([Array("split.a:1|c\nspl".utf8), Array("it.b:2|c\nlast:3|c".utf8)], port: daemon.tcpPort)
            let flush = try #require(sink.waitForFlush { $0.name == "stats_counts.last" }).lines
            #expect(flush.value("stats_counts.split.a") == "1")
            #expect(flush.value("stats_counts.split.b") == "2")
            #expect(flush.value("stats_counts.last") == "3")
            #expect(flush.value("stats_counts.statsd.metrics_received") == "3")
            daemon.terminate()
        }

        @Test("open TCP and management connections do not hold up shutdown; the TCP client's lines are flushed")
        func openConnectionsAtShutdown() throws {
            let sink = try LineSink()
            let daemon = try SidestatProcess(
                config: testConfig(graphitePort: sink.port, flushInterval: 60_000, extra: "server: './servers/tcp'"))
            let client = try Send.connect(port: daemon.tcpPort)
            defer { close(client) }
            let management = try Send.connect(port: daemon.managementPort)
            defer { close(management) }
            _ = Array("persistent:4|c\n".utf8).withUnsafeBytes { send(client, $0.baseAddress, $0.count, 0) }
            #expect(try waitUntil(timeout: 10) { try daemon.counters().contains("\"persistent\":4") })
            let start = Date()
            #expect(daemon.terminate() == 0)
            #expect(Date().timeIntervalSince(start) < 3, "shutdown waited for the open connections")
            #expect(sink.lines.value("stats_counts.persistent") == "4")
        }

        @Test("UDP over IPv6, and datagrams up to 65,507 bytes")
        func udpSizes() throws {
            let sink = try LineSink()
            let daemon = try SidestatProcess(config: testConfig(graphitePort: sink.port, extra: "address_ipv6: true"))
            Send.udp(["v6:1|c"], port: daemon.udpPort, host: "::1")
            let line = "big:1|c\n"
            let count = 65_507 / line.utf8.count
            var datagram = String(repeating: line, count: count)
            datagram += String(repeating: "x", count: 65_507 - datagram.utf8.count - 1) + "\n"
            #expect(datagram.utf8.count == 65_507)
            Send.udp([datagram], port: daemon.udpPort, host: "::1")
            let flush = try #require(sink.waitForFlush { $0.name == "stats_counts.big" }).lines
            #expect(flush.value("stats_counts.v6") == "1")
            #expect(flush.value("stats_counts.big") == "\(count)")
            daemon.terminate()
        }

        @Test("a TCP listener on a Unix domain socket (statsd's socket and socket_mod)")
        func unixSocket() throws {
            let sink = try LineSink()
            let path = TestPaths.temporaryDirectory().appendingPathComponent("statsd.sock").path
            let daemon = try SidestatProcess(
                config: testConfig(graphitePort: sink.port, extra: "socket: '\(path)', socket_mod: 0o660"))
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            #expect((attributes[.posixPermissions] as? Int) == 0o660)
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { bytes in
                for (index, byte) in path.utf8.enumerated() { bytes[index] = byte }
            }
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            #expect(connected == 0)
            _ = Array("unix:4|c\n".utf8).withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            close(fd)
            #expect(sink.value("stats_counts.unix") == "4")
            #expect(daemon.terminate() == 0)
            #expect(!FileManager.default.fileExists(atPath: path))
        }

        @Test("several backends at once, named as in statsd; dumpMessages logs every line")
        func severalBackends() throws {
            let sink = try LineSink()
            let daemon = try SidestatProcess(
                config: testConfig(
                    graphitePort: sink.port,
                    extra: "backends: ['./backends/graphite', './backends/console'], dumpMessages: true"))
            Send.udp(["both:2|c\nboth.t:4|ms|@0.5"], port: daemon.udpPort)
            #expect(sink.value("stats_counts.both") == "2")
            #expect(daemon.waitForOutput("both: 2"))
            #expect(daemon.output.contains("DEBUG: both:2|c"))
            #expect(daemon.output.contains("'both.t': [ 4 ]"))
            daemon.terminate()
        }

        @Test("legacyNamespace false, prefixes, suffix and Graphite tags from DogStatsD")
        func namespaces() throws {
            let sink = try LineSink()
            let daemon = try SidestatProcess(
                config: testConfig(
                    graphitePort: sink.port,
                    extra: "graphite: { legacyNamespace: false, globalPrefix: 'app', globalSuffix: 'web1' }"))
            Send.udp(["req:1|c|#env:prod,region:eu"], port: daemon.udpPort)
            let flush = try #require(sink.waitForFlush { $0.name.hasPrefix("app.counters.req.count") }).lines
            #expect(flush.value("app.counters.req.count.web1;env=prod;region=eu") == "1")
            #expect(flush.has("app.statsd.numStats.web1"))
            daemon.terminate()
        }
    }
}
