//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import CoreMetrics
import Foundation
import SidestatClient
import Testing

extension EndToEnd {
    /// SidestatClient → a real `sidestat` → the Graphite lines of its flush: what each call means once aggregated.
    struct SwiftClientTests {
        /// A daemon with one interval a minute (the final flush on SIGTERM is the one read), flushing to `sink`.
        func daemon(_ sink: LineSink, extra: String = "") throws -> SidestatProcess {
            try SidestatProcess(config: testConfig(graphitePort: sink.port, flushInterval: 60_000, extra: extra))
        }

        @Test("every metric kind through swift-metrics and the plain API, with tags, sample rates and negative gauges",
              arguments: [false, true])
        func roundTrip(aggregates: Bool) throws {
            let sink = try LineSink()
            let daemon = try self.daemon(sink)
            let client = SidestatClient(
                .init(transport: .udp(host: "127.0.0.1", port: daemon.udpPort), maxDatagramSize: 512, aggregates: aggregates))
            let hits = Counter(label: "swift.hits", dimensions: [("route", "home")], factory: client)
            for _ in 0..<500 { hits.increment() }
            hits.increment(by: 250)
            FloatingPointCounter(label: "swift.bytes", factory: client).increment(by: 2.5)
            let timer = Timer(label: "swift.latency", factory: client)
            timer.recordMilliseconds(100)
            timer.recordMilliseconds(300)
            timer.recordNanoseconds(1_500_000)
            Recorder(label: "swift.size", factory: client).record(64)
            Recorder(label: "swift.level", aggregate: false, factory: client).record(-7.5)
            let queue = Meter(label: "swift.queue", dimensions: [("pool", "db")], factory: client)
            queue.set(10)
            queue.decrement(by: 25)
            client.gauge("swift.temperature", -3)
            client.gauge("swift.temperature", -4)
            for user in ["alice", "bob", "alice", "carol"] { client.set("swift.users", user, tags: ["env:prod"]) }
            for _ in 0..<2000 { client.increment("swift.sampled", sampleRate: 0.25) }
            client.timing("swift.render", .milliseconds(40), tags: ["env:prod"])
            client.distribution("swift.payload", 1024)
            client.distribution("swift.payload", 2048)
            client.event("Deploy", text: "v1.2.3", tags: ["env:prod"])
            client.serviceCheck("swift.db", status: .ok)
            client.shutdown()
            #expect(client.statistics.datagramsDropped == 0)
            #expect(daemon.terminate() == 0)

            let lines = sink.lines
            #expect(lines.value("stats_counts.swift.hits;route=home") == "750")
            #expect(lines.value("stats_counts.swift.bytes") == "2.5")
            #expect(lines.value("stats.timers.swift.latency.count") == "3")
            #expect(lines.value("stats.timers.swift.latency.upper") == "300")
            #expect(lines.value("stats.timers.swift.latency.lower") == "1.5")
            #expect(lines.value("stats.timers.swift.size.sum") == "64")
            #expect(lines.value("stats.gauges.swift.level") == "-7.5")
            #expect(lines.value("stats.gauges.swift.queue;pool=db") == "-15")
            #expect(lines.value("stats.gauges.swift.temperature") == "-4")
            #expect(lines.value("stats.sets.swift.users.count;env=prod") == "3")
            let sampled = Double(lines.value("stats_counts.swift.sampled") ?? "") ?? 0
            #expect((1400...2600).contains(sampled), "2000 calls sampled at 0.25 and scaled back: \(sampled)")
            #expect(lines.value("stats.timers.swift.render.mean;env=prod") == "40")
            #expect(lines.value("stats.timers.swift.payload.mean") == "1536")
            #expect(lines.value("stats_counts.statsd.events_received") == "1")
            #expect(lines.value("stats_counts.statsd.service_checks_received") == "1")
            #expect(lines.value("stats_counts.statsd.bad_lines_seen") == "0")
        }

        @Test("aggregated in the client: as many metrics as calls arrive, one line per key")
        func aggregationSendsFewerLines() throws {
            let sink = try LineSink()
            let daemon = try self.daemon(sink)
            let client = SidestatClient(.init(transport: .udp(host: "127.0.0.1", port: daemon.udpPort), aggregates: true))
            let counter = Counter(label: "agg.hits", factory: client)
            for _ in 0..<10_000 { counter.increment() }
            client.shutdown()
            #expect(client.statistics.datagramsSent == 1)
            #expect(daemon.terminate() == 0)
            let lines = sink.lines
            #expect(lines.value("stats_counts.agg.hits") == "10000")
            #expect(lines.value("stats_counts.statsd.metrics_received") == "1")
        }

        @Test("over a Unix datagram socket, and to ::1 with the default listeners (both loopbacks)")
        func transports() throws {
            let path = TestPaths.temporaryDirectory().appendingPathComponent("client.socket").path
            let sink = try LineSink()
            let daemon = try self.daemon(
                sink, extra: "servers: [{ server: './servers/udp', port: \(freePort()) }, { server: './servers/unixgram', socket: '\(path)' }]")
            let unix = SidestatClient(.init(transport: .unixDatagram(path: path)))
            Counter(label: "unix.hits", factory: unix).increment(by: 3)
            unix.shutdown()
            #expect(daemon.terminate() == 0)
            #expect(sink.lines.value("stats_counts.unix.hits") == "3")

            let sink6 = try LineSink()
            let daemon6 = try self.daemon(sink6)
            let v6 = SidestatClient(.init(transport: .udp(host: "::1", port: daemon6.udpPort)))
            Counter(label: "v6.hits", factory: v6).increment(by: 4)
            v6.shutdown()
            #expect(daemon6.terminate() == 0)
            #expect(sink6.lines.value("stats_counts.v6.hits") == "4")
        }
    }
}
