//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import SidestatAggregation
import SidestatBackends
import Testing

@testable import SidestatServer

/// The dashboard's history in process: rings, gaps, rates, timer lanes and the memory budget.
struct DashboardStoreTests {
    func flush(_ store: DashboardStore, at timestamp: Int, _ text: String, interval: Duration = .seconds(10)) {
        let aggregator = Aggregator(shardCount: 1)
        var bytes = Array(text.utf8)
        _ = bytes.withUnsafeMutableBytes { aggregator.ingest(UnsafeRawBufferPointer($0), shard: 0) }
        var snapshot = aggregator.takeSnapshot(policy: RetentionPolicy())
        snapshot.sortTimerSamples()
        store.record(
            FlushData(
                timestamp: timestamp, snapshot: snapshot, flushInterval: interval, processingTime: .zero,
                timerStatistics: TimerStatisticsConfiguration(
                    percentThreshold: [90], histogram: [], calculatedTimerMetrics: nil, flushIntervalSeconds: 10),
                prefixStats: "statsd", percentThreshold: [90],
                isFinal: false))
    }

    func json(_ text: String?) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data((text ?? "").utf8)) as? [String: Any])
    }

    @Test("counters as rates, gauges, timers as median/p90/max, sets as cardinality; a flush a key missed is null")
    func lanes() throws {
        let store = DashboardStore(slots: 4)
        self.flush(store, at: 100, "hits:50|c\ntemp:21.5|g\nlatency:10|ms\nlatency:20|ms\nlatency:30|ms\nusers:a|s\nusers:b|s")
        self.flush(store, at: 110, "temp:22|g")
        self.flush(store, at: 120, "hits:10|c\nlatency:5|ms\nnewer:1|g")
        let hits = try self.json(store.seriesJSON("hits"))
        #expect(hits["times"] as? [Int] == [100, 110, 120])
        // Each flush here comes from a new aggregator: `hits` is missing from the second one.
        let values = try #require(hits["value"] as? [Any])
        #expect(values.count == 3 && values[0] as? Double == 5 && values[1] is NSNull && values[2] as? Double == 1)
        // A key first seen in the last flush has no value before it.
        let newer = try #require(try self.json(store.seriesJSON("newer"))["value"] as? [Any])
        #expect(newer.count == 3 && newer[0] is NSNull && newer[1] is NSNull && newer[2] as? Double == 1)
        let latency = try self.json(store.seriesJSON("latency"))
        #expect((latency["median"] as? [Any])?.compactMap { $0 as? Double } == [20, 5])
        #expect((latency["p90"] as? [Any])?.compactMap { $0 as? Double } == [30, 5])
        #expect((latency["max"] as? [Any])?.compactMap { $0 as? Double } == [30, 5])
        let users = try self.json(store.seriesJSON("users"))
        #expect((users["value"] as? [Any])?.first as? Double == 2)
        #expect(store.seriesJSON("nothing") == nil)
    }

    @Test("the ring keeps the last `slots` flushes; search filters by name, user keys before statsd's own")
    func ringAndSearch() throws {
        let store = DashboardStore(slots: 3)
        for (index, value) in [1, 2, 3, 4, 5].enumerated() {
            self.flush(store, at: 100 + index * 10, "g:\(value)|g\nstatsd.x:1|g\napp.y:1|g")
        }
        let g = try self.json(store.seriesJSON("g"))
        #expect(g["times"] as? [Int] == [120, 130, 140])
        #expect(g["value"] as? [Double] == [3, 4, 5])
        let page = try self.json(store.keysJSON(query: "", offset: 0, limit: 10, points: 2))
        let keys = try #require(page["keys"] as? [[String: Any]])
        #expect(keys.map { $0["name"] as? String } == ["app.y", "g", "statsd.x"])
        #expect(keys.map { $0["group"] as? String } == ["user", "user", "statsd"])
        #expect(keys[1]["spark"] as? [Double] == [4, 5] && keys[1]["last"] as? Double == 5)
        let found = try self.json(store.keysJSON(query: "APP", offset: 0, limit: 10, points: 2))
        #expect((found["keys"] as? [[String: Any]])?.map { $0["name"] as? String } == ["app.y"])
        #expect(found["total"] as? Int == 1)
    }

    @Test("the processes and the dyno (sidestat start's own metrics) are a group of their own, between user and statsd")
    func dynoGroup() throws {
        let store = DashboardStore(slots: 3)
        self.flush(
            store, at: 100,
            "statsd.x:1|g\ndyno.memory_bytes:5|g\nprocesses.web.1.memory_rss_bytes:4|g\nprocesses.web.1.cpu_seconds:0.5|c\napp.y:1|g")
        let keys = try #require(try self.json(store.keysJSON(query: "", offset: 0, limit: 10, points: 1))["keys"] as? [[String: Any]])
        #expect(keys.map { $0["group"] as? String } == ["user", "dyno", "dyno", "dyno", "statsd"])
        #expect(keys.map { $0["name"] as? String } == [
            "app.y", "dyno.memory_bytes", "processes.web.1.cpu_seconds", "processes.web.1.memory_rss_bytes", "statsd.x",
        ])
        #expect(DashboardPage.html.contains("id=\"dyno\""))
    }

    @Test("past the budget, the keys updated longest ago are evicted and counted; the history stays within it")
    func budget() throws {
        let store = DashboardStore(slots: 360, budgetBytes: 400_000)  // about 120 single-lane keys
        self.flush(store, at: 100, (0..<100).map { "old.\($0):1|c" }.joined(separator: "\n"))
        self.flush(store, at: 110, (0..<100).map { "new.\($0):1|c" }.joined(separator: "\n"))
        let health = try self.json(store.healthJSON(backends: []))
        let bytes = try #require(health["bytes"] as? Int)
        #expect(bytes <= 400_000)
        #expect((health["evicted"] as? Int ?? 0) > 0)
        let page = try self.json(store.keysJSON(query: "new.", offset: 0, limit: 1000, points: 1))
        #expect(page["total"] as? Int == 100, "the newest keys are kept")
    }
}

extension EndToEnd {
    /// The page in a real browser: Debian's Chromium, driven by Playwright from PyPI (scripts/test installs both).
    struct DashboardTests {
        @Test("Chromium: the counter, gauge and timer appear, the counter's chart shows its rate, the search box filters")
        func browser() throws {
            let python = try TestPaths.playwrightPython()
            let dashboardPort = freePort()
            let daemon = try SidestatProcess(
                config: testConfig(graphitePort: nil, flushInterval: 1000, extra: "dashboard: { port: \(dashboardPort) }"))
            #expect(daemon.output.contains("INFO: dashboard at http://127.0.0.1:\(dashboardPort)/"), "\(daemon.output)")
            Send.udp(["dash.hits:5|c\ndash.temp:21.5|g\ndash.latency:10|ms\ndash.latency:30|ms\nbad line"], port: daemon.udpPort)
            #expect(
                try waitUntil(timeout: 10) {
                    try HTTP.get(port: dashboardPort, path: "/api/keys?q=dash").body.contains("\"total\":3")
                })
            let series = try HTTP.get(port: dashboardPort, path: "/api/series?key=dash.latency").body
            #expect(series.contains("\"median\":[") && series.contains("10") && series.contains("30"), "\(series)")

            let artifacts = TestPaths.packageRoot.appendingPathComponent(".build/test-artifacts")
            try FileManager.default.createDirectory(at: artifacts, withIntermediateDirectories: true)
            let script = """
                import json
                from playwright.sync_api import sync_playwright
                with sync_playwright() as p:
                    browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
                    page = browser.new_page(viewport={"width": 1280, "height": 800})
                    # The page runs under its Content-Security-Policy: nothing of it may be refused.
                    console = []
                    page.on("console", lambda message: console.append(message.text))
                    page.goto("http://127.0.0.1:\(dashboardPort)/")
                    for key in ["dash.hits", "dash.temp", "dash.latency"]:
                        page.wait_for_selector('#user .row[data-key="%s"]' % key, timeout=10000)
                    kinds = page.eval_on_selector_all("#user .row", "rows => rows.map(r => [r.dataset.key, r.dataset.kind])")
                    page.click('#user .row[data-key="dash.hits"]')
                    page.wait_for_selector('#chart[data-key="dash.hits"]', timeout=10000)
                    page.wait_for_selector('#chart[data-max="5"]', timeout=10000)
                    summary = page.inner_text("#chart-summary")
                    bad = page.inner_text("#bad-lines")
                    page.screenshot(path="\(artifacts.path)/dashboard.png", full_page=True)
                    page.fill("#search", "temp")
                    page.wait_for_selector('#user .row[data-key="dash.hits"]', state="detached", timeout=10000)
                    filtered = page.eval_on_selector_all("#user .row", "rows => rows.map(r => r.dataset.key)")
                    page.click("#theme")
                    page.screenshot(path="\(artifacts.path)/dashboard-search.png", full_page=True)
                    print(json.dumps({"kinds": kinds, "summary": summary, "filtered": filtered, "bad": bad, "console": console}))
                    browser.close()
                """
            let (status, output) = runProcess(python, ["-c", script])
            #expect(status == 0, "\(output)")
            let result = try #require(
                output.split(separator: "\n").last.flatMap {
                    try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
                }, "\(output)")
            let kinds = (result["kinds"] as? [[String]] ?? []).reduce(into: [String: String]()) { $0[$1[0]] = $1[1] }
            #expect(kinds == ["dash.hits": "counter", "dash.latency": "timer", "dash.temp": "gauge"])
            #expect((result["summary"] as? String)?.contains("rate per second") == true, "\(result)")
            #expect((result["summary"] as? String)?.contains("max 5") == true, "\(result)")
            #expect((result["bad"] as? String)?.contains("in all") == true, "\(result)")
            #expect(result["filtered"] as? [String] == ["dash.temp"])
            #expect((result["console"] as? [String] ?? []).filter { $0.contains("Content Security Policy") }.isEmpty, "\(result)")
            let screenshot = try FileManager.default.attributesOfItem(atPath: artifacts.appendingPathComponent("dashboard.png").path)
            #expect((screenshot[.size] as? Int ?? 0) > 10_000)
            #expect(daemon.terminate() == 0)
        }

        @Test("sidestat start turns the dashboard on outside a dyno (and says where), not on a dyno or with --no-dashboard")
        func startDefault() throws {
            let directory = TestPaths.temporaryDirectory()
            try "web: sleep 30\n".write(to: directory.appendingPathComponent("Procfile"), atomically: true, encoding: .utf8)
            let config = directory.appendingPathComponent("config.js")
            try testConfig(graphitePort: nil).write(to: config, atomically: true, encoding: .utf8)
            for (dyno, flag, expected) in [(nil, nil, true), ("web.1", nil, false), (nil, "--no-dashboard", false)] as [(String?, String?, Bool)] {
                var environment = ProcessInfo.processInfo.environment
                environment["DYNO"] = dyno
                let start = try SidestatProcess(
                    arguments: ["start", "-f", "Procfile", "--config", config.path] + (flag.map { [$0] } ?? []),
                    environment: environment, workingDirectory: directory)
                let output = start.output
                // 8127 may be taken (another test, another Sidestat): then a warning, and Sidestat runs on.
                let on = output.contains("dashboard at http://127.0.0.1:8127/")
                    || output.contains("No dashboard: cannot listen on the dashboard's port 127.0.0.1:8127")
                #expect(on == expected, "\(output)")
                _ = start.terminate()
            }
        }
    }
}
