//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import Testing

extension EndToEnd {
    /// Delivery that survives outages, numbers that add up across instances, health endpoints and the repeater.
    struct DeliveryTests {
        /// Sends `outage.n:1|c` every 250 ms for `seconds`; returns how many were sent.
        static func trickle(port: Int, seconds: Double) -> Int {
            let count = Int(seconds / 0.25)
            for _ in 0..<count {
                Send.udp(["outage.n:1|c"], port: port)
                Thread.sleep(forTimeInterval: 0.25)
            }
            return count
        }

        /// The outage tests flush every 2 s: statsd rounds flush times to the second, so 1 s flushes can share a
        /// timestamp (one at x.499, the next at x+1.501), and whisper keeps one value per second.
        /// With `debug`, every failed flush is logged (without it, one warning a minute while an outage lasts).
        static func config(_ port: Int, extra: String = "") -> String {
            testConfig(graphitePort: port, flushInterval: 2000, extra: extra.isEmpty ? "debug: true" : extra + ", debug: true")
        }

        static func failures(_ daemon: SidestatProcess) -> Int {
            daemon.output.components(separatedBy: "Flush failed; keeping it").count - 1
        }

        @Test("carbon-cache down for three intervals: every count arrives with its original timestamp")
        func outageWithCarbon() throws {
            let carbon = try CarbonCache()
            defer { carbon.stop() }
            let daemon = try SidestatProcess(config: Self.config(carbon.linePort))
            var sent = Self.trickle(port: daemon.udpPort, seconds: 4)
            // Stop carbon once a flush is in whisper and before the next: carbon-cache drops what it has read but not
            // yet written when it stops, which is carbon's loss, not the one under test.
            let stored = carbon.fetch("stats_counts.outage.n").count
            let wait = Date().addingTimeInterval(5)
            while carbon.fetch("stats_counts.outage.n").count == stored && Date() < wait {
                Send.udp(["outage.n:1|c"], port: daemon.udpPort)
                sent += 1
            }
            carbon.stop()
            let down = Int(Date().timeIntervalSince1970)
            sent += Self.trickle(port: daemon.udpPort, seconds: 7)
            let up = Int(Date().timeIntervalSince1970)
            #expect(Self.failures(daemon) >= 3, "\(daemon.output)")
            try carbon.start()
            sent += Self.trickle(port: daemon.udpPort, seconds: 4)
            #expect(daemon.terminate() == 0)
            // Whisper keeps one value per second and flushes are two seconds apart: the stored values add up to what
            // was sent only if every flush arrived, each under its own timestamp.
            var points = carbon.fetch("stats_counts.outage.n")
            _ = waitUntil(timeout: 20) {
                points = carbon.fetch("stats_counts.outage.n")
                return points.reduce(0, { $0 + $1.1 }) == Double(sent)
            }
            #expect(points.reduce(0) { $0 + $1.1 } == Double(sent), "\(points)\n\(daemon.output)\n\(carbon.log)")
            #expect(points.filter { $0.0 > down && $0.0 < up && $0.1 > 0 }.count >= 3, "points stamped during the outage")
        }

        @Test("exactly once: after an outage each flush arrives once, in order, with its original timestamp")
        func outageExactlyOnce() throws {
            let sink = try LineSink()
            let daemon = try SidestatProcess(config: Self.config(sink.port))
            var sent = Self.trickle(port: daemon.udpPort, seconds: 4)
            sink.stop()
            sent += Self.trickle(port: daemon.udpPort, seconds: 7)
            let outageFlushes = Self.failures(daemon)
            #expect(outageFlushes >= 3)
            let reconnected = sink.connectionCount
            try sink.start()
            sent += Self.trickle(port: daemon.udpPort, seconds: 4)
            #expect(daemon.waitForOutput("Delivered flushes held back"))
            #expect(daemon.terminate() == 0)
            let counts = sink.lines.filter { $0.name == "stats_counts.outage.n" }
            #expect(counts.reduce(0) { $0 + Int($1.value)! } == sent)
            // (The final flush on SIGTERM may share its second with the flush before it: leave it out here.)
            let timestamps = (0..<sink.connectionCount - 1).flatMap { sink.flush($0) }
                .filter { $0.name == "stats_counts.outage.n" }.map(\.timestamp)
            #expect(Set(timestamps).count == timestamps.count, "a flush arrived twice: \(timestamps)")
            #expect(timestamps == timestamps.sorted(), "flushes replayed out of order: \(timestamps)")
            // The first connection after the outage replays the held flushes, each with its own timestamp.
            let replay = sink.flush(reconnected).filter { $0.name == "stats_counts.outage.n" }
            #expect(replay.count >= outageFlushes + 1, "\(replay)")
            #expect(Set(replay.map(\.timestamp)).count == replay.count)
        }

        @Test("a small retry bound drops the oldest flushes, and the drop count is the datapoints they held")
        func outageBounded() throws {
            let sink = try LineSink()
            // A flush here is about 750 bytes, 850 once statsd's queue figures are in it: 2000 bytes hold two.
            let daemon = try SidestatProcess(config: Self.config(sink.port, extra: "retryBufferBytes: 2000"))
            _ = Self.trickle(port: daemon.udpPort, seconds: 4.5)
            let normal = try #require(sink.waitForFlush(at: sink.connectionCount - 1))
            sink.stop()
            let lastBefore = normal.map(\.timestamp).max()!
            _ = Self.trickle(port: daemon.udpPort, seconds: 10)
            let reconnected = sink.connectionCount
            try sink.start()
            // Logged once carbon has confirmed the replay: by then the sink has read every line of it.
            #expect(daemon.waitForOutput("Delivered flushes held back"))
            let outageFlushes = Self.failures(daemon)
            let replay = sink.flush(reconnected)
            let stats = try Send.management(["stats\n"], port: daemon.managementPort)
            #expect(daemon.terminate() == 0)

            // The replayed flushes are the newest of the outage; the oldest went.
            let outageTimestamps = Set(replay.map(\.timestamp)).sorted()
            let arrived = outageTimestamps.count - 1  // the last is the flush of the reconnection itself
            let missing = outageFlushes - arrived
            #expect(arrived >= 1 && missing >= 1, "outage flushes \(outageFlushes), arrived \(arrived)")
            #expect(outageTimestamps.first! > lastBefore + missing, "the oldest were dropped, not the newest")
            // A flush's datapoints are its lines: the first of the outage had as many as a normal flush, the later
            // ones two more (statsd's graphiteStats.queued_bytes and dropped_points appear once there is a queue).
            let perFlush = normal.filter { $0.timestamp == lastBefore }.count
            let laterFlush = replay.filter { $0.timestamp == outageTimestamps[0] }.count
            #expect(laterFlush == perFlush + 2)
            let expected = perFlush + (missing - 1) * laterFlush
            #expect(stats.contains("graphite.dropped_points: \(expected)\n"), "expected \(expected) in:\n\(stats)")
            // The flush of the reconnection reports the drops as statsd's own metric.
            #expect(replay.last { $0.name == "stats.statsd.graphiteStats.dropped_points" }?.value == String(expected))
        }

        @Test("SIGTERM during an outage: the final flush is retried until the deadline, then the loss is logged")
        func sigtermDuringOutage() throws {
            // The same inputs with carbon up: how many datapoints the final flush holds.
            func run(sinkUp: Bool, restartCarbon: Bool = false, timeout: Int) throws -> (SidestatProcess, LineSink, Double) {
                let sink = try LineSink()
                if !sinkUp { sink.stop() }
                let daemon = try SidestatProcess(
                    config: testConfig(
                        graphitePort: sink.port, flushInterval: 60_000, extra: "shutdownTimeout: \(timeout)"))
                Send.udp(["gone:5|c\nlatency:3|ms"], port: daemon.udpPort)
                let start = Date()
                daemon.signal(SIGTERM)
                if restartCarbon {
                    // Carbon comes back once the final flush has failed and is being retried.
                    #expect(daemon.waitForOutput("Final flush failed; retrying until the shutdown deadline"))
                    try sink.start()
                }
                #expect(daemon.waitForExit(timeout: 20) == 0)
                return (daemon, sink, Date().timeIntervalSince(start))
            }
            let (_, reference, _) = try run(sinkUp: true, timeout: 2000)
            let points = reference.lines.count
            #expect(points > 10)

            let (lost, _, elapsed) = try run(sinkUp: false, timeout: 2000)
            #expect(elapsed >= 1.5 && elapsed < 6, "the deadline is 2 s; took \(elapsed)")
            #expect(lost.output.contains("Final flush failed; retrying until the shutdown deadline"))
            #expect(lost.output.contains("flush.lost_points=\(points)"), "\(lost.output)")

            // Carbon back within the deadline: the final flush arrives.
            let (late, sink, _) = try run(sinkUp: false, restartCarbon: true, timeout: 5000)
            #expect(sink.lines.value("stats_counts.gone") == "5")
            #expect(!late.output.contains("flush.lost_points"))
        }

        @Test("two instances flushing to one carbon: both series exist and their sum is what was sent")
        func twoInstances() throws {
            let carbon = try CarbonCache()
            defer { carbon.stop() }
            let web1 = try SidestatProcess(
                config: testConfig(graphitePort: carbon.linePort, extra: "instance: 'web.1'"))
            let web2 = try SidestatProcess(
                config: testConfig(graphitePort: carbon.linePort, extra: "instance: 'web.2'"))
            for _ in 0..<5 { Send.udp(["hits:1|c"], port: web1.udpPort) }
            for _ in 0..<7 { Send.udp(["hits:1|c"], port: web2.udpPort) }
            // No wait: on SIGTERM the UDP reader drains what the kernel holds before the final flush.
            #expect(web1.terminate() == 0)
            #expect(web2.terminate() == 0)
            // sumSeries(stats_counts.*.hits), as Graphite would compute it from the stored series.
            let root = carbon.directory.appendingPathComponent("storage/whisper/stats_counts")
            func series() -> [String] {
                ((try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []).filter {
                    FileManager.default.fileExists(atPath: root.appendingPathComponent("\($0)/hits.wsp").path)
                }.sorted()
            }
            var total = 0.0
            _ = waitUntil(timeout: 20) {
                total = series().reduce(0) { sum, instance in
                    sum + carbon.fetch("stats_counts.\(instance).hits").reduce(0) { $0 + $1.1 }
                }
                return total == 12 && series().count == 2
            }
            #expect(series() == ["web_1", "web_2"])
            #expect(total == 12)
            #expect(carbon.fetch("stats_counts.web_1.hits").reduce(0) { $0 + $1.1 } == 5)
        }

        @Test("a dead upstream never holds up the flushes of the others or ingest")
        func deadUpstream() throws {
            let graphite = try LineSink()
            let blackHole = try LineSink()  // accepts, reads, never answers: an HTTP upstream that hangs
            let daemon = try SidestatProcess(
                config: testConfig(
                    graphitePort: graphite.port,
                    extra: """
                        backends: ["./backends/graphite", "librato"], shutdownTimeout: 2000,
                        librato: {user: "u", token: "t", api: "http://127.0.0.1:\(blackHole.port)"}
                        """))
            var sent = 0
            let start = Date()
            while Date().timeIntervalSince(start) < 5 {
                Send.udp(["steady:1|c"], port: daemon.udpPort)
                sent += 1
                Thread.sleep(forTimeInterval: 0.1)
            }
            #expect(graphite.connectionCount >= 4, "one Graphite flush per second")
            #expect(blackHole.connectionCount >= 1)
            #expect(daemon.terminate() == 0)
            #expect(graphite.lines.filter { $0.name == "stats_counts.steady" }.reduce(0) { $0 + Int($1.value)! } == sent)
            // The stuck upstream's figures are statsd's own gauges.
            let exception = graphite.lines.last { $0.name == "stats.gauges.statsd.backends.librato.last_exception" }
            let flush = graphite.lines.last { $0.name == "stats.gauges.statsd.backends.librato.last_flush" }
            #expect(exception != nil && flush != nil)
            #expect(Double(exception?.value ?? "0")! > Double(flush?.value ?? "0")!)
            #expect(graphite.lines.contains { $0.name == "stats.gauges.statsd.backends.librato.queued_bytes" && $0.value != "0" })
        }

        @Test("/healthz and /readyz: ready while deliveries succeed or are held, not once datapoints are dropped")
        func health() throws {
            let sink = try LineSink()
            let daemon = try SidestatProcess(config: testConfig(graphitePort: sink.port, extra: "httpPort: 0, shutdownTimeout: 1000"))
            #expect(daemon.httpPort > 0)
            #expect(try HTTP.get(port: daemon.httpPort, path: "/healthz").status == 200)
            #expect(try HTTP.get(port: daemon.httpPort, path: "/readyz").status == 200)
            #expect(try HTTP.get(port: daemon.httpPort, path: "/nothing").status == 404)
            sink.stop()  // held for retry within the bound: still ready
            #expect(daemon.waitForOutput("Flush failed; keeping it"))
            #expect(try HTTP.get(port: daemon.httpPort, path: "/readyz").status == 200)
            _ = try Send.management(["health down\n"], port: daemon.managementPort, until: "health: down\n")
            #expect(try HTTP.get(port: daemon.httpPort, path: "/healthz").status == 503)
            daemon.terminate()

            let dropping = try SidestatProcess(
                config: testConfig(graphitePort: sink.port, extra: "httpPort: 0, retryBufferBytes: 1, shutdownTimeout: 1000"))
            #expect(dropping.waitForOutput("retry.dropped_points="))
            let response = try HTTP.get(port: dropping.httpPort, path: "/readyz")
            #expect(response.status == 503)
            #expect(response.body == "not ready: dropping datapoints for graphite\n")
            let stats = try Send.management(["stats\n"], port: dropping.managementPort)
            #expect(stats.contains("graphite.queued_bytes: "))
            #expect(!stats.contains("graphite.dropped_points: 0\n"))
            dropping.terminate()
        }

        @Test("the repeater forwards raw lines to another statsd, over UDP and TCP", arguments: ["udp4", "tcp"])
        func repeater(protocolName: String) throws {
            let sink = try LineSink()
            let downstream = try SidestatProcess(
                config: testConfig(
                    graphitePort: sink.port, flushInterval: 60_000, extra: "server: './servers/\(protocolName == "tcp" ? "tcp" : "udp")'"))
            let port = protocolName == "tcp" ? downstream.tcpPort : downstream.udpPort
            let upstream = try SidestatProcess(
                config: testConfig(
                    graphitePort: nil,
                    extra: """
                        backends: ["./backends/repeater"], repeaterProtocol: "\(protocolName)",
                        repeater: [{host: "127.0.0.1", port: \(port)}]
                        """))
            Send.udp(["fwd:2|c\nfwd:3|c", "t:7|ms|@0.5", "g:+4|g"], port: upstream.udpPort)
            // Forwarded as they arrive: the downstream statsd has all four lines before anything stops.
            #expect(
                try waitUntil(timeout: 10) {
                    try downstream.counters()
                        .contains("\"statsd.metrics_received\":4")
                })
            #expect(upstream.terminate() == 0)
            #expect(downstream.terminate() == 0)
            let lines = sink.lines
            #expect(lines.value("stats_counts.fwd") == "5")
            #expect(lines.value("stats.timers.t.count") == "2")  // the sample rate travels with the line
            #expect(lines.value("stats.gauges.g") == "4")
        }
    }
}
