//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import Testing

extension EndToEnd {
    /// Upstreams in trouble (a stale connection, a slow reader, nobody listening) and the shutdown around them:
    /// flushes that never wait on each other, nothing sent twice, a prompt exit.
    struct StalledUpstreamTests {
        /// The sum of every `stats_counts.<name>` value the sink received, on every connection from `first` on.
        static func total(_ sink: LineSink, _ name: String, from first: Int = 0) -> Int {
            sink.rawConnections.dropFirst(first).flatMap { $0 }.compactMap(LineSink.parse)
                .filter { $0.name == "stats_counts.\(name)" }.reduce(0) { $0 + Int($1.value)! }
        }

        /// Waits until the daemon has counted `key` (so a datagram just sent is in), then sends `signal`; returns the
        /// exit status and the seconds the daemon took to exit.
        static func stop(_ daemon: SidestatProcess, after key: String, with signal: Int32 = SIGTERM) throws -> (Int32, Double) {
            _ = try waitUntil(timeout: 10) { try Send.management(["counters\n"], port: daemon.managementPort).contains(key) }
            let start = Date()
            daemon.signal(signal)
            let status = daemon.waitForExit(timeout: 15)
            return (status, Date().timeIntervalSince(start))
        }

        /// The number the daemon logged after `key` (`flush.lost_points=`), or 0.
        static func logged(_ key: String, in output: String) -> Int {
            output.components(separatedBy: key).dropFirst().first.flatMap { Int($0.prefix { $0.isNumber }) } ?? 0
        }

        @Test("a listener that never reads its first connection: the next flushes arrive on time, each count once")
        func staleFirstConnection() throws {
            let sink = try LineSink(behaviour: .staleFirst)
            let daemon = try SidestatProcess(config: testConfig(graphitePort: sink.port, flushInterval: 200))
            let stale = try #require(sink.acceptTime(0))
            // Counts sent from now on travel in later flushes, on later connections.
            var sent = 0
            for _ in 0..<40 {
                Send.udp(["stale.n:1|c"], port: daemon.udpPort)
                sent += 1
            }
            for index in 1...3 {
                let accepted = try #require(sink.acceptTime(index), "flush \(index) after the stale one never came")
                let offset = accepted.timeIntervalSince(stale) - Double(index) * 0.2
                #expect(abs(offset) < 0.1, "flush \(index) came \(Int(offset * 1000)) ms off its tick")
            }
            for _ in 0..<60 {
                Send.udp(["stale.n:1|c"], port: daemon.udpPort)
                sent += 1
            }
            #expect(daemon.terminate() == 0)
            #expect(Self.total(sink, "stale.n", from: 1) == sent, "\(daemon.output)")
            #expect(!daemon.output.contains("Flush failed"), "\(daemon.output)")
        }

        @Test("a listener that reads 10 KB/s: every datapoint arrives exactly once and ingest keeps counting")
        func slowReader() throws {
            let sink = try LineSink(behaviour: .slow(bytesPerSecond: 10_240))
            let daemon = try SidestatProcess(
                config: testConfig(graphitePort: sink.port, flushInterval: 1000, extra: "shutdownTimeout: 20000"))
            // 150 keys: about 12 KB a flush, more than the reader takes in a second. Each round goes into the flush
            // after the one the sink has just seen, so several flushes queue up behind the slow reader.
            var sent = 0
            for _ in 0..<4 {
                let seen = sink.connectionCount
                for _ in 0..<20 {
                    Send.udp((0..<150).map { "slow.k\($0):1|c" }.chunked(30).map { $0.joined(separator: "\n") }, port: daemon.udpPort)
                    sent += 1
                }
                #expect(waitUntil(timeout: 10) { sink.connectionCount > seen })
            }
            // The management port answers while the upstream lags.
            let counters = try Send.management(["counters\n"], port: daemon.managementPort, timeout: 1)
            #expect(counters.hasSuffix("END\n\n"), "\(counters)")
            #expect(daemon.terminate(timeout: 30) == 0)
            for key in [0, 77, 149] {
                #expect(Self.total(sink, "slow.k\(key)") == sent, "key \(key)\n\(daemon.output)")
            }
            // Once each: no flush was written twice (each flush's timestamp and value pair appears once per key).
            let lines = sink.lines.filter { $0.name == "stats_counts.slow.k0" && $0.value != "0" }
            #expect(lines.reduce(0) { $0 + Int($1.value)! } == sent)
        }

        @Test("an upstream that resets every connection: nothing arrives twice, and SIGTERM exits promptly")
        func resettingUpstream() throws {
            // 700 bytes: the counters come first in a flush and arrive; the rest of the flush is cut off.
            let sink = try LineSink(behaviour: .resetAfter(bytes: 700))
            let daemon = try SidestatProcess(
                config: testConfig(graphitePort: sink.port, flushInterval: 500, extra: "shutdownTimeout: 5000"))
            let keys = ["reset.a", "reset.b", "reset.c", "reset.d"]
            var sent = 0
            for _ in 0..<30 {
                Send.udp([keys.map { "\($0):1|c" }.joined(separator: "\n")], port: daemon.udpPort)
                sent += 1
            }
            let (status, elapsed) = try Self.stop(daemon, after: "reset.d")
            #expect(status == 0)
            #expect(elapsed < 2, "took \(elapsed) s\n\(daemon.output)")
            for key in keys {
                #expect(Self.total(sink, key) <= sent, "\(key) arrived more often than sent\n\(sink.rawConnections)")
            }
            #expect(Self.total(sink, "reset.a") > 0, "\(sink.rawConnections)")
        }

        @Test("SIGTERM with a healthy carbon: the final flush is in carbon and the process exits at once")
        func sigtermHealthyCarbon() throws {
            let carbon = try CarbonCache()
            defer { carbon.stop() }
            let daemon = try SidestatProcess(config: testConfig(graphitePort: carbon.linePort, flushInterval: 2000))
            Send.udp(["bye.n:7|c"], port: daemon.udpPort)
            let (status, elapsed) = try Self.stop(daemon, after: "bye.n")
            #expect(status == 0)
            // The final flush may wait for the tick (at most one interval): the log says how long.
            let waited = Self.logged("flush.wait_ms=", in: daemon.output)
            #expect(elapsed < 1.0 + Double(waited) / 1000, "took \(elapsed) s, \(waited) ms of it waiting for the tick")
            let points = carbon.waitFor("stats_counts.bye.n") { $0 == 7 }
            #expect(points.reduce(0) { $0 + $1.1 } == 7, "\(points)\n\(daemon.output)")
        }

        @Test("SIGTERM with nothing listening: exit within 2.5 s, the loss logged with its count")
        func sigtermNothingListening() throws {
            let sink = try LineSink()
            sink.stop()
            let daemon = try SidestatProcess(
                config: testConfig(graphitePort: sink.port, flushInterval: 1000, extra: "shutdownTimeout: 10000"))
            #expect(daemon.waitForOutput("connection refused"))
            Send.udp(["gone:5|c"], port: daemon.udpPort)
            let (status, elapsed) = try Self.stop(daemon, after: "gone")
            #expect(status == 0)
            #expect(elapsed < 2.5, "took \(elapsed) s")
            #expect(daemon.output.contains("Final flush could not be delivered; datapoints are lost"), "\(daemon.output)")
            // Every line of the flushes held since the first failure, and of the final one.
            #expect(Self.logged("flush.lost_points=", in: daemon.output) > 10, "\(daemon.output)")
        }

        @Test("SIGINT on the default console setup: the final flush is printed and the process exits within 0.5 s")
        func sigintConsoleDefault() throws {
            let daemon = try SidestatProcess(arguments: [])
            // From 2 s after start-up the next 10 s tick is less than 8 s away: close enough that a Graphite setup
            // would wait for it. The console alone never does.
            #expect(
                try waitUntil(timeout: 10) {
                    Self.logged("uptime: ", in: try Send.management(["stats\n"], port: daemon.managementPort)) >= 3
                })
            Send.udp(["ctrl.c:3|c"], port: daemon.udpPort)
            let (status, elapsed) = try Self.stop(daemon, after: "ctrl.c", with: SIGINT)
            #expect(status == 0)
            #expect(elapsed < 0.5, "took \(elapsed) s")
            #expect(daemon.output.contains("'ctrl.c': 3"), "\(daemon.output)")
        }

        @Test("SIGTERM while the first connection is left unread: the final flush arrives on a new connection")
        func sigtermDuringStaleFlush() throws {
            let sink = try LineSink(behaviour: .staleFirst)
            let daemon = try SidestatProcess(
                config: testConfig(graphitePort: sink.port, flushInterval: 200, extra: "shutdownTimeout: 3000"))
            // Enough keys that a flush (about 200 KB) cannot all go into the unread connection's buffers.
            let keys = (0..<3000).map { "wide.key\($0):1|c" }
            Send.udp(keys.chunked(40).map { $0.joined(separator: "\n") }, port: daemon.udpPort)
            _ = try #require(sink.acceptTime(0))
            Send.udp(["last.n:9|c"], port: daemon.udpPort)
            let (status, elapsed) = try Self.stop(daemon, after: "last.n")
            #expect(status == 0)
            #expect(elapsed < 3, "\(daemon.output)")
            #expect(Self.total(sink, "last.n", from: 1) == 9, "\(sink.rawConnections)\n\(daemon.output)")
        }

        @Test("the TCP repeater with two targets: every line at both, in order, once")
        func tcpRepeaterTwoTargets() throws {
            let first = try LineSink()
            let second = try LineSink()
            let upstream = try SidestatProcess(
                config: testConfig(
                    graphitePort: nil,
                    extra: """
                        backends: ["./backends/repeater"], repeaterProtocol: "tcp",
                        repeater: [{host: "127.0.0.1", port: \(first.port)}, {host: "127.0.0.1", port: \(second.port)}]
                        """))
            let lines = (0..<2000).map { "rep.n:\($0)|c" }
            Send.udp(lines, port: upstream.udpPort)
            #expect(try Self.stop(upstream, after: "rep.n").0 == 0)
            for sink in [first, second] {
                let received = sink.rawConnections.flatMap { $0 }.filter { !$0.isEmpty }
                #expect(received == lines, "received \(received.count) of \(lines.count)\n\(upstream.output)")
            }
        }
    }
}

extension Array {
    /// The array in consecutive pieces of `size` (the last may be shorter).
    func chunked(_ size: Int) -> [[Element]] {
        stride(from: 0, to: self.count, by: size).map { Array(self[$0..<Swift.min($0 + size, self.count)]) }
    }
}
