//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import CoreMetrics
import Foundation
import Testing

@testable import SidestatClient

/// The client's exact datagrams, read by a plain UDP socket: what each call writes, how lines are batched, what
/// aggregation sends, and what happens with no server.
@Suite struct SidestatClientTests {
    func client(_ receiver: Receiver, aggregates: Bool = false, _ change: (inout SidestatClient.Configuration) -> Void = { _ in })
        -> SidestatClient
    {
        var configuration = SidestatClient.Configuration(
            transport: .udp(host: "127.0.0.1", port: receiver.port), flushInterval: .seconds(3600), aggregates: aggregates)
        change(&configuration)
        return SidestatClient(configuration)
    }

    @Test("numbers: integers of any size, milliseconds from nanoseconds exactly, doubles as their shortest text")
    func numbers() {
        func text(_ write: (inout [UInt8]) -> Void) -> String {
            var bytes: [UInt8] = []
            write(&bytes)
            return String(decoding: bytes, as: UTF8.self)
        }
        #expect(text { LineFormat.append(Int64(0), to: &$0) } == "0")
        #expect(text { LineFormat.append(Int64(-42), to: &$0) } == "-42")
        #expect(text { LineFormat.append(Int64.min, to: &$0) } == "-9223372036854775808")
        #expect(text { LineFormat.append(Int64.max, to: &$0) } == "9223372036854775807")
        #expect(text { LineFormat.appendMilliseconds(1_500_000, to: &$0) } == "1.5")
        #expect(text { LineFormat.appendMilliseconds(12_345_678, to: &$0) } == "12.345678")
        #expect(text { LineFormat.appendMilliseconds(250_000_000, to: &$0) } == "250")
        #expect(text { LineFormat.appendMilliseconds(7, to: &$0) } == "0.000007")
        #expect(text { LineFormat.appendMilliseconds(-2_000_000, to: &$0) } == "-2")
        #expect(text { _ = LineFormat.append(21.5, to: &$0) } == "21.5")
        #expect(text { _ = LineFormat.append(-3.0, to: &$0) } == "-3")
        #expect(text { _ = LineFormat.append(1e300, to: &$0) } == "1e+300")
        var bytes: [UInt8] = []
        #expect(!LineFormat.append(Double.nan, to: &bytes))
        #expect(!LineFormat.append(-Double.infinity, to: &bytes))
    }

    @Test("swift-metrics: each kind writes its statsd line, dimensions as DogStatsD tags, the prefix and global tags")
    func handlerLines() {
        let receiver = Receiver()
        let client = self.client(receiver) { $0.prefix = "app"; $0.tags = ["service:web"] }
        defer { client.shutdown() }
        client.makeCounter(label: "hits", dimensions: [("route", "home")]).increment(by: 3)
        client.makeFloatingPointCounter(label: "bytes", dimensions: []).increment(by: 0.5)
        client.makeTimer(label: "latency", dimensions: [("flag", "")]).recordNanoseconds(1_500_000)
        client.makeRecorder(label: "size", dimensions: [], aggregate: true).record(Int64(512))
        client.makeRecorder(label: "level", dimensions: [], aggregate: false).record(7.25)
        let meter = client.makeMeter(label: "queue", dimensions: [])
        meter.set(Int64(10))
        meter.increment(by: 2)
        meter.decrement(by: 20)
        client.flush()
        #expect(receiver.lines(9) == [
            "app.hits:3|c|#service:web,route:home",
            "app.bytes:0.5|c|#service:web",
            "app.latency:1.5|ms|#service:web,flag",
            "app.size:512|ms|#service:web",
            "app.level:7.25|g|#service:web",
            "app.queue:10|g|#service:web",
            "app.queue:12|g|#service:web",
            "app.queue:0|g|#service:web",
            "app.queue:-8|g|#service:web",
        ])
    }

    @Test("options: a Recorder as a distribution, dimensions as name segments, names the wire cannot carry")
    func options() {
        let receiver = Receiver()
        let client = self.client(receiver) { $0.recorderType = .distribution; $0.dimensions = .nameSegments }
        defer { client.shutdown() }
        client.makeRecorder(label: "size", dimensions: [("region", "eu")], aggregate: true).record(2.5)
        client.makeCounter(label: "a:b|c", dimensions: [("route", "home"), ("flag", "")]).increment(by: 1)
        client.flush()
        #expect(receiver.lines(2) == ["size.region.eu:2.5|d", "a_b_c.route.home.flag:1|c"])
    }

    @Test("a negative gauge goes as 0 then the value, in one datagram, even where the batch is full")
    func negativeGaugeOneDatagram() {
        let receiver = Receiver()
        let client = self.client(receiver) { $0.maxDatagramSize = 100 }
        defer { client.shutdown() }
        let gauge = client.makeMeter(label: "temperature.outside", dimensions: [])
        for value in stride(from: -1.0, through: -30, by: -1) { gauge.set(value) }
        client.flush()
        let datagrams = receiver.datagrams { $0.count >= 60 }
        #expect(datagrams.count > 1)
        for datagram in datagrams {
            let lines = datagram.split(separator: "\n")
            #expect(lines.count % 2 == 0 && datagram.utf8.count <= 100, "\(datagram)")
            for pair in stride(from: 0, to: lines.count, by: 2) {
                #expect(lines[pair] == "temperature.outside:0|g")
                #expect(lines[pair + 1].hasPrefix("temperature.outside:-"))
            }
        }
    }

    @Test("batching: lines fill datagrams up to the size and never split; nothing is lost")
    func batching() {
        let receiver = Receiver()
        let client = self.client(receiver)
        defer { client.shutdown() }
        let counter = client.makeCounter(label: "requests.served", dimensions: [("route", "home")])
        for _ in 0..<2000 { counter.increment(by: 1) }
        client.flush()
        let datagrams = receiver.datagrams { $0.count >= 2000 }
        let lines = datagrams.flatMap { $0.split(separator: "\n") }
        #expect(lines.count == 2000)
        #expect(lines.allSatisfy { $0 == "requests.served:1|c|#route:home" })
        #expect(datagrams.allSatisfy { $0.utf8.count <= 1432 })
        #expect(datagrams.dropLast().allSatisfy { $0.utf8.count > 1432 - 33 }, "full datagrams")
        #expect(client.statistics.datagramsSent == datagrams.count)
    }

    @Test("aggregation: one line per key and interval; a set sends each member once; timers send every value")
    func aggregation() {
        let receiver = Receiver()
        let client = self.client(receiver, aggregates: true)
        defer { client.shutdown() }
        let counter = client.makeCounter(label: "hits", dimensions: [])
        let meter = client.makeMeter(label: "queue", dimensions: [])
        let timer = client.makeTimer(label: "latency", dimensions: [])
        for index in 1...1000 {
            counter.increment(by: 1)
            meter.set(Int64(index))
            client.set("users", index.isMultiple(of: 2) ? "alice" : "bob")
            client.increment("plain")
            client.gauge("plain.gauge", -Double(index))
        }
        timer.recordNanoseconds(2_000_000)
        timer.recordNanoseconds(4_000_000)
        client.flush()
        let lines = Set(receiver.lines(9))
        #expect(lines == [
            "latency:2|ms", "latency:4|ms", "hits:1000|c", "queue:1000|g", "plain:1000|c", "plain.gauge:0|g",
            "plain.gauge:-1000|g", "users:alice|s", "users:bob|s",
        ])
        // Nothing changed since: the next flush sends nothing.
        client.flush()
        #expect(receiver.next(timeout: 0.3) == nil)
        counter.increment(by: 2)
        client.flush()
        #expect(receiver.lines(1) == ["hits:2|c"])
    }

    @Test("sample rates go with sampled calls; a rate of 0 sends nothing")
    func sampleRates() {
        let receiver = Receiver()
        let client = self.client(receiver, aggregates: true)
        defer { client.shutdown() }
        for _ in 0..<200 {
            client.increment("sampled", sampleRate: 0.5, tags: ["env:prod"])
            client.timing("t", .milliseconds(3), sampleRate: 0.5)
            client.distribution("d", 1.25, sampleRate: 0)
        }
        client.flush()
        let lines = receiver.datagrams(timeout: 0.5) { _ in false }.flatMap { $0.split(separator: "\n") }
        #expect(lines.filter { $0 == "sampled:1|c|@0.5|#env:prod" }.count > 50)
        #expect(lines.filter { $0 == "t:3|ms|@0.5" }.count > 50)
        #expect(lines.count < 400)
        #expect(!lines.contains { $0.hasPrefix("d:") })
    }

    @Test("events and service checks in DogStatsD's format")
    func eventsAndChecks() {
        let receiver = Receiver()
        let client = self.client(receiver)
        defer { client.shutdown() }
        client.event("Deploy", text: "v1.2\nall|good", alertType: .success, priority: .low, timestamp: 1_700_000_000, tags: ["env:prod"])
        client.serviceCheck("db.up", status: .critical, message: "no m: reply", hostname: "web.1", tags: ["env:prod"])
        client.flush()
        #expect(receiver.lines(2) == [
            "_e{6,14}:Deploy|v1.2\\nall|good|d:1700000000|p:low|t:success|#env:prod",
            "_sc|db.up|2|h:web.1|#env:prod|m:no m\\: reply",
        ])
    }

    @Test("no server: no error at the call site, every dropped datagram and line counted")
    func closedPort() {
        var port = 0
        do { port = Receiver().port }  // bound and closed: nothing listens there now
        let client = SidestatClient(.init(transport: .udp(host: "127.0.0.1", port: port), flushInterval: .seconds(3600), aggregates: false))
        let counter = client.makeCounter(label: "hits", dimensions: [])
        // The first datagram leaves; the port-unreachable answer makes the next ones fail.
        var rounds = 0
        while client.statistics.datagramsDropped < 3 && rounds < 100 {
            counter.increment(by: 1)
            client.flush()
            rounds += 1
        }
        #expect(client.statistics.datagramsDropped >= 3)
        #expect(client.statistics.linesDropped == client.statistics.datagramsDropped)

        let unix = SidestatClient(.init(transport: .unixDatagram(path: "/nonexistent/sidestat.sock"), flushInterval: .seconds(3600)))
        unix.makeTimer(label: "t", dimensions: []).recordNanoseconds(1)
        unix.shutdown()
        #expect(unix.statistics == .init(datagramsSent: 0, datagramsDropped: 1, linesDropped: 1))
        client.shutdown()
    }

    @Test("shutdown sends what is batched and aggregated; later calls are dropped and counted; it can be called twice")
    func shutdown() {
        let receiver = Receiver()
        let client = self.client(receiver, aggregates: true)
        let counter = client.makeCounter(label: "hits", dimensions: [])
        counter.increment(by: 5)
        client.timing("t", .milliseconds(1))
        client.shutdown()
        #expect(Set(receiver.lines(2)) == ["hits:5|c", "t:1|ms"])
        client.timing("t", .milliseconds(1))
        client.shutdown()
        counter.increment(by: 1)
        client.flush()
        #expect(client.statistics.linesDropped == 2)
        #expect(receiver.next(timeout: 0.3) == nil)
    }

    @Test("the flush thread sends on its interval without being asked")
    func interval() {
        let receiver = Receiver()
        let client = self.client(receiver, aggregates: true) { $0.flushInterval = .milliseconds(50) }
        defer { client.shutdown() }
        client.makeCounter(label: "hits", dimensions: []).increment(by: 1)
        #expect(receiver.lines(1) == ["hits:1|c"])
    }

    @Test("the environment `sidestat start` gives: STATSD_*, then DD_*, then 127.0.0.1:8125")
    func environment() {
        let names = ["STATSD_HOST", "STATSD_PORT", "DD_AGENT_HOST", "DD_DOGSTATSD_PORT", "DD_DOGSTATSD_SOCKET"]
        let saved = names.map { ($0, getenv($0).map { String(cString: $0) }) }
        defer { for (name, value) in saved { if let value { setenv(name, value, 1) } else { unsetenv(name) } } }
        names.forEach { unsetenv($0) }
        #expect(SidestatClient.Configuration.Transport.environment == .udp(host: "127.0.0.1", port: 8125))
        setenv("DD_AGENT_HOST", "localhost", 1)
        setenv("DD_DOGSTATSD_PORT", "9125", 1)
        #expect(SidestatClient.Configuration.Transport.environment == .udp(host: "localhost", port: 9125))
        setenv("STATSD_HOST", "::1", 1)
        setenv("STATSD_PORT", "not a port", 1)
        #expect(SidestatClient.Configuration.Transport.environment == .udp(host: "::1", port: 8125))
    }
}
