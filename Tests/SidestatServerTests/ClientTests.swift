//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import Testing

extension EndToEnd {
    /// Real statsd clients from PyPI, each in its own virtualenv (scripts/test makes them): what they send means what
    /// their calls mean once Sidestat has flushed it.
    struct ClientTests {
        /// Runs `script` with the virtualenv's python, `PORT` replaced by Sidestat's UDP port, then flushes with
        /// SIGTERM (all in one interval) and returns the Graphite lines.
        func run(package: String, script: String) throws -> [LineSink.Line] {
            let python = try Self.python(package)
            let sink = try LineSink()
            let daemon = try SidestatProcess(config: testConfig(graphitePort: sink.port, flushInterval: 60_000))
            let (status, output) = runProcess(
                python, ["-c", script.replacingOccurrences(of: "PORT", with: String(daemon.udpPort))])
            #expect(status == 0, "\(output)")
            // No wait: on SIGTERM the UDP reader drains what the kernel holds before the final flush.
            #expect(daemon.terminate() == 0)
            return sink.lines
        }

        /// Runs `script` with the virtualenv's python and expects it to succeed.
        func client(_ package: String, _ script: String) throws {
            let (status, output) = runProcess(try Self.python(package), ["-c", script])
            #expect(status == 0, "\(output)")
        }

        /// A daemon with one interval a minute, on a UDP port and on `listener`.
        func daemon(flushingTo sink: LineSink, alsoOn listener: String) throws -> SidestatProcess {
            try SidestatProcess(
                config: testConfig(
                    graphitePort: sink.port, flushInterval: 60_000,
                    extra: "servers: [{ server: './servers/udp', port: \(freePort()) }, \(listener)]"))
        }

        /// The virtualenv's python for `package`.
        static func python(_ package: String) throws -> String {
            let python = TestPaths.venvPython(package)
            guard FileManager.default.isExecutableFile(atPath: python) else {
                throw TestFailure("\(python) is missing: run scripts/test, which installs the PyPI clients")
            }
            return python
        }

        @Test("PyPI statsd: counters, timers, gauges (with deltas), sets and pipelines")
        func statsd() throws {
            let lines = try self.run(
                package: "statsd",
                script: """
                    import statsd
                    c = statsd.StatsClient('127.0.0.1', PORT, prefix='app')
                    for _ in range(5):
                        c.incr('hits')
                    c.incr('hits', 3)
                    c.decr('hits')
                    c.timing('latency', 120)
                    c.timing('latency', 80)
                    c.gauge('queue', 10)
                    c.gauge('queue', 5, delta=True)
                    c.gauge('queue', -2, delta=True)
                    for user in ['alice', 'bob', 'alice']:
                        c.set('users', user)
                    with c.pipeline() as pipe:
                        pipe.incr('piped')
                        pipe.incr('piped')
                        pipe.timing('piped.t', 7)
                    """)
            #expect(lines.value("stats_counts.app.hits") == "7")
            #expect(lines.value("stats.timers.app.latency.mean") == "100")
            #expect(lines.value("stats.timers.app.latency.count") == "2")
            #expect(lines.value("stats.gauges.app.queue") == "13")
            #expect(lines.value("stats.sets.app.users.count") == "2")
            #expect(lines.value("stats_counts.app.piped") == "2")
            #expect(lines.value("stats.timers.app.piped.t.sum") == "7")
            #expect(lines.value("stats_counts.statsd.bad_lines_seen") == "0")
        }

        @Test("PyPI statsd over TCP (TCPStatsClient, newline-delimited) beside UDP: both add up")
        func statsdTCP() throws {
            let sink = try LineSink()
            let port = freePort()
            let daemon = try self.daemon(flushingTo: sink, alsoOn: "{ server: './servers/tcp', port: \(port) }")
            let script = """
                import statsd
                tcp = statsd.TCPStatsClient('127.0.0.1', \(port), prefix='tcp')
                for _ in range(20):
                    tcp.incr('hits')
                tcp.timing('latency', 40)
                tcp.gauge('queue', 3)
                tcp.set('users', 'alice')
                with tcp.pipeline() as pipe:
                    pipe.incr('hits', 5)
                    pipe.timing('latency', 60)
                tcp.close()
                statsd.StatsClient('127.0.0.1', \(daemon.udpPort), prefix='tcp').incr('hits', 100)
                """
            try self.client("statsd", script)
            #expect(try waitUntil(timeout: 10) { try daemon.counters().contains("\"tcp.hits\":125") })
            #expect(daemon.terminate() == 0)
            let lines = sink.lines
            #expect(lines.value("stats_counts.tcp.hits") == "125")
            #expect(lines.value("stats.timers.tcp.latency.mean") == "50")
            #expect(lines.value("stats.gauges.tcp.queue") == "3")
            #expect(lines.value("stats.sets.tcp.users.count") == "1")
            #expect(lines.value("stats_counts.statsd.bad_lines_seen") == "0")
        }

        @Test("PyPI python-statsd: counters, timers and gauges (it has no sets)")
        func pythonStatsd() throws {
            let lines = try self.run(
                package: "python-statsd",
                script: """
                    import statsd
                    statsd.Connection.set_defaults(host='127.0.0.1', port=PORT)
                    counter = statsd.Counter('py')
                    counter.increment('hits')
                    counter.increment('hits', 4)
                    counter.decrement('hits', 2)
                    timer = statsd.Timer('py')
                    timer.send('latency', 0.25)
                    timer.send('latency', 0.75)
                    gauge = statsd.Gauge('py')
                    gauge.send('queue', 10)
                    gauge.increment('queue', 5)
                    gauge.decrement('queue', 3)
                    """)
            #expect(lines.value("stats_counts.py.hits") == "3")
            #expect(lines.value("stats.timers.py.latency.mean") == "500")
            #expect(lines.value("stats.timers.py.latency.upper") == "750")
            #expect(lines.value("stats.gauges.py.queue") == "12")
            #expect(lines.value("stats_counts.statsd.bad_lines_seen") == "0")
        }

        @Test("PyPI datadog: tagged metrics become Graphite tags; events and service checks are not bad lines")
        func datadog() throws {
            let lines = try self.run(
                package: "datadog",
                script: """
                    from datadog.dogstatsd import DogStatsd
                    d = DogStatsd(host='127.0.0.1', port=PORT, disable_telemetry=True)
                    d.increment('dd.hits', tags=['env:prod', 'role:web'])
                    d.increment('dd.hits', 2, tags=['env:prod', 'role:web'])
                    d.decrement('dd.hits', tags=['env:prod', 'role:web'])
                    d.gauge('dd.temp', 21.5, tags=['env:prod'])
                    d.timing('dd.latency', 30, tags=['env:prod'])
                    d.timing('dd.latency', 50, tags=['env:prod'])
                    d.set('dd.users', 'u1', tags=['env:prod'])
                    d.set('dd.users', 'u2', tags=['env:prod'])
                    d.increment('dd.plain')
                    d.event('Deploy', 'v1.2.3', tags=['env:prod'])
                    d.service_check('dd.check', 0)
                    d.flush()
                    """)
            #expect(lines.value("stats_counts.dd.hits;env=prod;role=web") == "2")
            #expect(lines.value("stats.gauges.dd.temp;env=prod") == "21.5")
            #expect(lines.value("stats.timers.dd.latency.mean;env=prod") == "40")
            #expect(lines.value("stats.sets.dd.users.count;env=prod") == "2")
            #expect(lines.value("stats_counts.dd.plain") == "1")
            #expect(lines.value("stats_counts.statsd.bad_lines_seen") == "0")
        }

        @Test("both loopbacks by default: PyPI statsd over ::1 and over 127.0.0.1 add up; an address in the file means only it")
        func bothLoopbacks() throws {
            let sink = try LineSink()
            let daemon = try SidestatProcess(config: testConfig(graphitePort: sink.port, flushInterval: 60_000))
            #expect(daemon.output.contains("udp6=[::1]:\(daemon.udpPort)"), "\(daemon.output)")
            let script = """
                import statsd
                statsd.StatsClient('::1', \(daemon.udpPort), ipv6=True).incr('lo.hits', 2)
                statsd.StatsClient('127.0.0.1', \(daemon.udpPort)).incr('lo.hits', 3)
                """
            try self.client("statsd", script)
            #expect(daemon.terminate() == 0)
            #expect(sink.lines.value("stats_counts.lo.hits") == "5")

            let explicit = try SidestatProcess(
                config: testConfig(graphitePort: nil, flushInterval: 60_000, extra: "address: '127.0.0.1'"))
            #expect(!explicit.output.contains("udp6="), "\(explicit.output)")
            #expect(explicit.terminate() == 0)
        }

        @Test("no IPv6 loopback to be had (the port taken there): a warning, and 127.0.0.1 still receives")
        func ipv6LoopbackTaken() throws {
            let port = freePort()
            // Hold the port on ::1, as a host without an IPv6 loopback would refuse it.
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
            var result: UnsafeMutablePointer<addrinfo>? = nil
            #expect(getaddrinfo("::1", String(port), &hints, &result) == 0)
            let info = try #require(result)
            defer { freeaddrinfo(result) }
            let holder = socket(info.pointee.ai_family, Int32(SOCK_DGRAM.rawValue), 0)
            defer { close(holder) }
            #expect(bind(holder, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0)
            let sink = try LineSink()
            let config = """
                { port: \(port), mgmt_port: \(freePort()), flushInterval: 60000, graphiteHost: '127.0.0.1',
                  graphitePort: \(sink.port) }
                """
            let daemon = try SidestatProcess(config: config)
            #expect(daemon.udpPort == port)
            #expect(daemon.output.contains("Not listening on the IPv6 loopback; 127.0.0.1 only"), "\(daemon.output)")
            Send.udp(["v4.hits:4|c"], port: port)
            #expect(daemon.terminate() == 0)
            #expect(sink.lines.value("stats_counts.v4.hits") == "4")
        }

        @Test("PyPI datadog over a Unix datagram socket: its mode set, a stale socket file replaced, removed on exit")
        func datadogUnixDatagram() throws {
            let path = TestPaths.temporaryDirectory().appendingPathComponent("dsd.socket").path
            // A socket file left behind by a process that is gone.
            try self.client("datadog", "import socket; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).bind('\(path)')")
            #expect(FileManager.default.fileExists(atPath: path))
            let sink = try LineSink()
            let daemon = try self.daemon(flushingTo: sink, alsoOn: "{ server: './servers/unixgram', socket: '\(path)', socket_mod: 0o660 }")
            #expect(daemon.output.contains("unixgram=\(path)"), "\(daemon.output)")
            let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
            #expect(mode == 0o660)
            let script = """
                from datadog.dogstatsd import DogStatsd
                d = DogStatsd(socket_path='\(path)', disable_telemetry=True)
                d.increment('uds.hits', 2, tags=['env:prod'])
                d.distribution('uds.dist', 8)
                d.gauge('uds.temp', -3)
                d.event('Deploy', 'v1')
                d.flush()
                """
            try self.client("datadog", script)
            #expect(daemon.terminate() == 0)
            let lines = sink.lines
            #expect(lines.value("stats_counts.uds.hits;env=prod") == "2")
            #expect(lines.value("stats.timers.uds.dist.mean") == "8")
            #expect(lines.value("stats.gauges.uds.temp") == "-3")
            #expect(lines.value("stats_counts.statsd.bad_lines_seen") == "0")
            #expect(!FileManager.default.fileExists(atPath: path), "the socket file is removed on exit")

            // A file that is not a socket is never replaced: start-up stops and says why.
            try "keep me".write(toFile: path, atomically: true, encoding: .utf8)
            let (status, output) = try SidestatProcess.run([
                "--config",
                try {
                    let file = TestPaths.temporaryDirectory().appendingPathComponent("config.js")
                    try "{ servers: [{ server: './servers/unixgram', socket: '\(path)' }], mgmt_port: 0 }"
                        .write(to: file, atomically: true, encoding: .utf8)
                    return file.path
                }(),
            ])
            #expect(status == 2)
            #expect(output.contains("cannot listen on the Unix datagram socket \(path)"), "\(output)")
            #expect((try? String(contentsOfFile: path, encoding: .utf8)) == "keep me")
        }

        @Test("PyPI datadog in unixstream:// mode: length-prefixed frames on a Unix stream socket (framing: 'length')")
        func datadogUnixStream() throws {
            let path = TestPaths.temporaryDirectory().appendingPathComponent("dsd-stream.socket").path
            let sink = try LineSink()
            let daemon = try self.daemon(flushingTo: sink, alsoOn: "{ server: './servers/tcp', socket: '\(path)', framing: 'length' }")
            let script = """
                from datadog.dogstatsd import DogStatsd
                d = DogStatsd(socket_path='unixstream://\(path)', disable_telemetry=True)
                for i in range(50):
                    d.increment('us.hits', tags=['env:prod'])
                d.distribution('us.dist', 9)
                d.service_check('us.check', 1, message='degraded')
                d.flush()
                d.close_socket()
                """
            try self.client("datadog", script)
            #expect(try waitUntil(timeout: 10) { try daemon.counters().contains("\"us.hits;env=prod\":50") })
            #expect(daemon.terminate() == 0)
            let lines = sink.lines
            #expect(lines.value("stats_counts.us.hits;env=prod") == "50")
            #expect(lines.value("stats.timers.us.dist.mean") == "9")
            #expect(lines.value("stats_counts.statsd.bad_lines_seen") == "0")
        }

        @Test("length framing: a frame split across reads is whole; an oversized length is a bad line and closes the connection")
        func lengthFraming() throws {
            let daemon = try SidestatProcess(
                config: testConfig(
                    graphitePort: nil, flushInterval: 60_000,
                    extra: "servers: [{ server: './servers/tcp', port: \(freePort()), framing: 'length' }]"))
            func frame(_ text: String) -> [UInt8] {
                let payload = Array(text.utf8)
                return withUnsafeBytes(of: UInt32(payload.count).littleEndian) { Array($0) } + payload
            }
            let first = frame("a:1|c\nb:2|c")
            let second = frame("a:4|c")
            try Send.tcp([Array(first[0..<7]), Array(first[7...]) + Array(second[0..<2]), Array(second[2...])], port: daemon.tcpPort)
            #expect(try waitUntil(timeout: 10) { try daemon.counters().contains("\"a\":5,\"b\":2") })
            try Send.tcp([withUnsafeBytes(of: UInt32(70_000).littleEndian) { Array($0) } + Array("c:1|c".utf8), frame("never:1|c")], port: daemon.tcpPort)
            #expect(
                try waitUntil(timeout: 10) {
                    try Send.management(["stats\n"], port: daemon.managementPort).contains("messages.bad_lines_seen: 1\n")
                })
            #expect(try !daemon.counters().contains("never"))
            #expect(daemon.terminate() == 0)
        }

        @Test("PyPI datadog: distributions as timers; late points at their own time; container ids, events and service checks are read past")
        func datadogDialect() throws {
            let lines = try self.run(
                package: "datadog",
                script: """
                    import time
                    from datadog.dogstatsd import DogStatsd
                    d = DogStatsd(host='127.0.0.1', port=PORT, disable_telemetry=True, container_id='abc123')
                    d.distribution('dd.dist', 5, tags=['env:prod'])
                    d.distribution('dd.dist', 15, tags=['env:prod'])
                    d.gauge_with_timestamp('dd.ts', 7, timestamp=int(time.time()))
                    d.count_with_timestamp('dd.cts', 3, timestamp=int(time.time()))
                    d.count_with_timestamp('dd.late', 2, timestamp=int(time.time()) - 3600)
                    d.increment('dd.hits', tags=['env:prod'])
                    d.event('Deploy', 'v1.2.3', tags=['env:prod'])
                    d.service_check('dd.check', 0, message='ok')
                    d.flush()
                    """)
            #expect(lines.value("stats.timers.dd.dist.mean;env=prod") == "10")
            #expect(lines.value("stats.timers.dd.dist.count;env=prod") == "2")
            #expect(lines.value("stats.gauges.dd.ts") == "7")
            #expect(lines.value("stats_counts.dd.cts") == "3")
            // An hour late: sent to carbon at the time of the flush that ended its interval (a minute long here).
            let late = try #require(lines.first { $0.name == "stats_counts.dd.late" })
            #expect(late.value == "2")
            let now = Int(Date().timeIntervalSince1970)
            #expect(late.timestamp > now - 3700 && late.timestamp <= now - 3500, "\(late)")
            #expect(lines.filter { $0.name == "stats_counts.dd.late" }.count == 1)
            #expect(lines.value("stats_counts.statsd.late_points") == "1")
            #expect(lines.value("stats_counts.dd.hits;env=prod") == "1")
            #expect(lines.value("stats_counts.statsd.events_received") == "1")
            #expect(lines.value("stats_counts.statsd.service_checks_received") == "1")
            #expect(lines.value("stats_counts.statsd.bad_lines_seen") == "0")
        }
    }
}
