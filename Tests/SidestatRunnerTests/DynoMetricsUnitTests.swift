//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import SidestatRunner
import Synchronization
import Testing

/// l2met tokens read from log lines, and process metrics read from a /proc and a cgroup tree made for the test.
struct L2metTests {
    @Test(
        "each token becomes its statsd line",
        arguments: [
            ("count#app.signups", "app.signups:1|c\n"),
            ("count#app.signups=2", "app.signups:2|c\n"),
            ("count#bytes=1.5kB", "bytes:1.5|c\n"),
            ("measure#db.query=12ms", "db.query:12|ms\n"),
            ("measure#db.query=0.5s", "db.query:500|ms\n"),
            ("measure#db.query=250us", "db.query:0.25|ms\n"),
            ("measure#db.query=2000000ns", "db.query:2|ms\n"),
            ("measure#memory=80MB", "memory:80|ms\n"),
            ("measure#db.query=7", "db.query:7|ms\n"),
            ("sample#queue.depth=4", "queue.depth:4|g\n"),
            ("sample#load=12.5%", "load:12.5|g\n"),
            ("sample#balance=-3", "balance:0|g\nbalance:-3|g\n"),
            ("unique#user=alice", "user:alice|s\n"),
            ("at=info source=web.1 count#a count#b=3 sample#c=1e3", "a:1|c\nb:3|c\nc:1000|g\n"),
        ])
    func tokens(_ line: String, _ statsd: String) {
        #expect(L2met.scan(line) == L2met.Scan(statsd: statsd, malformed: 0))
    }

    @Test(
        "a token that starts like a metric but cannot be read is counted, and only it",
        arguments: [
            "count#", "count#=1", "count#a=x", "measure#a", "measure#a=", "measure#a=fast", "measure#a=1.2.3ms",
            "sample#a", "sample#a=", "unique#a", "unique#a=", "unique#a=x|y", "count#a:b=1", "measure#a=NaN",
        ])
    func malformed(_ token: String) {
        #expect(L2met.scan("at=info \(token) count#ok") == L2met.Scan(statsd: "ok:1|c\n", malformed: 1), "\(token)")
    }

    @Test("lines without metric tokens give nothing: no #, issue#42, a #hashtag, a URL fragment")
    func notMetrics() {
        for line in ["GET /index.html 200", "fixed issue#42", "#hashtag", "see /docs#count", "", "count"] {
            #expect(L2met.scan(line) == L2met.Scan(), "\(line)")
        }
    }
}

struct ProcessMetricsTests {
    /// A /proc with two supervised trees (web.1: 100 with a child 101 and a grandchild 102; worker.1: 200), and a
    /// cgroup tree of the given version.
    final class FakeHost {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("sidestat-proc-\(UUID().uuidString)")
        var proc: String { self.root.appendingPathComponent("proc").path }
        var cgroup: String { self.root.appendingPathComponent("cgroup").path }

        func write(_ path: String, _ text: String) throws {
            let url = self.root.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: url, atomically: true, encoding: .utf8)
        }

        /// A process: `rss` pages, `ticks` of utime, stime, cutime and cstime (each), and its children.
        func process(_ pid: Int, name: String = "python3 (x)", rssPages: Int, ticks: Int, children: [Int] = []) throws {
            // Fields after the name: state, ppid, ..., utime stime cutime cstime (the 12th to 15th), priority, nice,
            // num_threads (1), itrealvalue, starttime, vsize, rss (the 22nd, in pages).
            try self.write(
                "proc/\(pid)/stat",
                "\(pid) (\(name)) S 1 \(pid) \(pid) 0 -1 4194560 100 0 0 0 \(ticks) \(ticks) \(ticks) \(ticks) 20 0 1 0 1 1 \(rssPages) 18446744073709551615 1 1\n")
            try self.write("proc/\(pid)/task/\(pid)/children", children.map(String.init).joined(separator: " ") + " ")
        }

        deinit { try? FileManager.default.removeItem(at: self.root) }
    }

    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let hz = Double(sysconf(Int32(_SC_CLK_TCK)))

    func lines(_ text: String) -> [String: String] {
        var values: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            values[String(parts[0])] = String(parts[1])
        }
        return values
    }

    @Test("trees: RSS and CPU of a process and its descendants; CPU counts what each interval used; cgroup v2")
    func trees() throws {
        let host = FakeHost()
        try host.process(100, rssPages: 1000, ticks: 10, children: [101])
        try host.process(101, rssPages: 500, ticks: 5, children: [102])
        try host.process(102, rssPages: 250, ticks: 1)
        try host.process(200, rssPages: 100, ticks: 50)
        try host.write("proc/self/cgroup", "0::/dyno\n")
        try host.write("cgroup/dyno/memory.current", "734003200\n")
        try host.write("cgroup/dyno/memory.max", "1073741824\n")
        try host.write("proc/loadavg", "0.52 0.40 0.30 2/100 999\n")
        let metrics = ProcessMetrics(proc: host.proc, cgroupRoot: host.cgroup) { _ in }
        let processes: [(name: String, pid: pid_t)] = [("web.1", 100), ("worker.1", 200), ("gone.1", 999)]
        var values = self.lines(metrics.sample(processes))
        #expect(values["processes.web.1.memory_rss_bytes"] == "\(1750 * self.page)|g")
        #expect(values["processes.worker.1.memory_rss_bytes"] == "\(100 * self.page)|g")
        #expect(values["processes.web.1.cpu_seconds"] == "0|c", "the first sample counts from 0")
        #expect(values["processes.gone.1.memory_rss_bytes"] == nil)
        #expect(values["dyno.memory_bytes"] == "734003200|g")
        #expect(values["dyno.memory_quota_bytes"] == "1073741824|g")
        #expect(values["dyno.load_avg_1m"] == "0.52|g")
        // 30 more ticks in web's tree (10 in each of utime, stime and cutime of 101... as 7.5 per field of two).
        try host.process(100, rssPages: 1000, ticks: 15, children: [101])
        try host.process(101, rssPages: 500, ticks: 7, children: [102])
        values = self.lines(metrics.sample(processes))
        let web = try #require(values["processes.web.1.cpu_seconds"].flatMap { Double($0.dropLast(2)) })
        #expect(abs(web - 28 / self.hz) < 1e-9, "(5 + 2) × 4 fields = 28 ticks")
        #expect(values["processes.worker.1.cpu_seconds"] == "0|c")
    }

    @Test("cgroup v1, an unlimited one: no quota unless configured; without a cgroup, the processes' RSS and our own")
    func cgroupV1AndNone() throws {
        let host = FakeHost()
        try host.process(100, rssPages: 1000, ticks: 1)
        try host.write("proc/self/cgroup", "4:memory:/process_api/abc\n3:cpuset:/\n")
        try host.write("cgroup/memory/process_api/abc/memory.usage_in_bytes", "5000000\n")
        try host.write("cgroup/memory/process_api/abc/memory.limit_in_bytes", "9223372036854771712\n")
        var values = self.lines(ProcessMetrics(proc: host.proc, cgroupRoot: host.cgroup) { _ in }.sample([("web.1", 100)]))
        #expect(values["dyno.memory_bytes"] == "5000000|g")
        #expect(values["dyno.memory_quota_bytes"] == nil)
        values = self.lines(
            ProcessMetrics(quotaBytes: 512 << 20, proc: host.proc, cgroupRoot: host.cgroup) { _ in }.sample([("web.1", 100)]))
        #expect(values["dyno.memory_quota_bytes"] == "\(512 << 20)|g")
        try FileManager.default.removeItem(atPath: host.proc + "/self/cgroup")
        values = self.lines(ProcessMetrics(proc: host.proc, cgroupRoot: host.cgroup) { _ in }.sample([("web.1", 100)]))
        let own = try #require(values["dyno.memory_bytes"].flatMap { Int($0.dropLast(2)) })
        #expect(own >= 1000 * self.page, "the process's RSS and Sidestat's own")
    }

    @Test("the quota warning: once per crossing of 90%, again only after falling below 85%, naming the biggest")
    func quotaWarning() throws {
        let host = FakeHost()
        try host.process(100, rssPages: 10, ticks: 1)
        try host.process(200, rssPages: 20, ticks: 1)
        try host.write("proc/self/cgroup", "0::/\n")
        try host.write("cgroup/memory.max", "1000000\n")
        let warnings = Mutex<[String]>([])
        let metrics = ProcessMetrics(proc: host.proc, cgroupRoot: host.cgroup) { text in warnings.withLock { $0.append(text) } }
        let processes: [(name: String, pid: pid_t)] = [("web.1", 100), ("worker.1", 200)]
        for used in [500_000, 910_000, 950_000, 880_000, 920_000, 800_000, 905_000] {
            try host.write("cgroup/memory.current", "\(used)\n")
            _ = metrics.sample(processes)
        }
        let said = warnings.withLock { $0 }
        #expect(said.count == 2, "at 910,000 and again at 905,000 after 800,000: \(said)")
        #expect(said.first?.contains("91% of its quota") == true, "\(said)")
        #expect(said.first?.contains("worker.1 holds the most") == true)
    }
}
