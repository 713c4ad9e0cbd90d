//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import Testing

extension EndToEnd {
    /// One test per row of ../shared/conformance/DEVIATIONS.md, against the running daemon.
    struct DeviationTests {
        @Test("#1, #2: crafted sample rates and prototype names never crash; the good lines around them count")
        func craftedInput() throws {
            let sink = try LineSink()
            let daemon = try SidestatProcess(config: testConfig(graphitePort: sink.port))
            Send.udp(
                [
                    "a:1|c\nb:1|c|@+0.5\nc:1|c|@ 0.5\nd:1|c|@Infinity\ntoString:5|ms\n__proto__:2|c\nconstructor:3|c\nhasOwnProperty:4|g\ne:1|c"
                ], port: daemon.udpPort)
            let flush = try #require(sink.waitForFlush { $0.name == "stats_counts.e" }).lines
            #expect(flush.value("stats_counts.a") == "1")
            #expect(flush.value("stats_counts.statsd.bad_lines_seen") == "3")
            #expect(flush.value("stats.timers.toString.sum") == "5")
            #expect(flush.value("stats_counts.__proto__") == "2")
            #expect(flush.value("stats_counts.constructor") == "3")
            #expect(flush.value("stats.gauges.hasOwnProperty") == "4")
            #expect(!flush.has("stats_counts.b") && !flush.has("stats_counts.c") && !flush.has("stats_counts.d"))
            #expect(daemon.process.isRunning)
            #expect(daemon.output.contains("Bad line: 1,c,@+0.5 in msg \"b:1|c|@+0.5\""))
            #expect(daemon.terminate() == 0)
        }

        @Test("#3: on SIGTERM the last interval is flushed, carbon has it before the process exits, exit code 0")
        func finalFlush() throws {
            let sink = try LineSink()
            let daemon = try SidestatProcess(config: testConfig(graphitePort: sink.port, flushInterval: 60_000))
            Send.udp(["final:7|c", "final.t:3|ms"], port: daemon.udpPort)
            // No wait: on SIGTERM the UDP reader drains what the kernel holds before the final flush.
            let status = daemon.terminate()
            #expect(status == 0)
            // Delivered (and confirmed) before the exit: no waiting needed.
            let lines = sink.lines
            #expect(lines.value("stats_counts.final") == "7")
            #expect(lines.value("stats.timers.final.t.sum") == "3")
            #expect(daemon.output.contains("Final flush"))
        }

        @Test("#4, #5: a sample rate is a decimal number above 0; @1e-1 is 0.1; hex, 0, negative and empty are bad")
        func sampleRates() throws {
            let sink = try LineSink()
            let daemon = try SidestatProcess(config: testConfig(graphitePort: sink.port))
            Send.udp(["x:1|c|@1e-1\nh:1|c|@0x10\nz:1|c|@0\nn:1|c|@-1\nm:1|c|@\ny:1|c|@.5\nw:2|c|@5"], port: daemon.udpPort)
            let flush = try #require(sink.waitForFlush { $0.name == "stats_counts.x" }).lines
            #expect(flush.value("stats_counts.x") == "10")
            #expect(flush.value("stats_counts.y") == "2")
            #expect(flush.value("stats_counts.w") == "0.4")  // rates above 1 are accepted, as statsd does
            #expect(flush.value("stats_counts.statsd.bad_lines_seen") == "4")
            #expect(!flush.has("stats_counts.h") && !flush.has("stats_counts.z"))
            daemon.terminate()
        }

        @Test("#6: CRLF clients work: \\r after the type is trimmed before validation, so a negative ms\\r is rejected")
        func crlf() throws {
            let sink = try LineSink()
            let daemon = try SidestatProcess(config: testConfig(graphitePort: sink.port))
            Send.udp(["a:1|c\r\nt:-5|ms\r\nd:x|s\r\nok:2|ms \r\n"], port: daemon.udpPort)
            let flush = try #require(sink.waitForFlush { $0.name == "stats_counts.a" }).lines
            #expect(flush.value("stats.sets.d.count") == "1")
            #expect(flush.value("stats.timers.ok.sum") == "2")
            #expect(!flush.has("stats.timers.t.sum"))
            #expect(flush.value("stats_counts.statsd.bad_lines_seen") == "1")
            daemon.terminate()
        }

        @Test("#8: spaces around a gauge value are trimmed before the sign is read")
        func gaugeSpaces() throws {
            let sink = try LineSink()
            let daemon = try SidestatProcess(config: testConfig(graphitePort: sink.port))
            Send.udp(["g:10|g\ng: +5|g\ng:  -2 |g\nk:3|c"], port: daemon.udpPort)
            let flush = try #require(sink.waitForFlush { $0.name == "stats_counts.k" }).lines
            #expect(flush.value("stats.gauges.g") == "13")
            daemon.terminate()
        }

        @Test(
            "#9: percentThreshold above 100, 0 or -100 stops start-up with exit 2, naming the key and the value",
            arguments: [("[90, 150]", "percentThreshold[1]", "150"), ("[0]", "percentThreshold[0]", "0"), ("[-100]", "percentThreshold[0]", "-100")])
        func percentThreshold(list: String, key: String, value: String) throws {
            let directory = TestPaths.temporaryDirectory()
            let path = directory.appendingPathComponent("config.js")
            try testConfig(graphitePort: nil, extra: "percentThreshold: \(list)").write(to: path, atomically: true, encoding: .utf8)
            let (status, output) = try SidestatProcess.run(["--config", path.path])
            #expect(status == 2)
            #expect(output.contains(key) && output.contains("got \(value)"), "\(output)")
        }

        @Test("#11: deleteCounters deletes every user counter, even one whose name contains packets_received")
        func deleteCounters() throws {
            let sink = try LineSink()
            let daemon = try SidestatProcess(config: testConfig(graphitePort: sink.port, extra: "deleteCounters: true"))
            Send.udp(["my.packets_received.x:1|c\nplain:1|c"], port: daemon.udpPort)
            let first = try #require(sink.waitForFlush { $0.name == "stats_counts.my.packets_received.x" })
            let next = try #require(sink.waitForFlush(at: first.index + 1))
            #expect(!next.has("stats_counts.my.packets_received.x"))
            #expect(!next.has("stats_counts.plain"))
            #expect(next.value("stats_counts.statsd.packets_received") == "0")
            #expect(next.value("stats_counts.statsd.bad_lines_seen") == "0")
            daemon.terminate()
        }

        @Test("#12: internal counters reset by the management port are 0, and no NaN or Infinity is ever sent")
        func noNaN() throws {
            let sink = try LineSink()
            let daemon = try SidestatProcess(config: testConfig(graphitePort: sink.port))
            Send.udp(["of:1.7976931348623157e308|c", "of:1.7976931348623157e308|c", "seen:1|c", "bad"], port: daemon.udpPort)
            // The bad line comes last: once the total since start counts it, all four were read (a flush may come between).
            #expect(
                try waitUntil(timeout: 10) {
                    try Send.management(["stats\n"], port: daemon.managementPort).contains("messages.bad_lines_seen: 1\n")
                })
            let reply = try Send.management(["delcounters statsd.*\n"], port: daemon.managementPort)
            #expect(reply.contains("deleted: statsd.bad_lines_seen\ndeleted: statsd.packets_received\ndeleted: statsd.metrics_received\n"))
            let flush = try #require(sink.waitForFlush { $0.name == "stats_counts.seen" }).lines
            #expect(flush.value("stats_counts.statsd.packets_received") == "0")
            #expect(flush.value("stats_counts.statsd.bad_lines_seen") == "0")
            _ = sink.waitForFlush(at: sink.connectionCount)
            for line in sink.lines {
                #expect(!line.value.contains("NaN") && !line.value.contains("Infinity"), "\(line)")
            }
            // The overflowed interval is left out; the key then idles at 0 like any counter.
            #expect(sink.values("stats_counts.of").allSatisfy { $0 == "0" })
            #expect(daemon.output.contains("NaN or infinite were left out"))
            daemon.terminate()
        }

        @Test("#14: healthStatus: \"down\" starts the daemon reporting health: down")
        func healthStatus() throws {
            let daemon = try SidestatProcess(config: testConfig(graphitePort: nil, extra: "healthStatus: 'down'"))
            #expect(try Send.management(["health\n"], port: daemon.managementPort, until: "\n") == "health: down\n")
            #expect(try Send.management(["health up\n"], port: daemon.managementPort, until: "\n") == "health: up\n")
            daemon.terminate()
        }

        @Test("#15: TCP input is UTF-8 like UDP input: the same set member over both counts once")
        func tcpUTF8() throws {
            let sink = try LineSink()
            let udp = freePort()
            let tcp = freePort()
            let daemon = try SidestatProcess(
                config: testConfig(
                    graphitePort: sink.port,
                    extra: "servers: [{server: './servers/udp', port: \(udp)}, {server: './servers/tcp', port: \(tcp)}]"))
            try Send.tcp([Array("s:caf\u{e9}|s\ncaf\u{e9}.k:1|c\n".utf8)], port: tcp)
            Send.udp(["s:caf\u{e9}|s\nmark:1|c"], port: udp)
            let flush = try #require(sink.waitForFlush { $0.name == "stats_counts.mark" }).lines
            #expect(flush.value("stats.sets.s.count") == "1")
            #expect(flush.value("stats_counts.caf.k") == "1")  // statsd's 'ascii' decoding made this `cafC.k`
            daemon.terminate()
        }

        @Test("#17: a failed flush is kept and replayed with its original timestamps once carbon is back")
        func retry() throws {
            let sink = try LineSink()
            sink.stop()
            let daemon = try SidestatProcess(config: testConfig(graphitePort: sink.port))
            Send.udp(["early:5|c"], port: daemon.udpPort)
            #expect(daemon.waitForOutput("Flush failed; keeping it"))
            let stats = try Send.management(["stats\n"], port: daemon.managementPort)
            let exceptionAge = stats.split(separator: "\n").first { $0.hasPrefix("graphite.last_exception: ") }
                .flatMap { Int($0.split(separator: " ")[1]) }
            #expect(exceptionAge.map { $0 < 5 } == true, "\(stats)")
            try sink.start()
            let early = try #require(sink.waitFor { $0.name == "stats_counts.early" })
            #expect(early.value == "5")
            _ = sink.waitForFlush(at: sink.connectionCount)
            // Replayed under the failed flush's timestamp, before the flush that carried it (a later tick).
            #expect(early.timestamp < sink.lines.map(\.timestamp).max() ?? 0)
            #expect(sink.values("stats_counts.early").filter { $0 == "5" }.count == 1)
            daemon.terminate()
        }

        @Test("#17: past the retry buffer's bound the oldest datapoints are dropped and counted")
        func retryBound() throws {
            let sink = try LineSink()
            sink.stop()
            let daemon = try SidestatProcess(config: testConfig(graphitePort: sink.port, extra: "retryBufferBytes: 200"))
            Send.udp(["dropped:5|c"], port: daemon.udpPort)
            #expect(daemon.waitForOutput("retry.dropped_points="))
            let dropped = daemon.output.split(separator: " ").first { $0.hasPrefix("retry.dropped_points=") }
                .flatMap { Int($0.split(separator: "=")[1].trimmingCharacters(in: .whitespacesAndNewlines)) }
            #expect((dropped ?? 0) > 0)
            daemon.terminate()
        }

        @Test("#18: without an address Sidestat listens on 127.0.0.1 only; a configured address is honoured")
        func loopbackDefault() throws {
            let local = try SidestatProcess(config: testConfig(graphitePort: nil))
            #expect(Self.udpSockets().contains("0100007F:\(String(format: "%04X", local.udpPort))"))
            local.terminate()
            let any = try SidestatProcess(config: testConfig(graphitePort: nil, extra: "address: '0.0.0.0'"))
            #expect(Self.udpSockets().contains("00000000:\(String(format: "%04X", any.udpPort))"))
            any.terminate()
        }

        static func udpSockets() -> [String] {
            let table = (try? String(contentsOfFile: "/proc/net/udp", encoding: .utf8)) ?? ""
            return table.split(separator: "\n").dropFirst().map { String($0.split(separator: " ")[1]) }
        }

        @Test("#19: management commands are read line by line; sets is added; dumps are JSON followed by END")
        func management() throws {
            let daemon = try SidestatProcess(config: testConfig(graphitePort: nil, flushInterval: 60_000))
            Send.udp(["c:2|c\nt:3|ms\ng:4|g\ns:a|s\ns:b|s"], port: daemon.udpPort)
            #expect(try waitUntil(timeout: 10) { try daemon.counters().contains("\"statsd.metrics_received\":5") })
            let port = daemon.managementPort
            let both = try Send.management(["help\nhealth\n"], port: port, until: "health: up\n")
            #expect(
                both.hasPrefix(
                    "Commands: stats, counters, timers, gauges, sets, delcounters, deltimers, delgauges, delsets, health, "
                        + "config, quit\n\n"))
            #expect(both.hasSuffix("health: up\n"))
            let split = try Send.management(["coun", "ters\n"], port: port)
            #expect(split.hasSuffix("\nEND\n\n"))
            let counters = try JSONSerialization.jsonObject(with: Data(split.dropLast(6).utf8)) as? [String: Double]
            #expect(counters?["c"] == 2)
            #expect(counters?["statsd.metrics_received"] == 5)
            let sets = try Send.management(["sets\n"], port: port)
            let members = try JSONSerialization.jsonObject(with: Data(sets.dropLast(6).utf8)) as? [String: [String]]
            #expect(members?["s"] == ["a", "b"])
            let timers = try Send.management(["timers\n"], port: port)
            #expect(timers == "{\"t\":[3]}\nEND\n\n")
            #expect(try Send.management(["nope\n"], port: port, until: "\n") == "ERROR\n")
            daemon.terminate()
        }
    }
}
