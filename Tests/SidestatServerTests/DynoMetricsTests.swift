//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import Testing

extension EndToEnd {
    /// `sidestat start` reports the dyno with no code in the app: each process's memory and CPU, the dyno's memory
    /// against its quota, and the l2met metrics the processes print, all through Graphite at a sink.
    struct DynoMetricsTests {
        /// A `web` process that holds 80 MB and prints two lines of l2met metrics, and a `burn` process that keeps
        /// one core busy.
        static let procfile = """
            web: python3 -c "import time; hold = b'x' * (80 * 1024 * 1024); print('count#app.signups=2 measure#db.query=12ms sample#queue.depth=4 unique#user=alice\\nsource=web.1 count#app.signups=3 measure#db.query=0.5s unique#user=bob count#=1 measure#bad=fast', flush=True); time.sleep(60)"
            burn: python3 -c "while True: pass"

            """

        /// `sidestat start` in a directory holding the Procfile, Graphite at `sink`, 1 s flushes.
        static func start(_ extra: [String], sink: LineSink, config: String = "") throws -> SidestatProcess {
            let directory = TestPaths.temporaryDirectory()
            try Self.procfile.write(to: directory.appendingPathComponent("Procfile"), atomically: true, encoding: .utf8)
            try testConfig(graphitePort: sink.port, extra: config)
                .write(to: directory.appendingPathComponent("statsd.js"), atomically: true, encoding: .utf8)
            var environment = ProcessInfo.processInfo.environment
            environment.removeValue(forKey: "PORT")
            return try SidestatProcess(
                arguments: ["start", "--config", "statsd.js", "--no-dashboard"] + extra, environment: environment,
                workingDirectory: directory)
        }

        /// The pid `sidestat start` gave a process (`web.1 started (pid=N)`).
        static func pid(_ name: String, in output: String) -> pid_t? {
            guard let range = output.range(of: "\(name) started (pid=") else { return nil }
            return pid_t(output[range.upperBound...].prefix { $0.isNumber })
        }

        /// VmRSS of a process and its children, in bytes.
        static func residentBytes(_ pid: pid_t) -> Int {
            func vmRSS(_ pid: String) -> Int {
                let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
                let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
                return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) * 1024
            }
            let children = ((try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8)) ?? "")
                .split(whereSeparator: { $0 == " " || $0 == "\n" })
            return vmRSS(String(pid)) + children.reduce(0) { $0 + vmRSS(String($1)) }
        }

        static func values(_ name: String, _ sink: LineSink) -> [Double] {
            sink.lines.filter { $0.name == name }.compactMap { Double($0.value) }
        }

        @Test("process memory and CPU, the dyno's memory, and l2met lines as exact metrics, at Graphite")
        func processAndLogMetrics() throws {
            let sink = try LineSink()
            let start = try Self.start([], sink: sink)
            let output = { start.output }
            #expect(start.waitForOutput("count#app.signups=2"), "\(output())")
            // A few flushes while web holds its memory and burn spins.
            #expect(try waitUntil(timeout: 20) { Self.values("stats.processes.burn.1.cpu_seconds", sink).count >= 4 })
            let web = try #require(Self.pid("web.1", in: output()))
            let expected = Double(Self.residentBytes(web))
            let reported = try #require(Self.values("stats.gauges.processes.web.1.memory_rss_bytes", sink).last)
            #expect(expected > 80 * 1_048_576)
            #expect(abs(reported - expected) / expected <= 0.15, "reported \(reported), VmRSS \(expected)")
            let burn = Self.values("stats.processes.burn.1.cpu_seconds", sink)
            #expect((burn.max() ?? 0) >= 0.6, "burn's CPU seconds per second: \(burn)")
            #expect(!Self.values("stats.gauges.dyno.memory_bytes", sink).isEmpty)
            #expect(!Self.values("stats.gauges.dyno.load_avg_1m", sink).isEmpty)
            #expect(!Self.values("stats_counts.processes.web.1.cpu_seconds", sink).isEmpty)
            // The l2met values, whichever flushes they fell in: source=web.1 is no tag, the same series.
            #expect(Self.values("stats_counts.app.signups", sink).reduce(0, +) == 5)
            let counts = Self.values("stats.timers.db.query.count", sink)
            #expect(counts.reduce(0, +) == 2)
            #expect(Self.values("stats.timers.db.query.lower", sink).filter { $0 > 0 }.min() == 12)
            #expect(Self.values("stats.timers.db.query.upper", sink).max() == 500)
            #expect(Self.values("stats.gauges.queue.depth", sink).last == 4)
            #expect(Self.values("stats.sets.user.count", sink).reduce(0, +) == 2)
            // The malformed tokens (an empty name, a value that is no number) are bad lines, said once; the line
            // itself is printed unchanged.
            #expect(Self.values("stats_counts.statsd.bad_lines_seen", sink).reduce(0, +) == 2)
            #expect(output().contains("source=web.1 count#app.signups=3 measure#db.query=0.5s unique#user=bob count#=1 measure#bad=fast"))
            #expect(output().components(separatedBy: "could not be read (l2met").count - 1 == 1, "\(output())")
            // They are Sidestat's own lines: no packet was received.
            #expect(Self.values("stats_counts.statsd.packets_received", sink).reduce(0, +) == 0)
            #expect(start.terminate() == 143)
        }

        @Test("past 90% of the memory quota: one warning per crossing, naming the process with the most memory")
        func quotaWarning() throws {
            let sink = try LineSink()
            let start = try Self.start(["--memory-quota", "60MB"], sink: sink)
            #expect(start.waitForOutput("dyno memory is at", timeout: 20), "\(start.output)")
            #expect(try waitUntil(timeout: 20) { Self.values("stats.gauges.dyno.memory_quota_bytes", sink).count >= 3 })
            #expect(Self.values("stats.gauges.dyno.memory_quota_bytes", sink).last.map { Int($0) } == 62_914_560)
            let warnings = start.output.split(separator: "\n").filter { $0.contains("dyno memory is at") }
            #expect(warnings.count == 1, "\(warnings)")
            #expect(warnings.first?.contains("of its quota") == true)
            #expect(warnings.first?.contains("web.1 holds the most") == true, "\(warnings)")
            #expect(warnings.first?.contains("R14") == true)
            #expect(start.terminate() == 143)
        }

        @Test("--no-process-metrics and --no-log-metrics (and their config keys) turn each off; --help lists them")
        func switches() throws {
            for (flags, config, processes, logs) in [
                (["--no-process-metrics"], "", false, true), (["--no-log-metrics"], "", true, false),
                ([], "processMetrics: false, logMetrics: false", false, false),
            ] as [([String], String, Bool, Bool)] {
                let sink = try LineSink()
                let start = try Self.start(flags, sink: sink, config: config)
                #expect(start.waitForOutput("count#app.signups=2"))
                // Three flushes after the lines were printed.
                #expect(try waitUntil(timeout: 20) { Self.values("statsd.numStats", sink).count >= 3 })
                #expect(sink.lines.contains { $0.name.contains("processes.") } == processes, "\(flags) \(config)")
                #expect(sink.lines.contains { $0.name.contains("app.signups") } == logs, "\(flags) \(config)")
                #expect(start.terminate() == 143)
            }
            let (status, help) = try SidestatProcess.run(["start", "--help"])
            #expect(status == 0)
            #expect(help.contains("--no-process-metrics") && help.contains("--no-log-metrics") && help.contains("--memory-quota"))
        }
    }
}
