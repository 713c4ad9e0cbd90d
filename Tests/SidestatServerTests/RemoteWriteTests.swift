//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import SidestatTestSupport
import Testing

extension EndToEnd {
    /// Remote write against real receivers: Debian's Prometheus 2.42 (with and without native histograms) and
    /// VictoriaMetrics, queried through their HTTP APIs.
    struct RemoteWriteTests {
        /// A `sidestat` sending only to remote write, as dyno `dyno`.
        static func daemon(
            url: String, dyno: String, remoteWrite: String = "", extra: String = "", flushInterval: Int = 1000
        ) throws -> SidestatProcess {
            let config = try writeConfig(
                testConfig(
                    graphitePort: nil, flushInterval: flushInterval,
                    extra: "backends: ['remotewrite'], remoteWrite: {url: '\(url)'\(remoteWrite)}" + extra))
            var environment = ProcessInfo.processInfo.environment
            environment["DYNO"] = dyno
            return try SidestatProcess(arguments: ["--config", config], environment: environment)
        }

        /// One figure of the management port's `stats` (`remotewrite.queued_bytes`, ...).
        static func stat(_ name: String, _ daemon: SidestatProcess) throws -> Double? {
            let stats = try Send.management(["stats\n"], port: daemon.managementPort)
            return stats.split(separator: "\n").first { $0.hasPrefix(name + ": ") }
                .flatMap { Double($0.dropFirst(name.count + 2)) }
        }

        /// Lines packed into datagrams of at most 50 lines.
        static func send(_ lines: [String], to daemon: SidestatProcess) {
            var datagrams: [String] = []
            var index = 0
            while index < lines.count {
                datagrams.append(lines[index..<min(index + 50, lines.count)].joined(separator: "\n"))
                index += 50
            }
            Send.udp(datagrams, port: daemon.udpPort)
        }

        /// statsd counts the interval's counters from 0 again after each flush: `counters` shows `name: 0` once the
        /// interval that held `name` has been flushed.
        static func waitForFlush(of name: String, _ daemon: SidestatProcess) throws -> Bool {
            try waitUntil(timeout: 10) { try daemon.counters().contains("\"\(name)\":0") }
        }

        @Test("three dynos push to Prometheus: exact totals, one p99 across dynos within 5%, a receiver restart loses nothing")
        func threeDynos() throws {
            var prometheus = Prometheus()
            try prometheus.start(receiver: true, nativeHistograms: true)
            defer { prometheus.stop() }
            let dynos = try (1...3).map { try Self.daemon(url: prometheus.writeURL, dyno: "web.\($0)") }
            var samples: [Double] = []
            var orders = 0
            var perDyno = [0, 0, 0]
            func sendPhase(_ phase: Int) {
                for (index, dyno) in dynos.enumerated() {
                    let n = index + 1
                    // Each dyno its own spread of latencies, so that no one dyno's p99 is the fleet's.
                    let latencies = (1...300).map { Double($0 * n + phase * 7) }
                    samples += latencies
                    orders += 10 * n
                    perDyno[index] += 10 * n
                    Self.send(
                        latencies.map { "latency:\(Int($0))|ms" } + Array(repeating: "orders:\(n)|c", count: 10)
                            + ["queue_depth:\(100 * phase + n)|g"], to: dyno)
                }
            }
            func exactP99() -> Double {
                let sorted = samples.sorted()
                return sorted[Int((0.99 * Double(sorted.count)).rounded(.up)) - 1] / 1000
            }

            sendPhase(1)
            #expect(try prometheus.waitFor("sum(orders_total)") { $1 == Double(orders) }.first?.1 == Double(orders))
            #expect(
                try prometheus.waitFor("histogram_count(sum(latency_seconds))") { $1 == Double(samples.count) }.first?.1
                    == Double(samples.count))

            // The receiver goes away; each dyno's next flush fails and is held.
            prometheus.stop()
            sendPhase(2)
            for dyno in dynos {
                #expect(try Self.waitForFlush(of: "orders", dyno))
                #expect(try waitUntil(timeout: 10) { (try Self.stat("remotewrite.queued_bytes", dyno) ?? 0) > 0 })
            }
            // Back on the same port and data: the held flushes arrive, in order, with their own timestamps.
            let restartTime = Date().timeIntervalSince1970
            let restarted = Prometheus(port: prometheus.port, directory: prometheus.directory)
            try restarted.start(receiver: true, nativeHistograms: true)
            prometheus = restarted
            let total = try prometheus.waitFor("sum(orders_total)", timeout: 40) { $1 == Double(orders) }
            #expect(total.first?.1 == Double(orders), "\(total)")
            let count = try prometheus.waitFor("histogram_count(sum(latency_seconds))") { $1 == Double(samples.count) }
            #expect(count.first?.1 == Double(samples.count), "\(count)")
            let p99 = try #require(try prometheus.scalar("histogram_quantile(0.99, sum(latency_seconds))"))
            #expect(abs(p99 - exactP99()) / exactP99() <= 0.05, "p99 \(p99) against the exact \(exactP99())")
            // Nothing was lost: each dyno's samples follow each other flush after flush (1 s apart, 2 s at most
            // where a flush's time rounds to the next second), across the outage, and the flush that brought phase
            // 2 is stored at its own time, before the receiver came back.
            for (index, series) in try prometheus.samples("orders_total[5m]").sorted(by: {
                $0.0["sidestat_instance"] ?? "" < $1.0["sidestat_instance"] ?? ""
            }).enumerated() {
                let times = series.1.map(\.0)
                let gaps = zip(times.dropFirst(), times).map { $0 - $1 }
                #expect(gaps.allSatisfy { $0 <= 2.1 }, "\(series.0): \(series.1)")
                let phase2 = try #require(series.1.first { $0.1 == Double(perDyno[index]) })
                #expect(phase2.0 < restartTime, "\(series.0): \(series.1), restarted at \(restartTime)")
            }
            // Each dyno has its own gauge series, with its own last value.
            let gauges = try prometheus.query("queue_depth")
            #expect(
                Dictionary(uniqueKeysWithValues: gauges.map { ($0.0["sidestat_instance"] ?? "", $0.1) })
                    == ["web.1": 201, "web.2": 202, "web.3": 203], "\(gauges)")
            for dyno in dynos {
                #expect(try Self.stat("remotewrite.dropped_points", dyno) == 0)
                #expect(dyno.terminate() == 0)
            }
        }

        @Test("Prometheus without native histograms: classic works; native gives one clear error, and the rest still lands")
        func withoutNativeHistograms() throws {
            let prometheus = Prometheus()
            try prometheus.start(receiver: true, nativeHistograms: false)
            defer { prometheus.stop() }
            let classic = try Self.daemon(url: prometheus.writeURL, dyno: "classic", remoteWrite: ", histograms: 'classic'")
            let native = try Self.daemon(url: prometheus.writeURL, dyno: "native")
            let lines = (1...100).map { "latency:\($0)|ms" } + ["orders:5|c"]
            Self.send(lines, to: classic)
            Self.send(lines, to: native)
            #expect(
                try prometheus.waitFor(#"latency_seconds_count{sidestat_instance="classic"}"#) { $1 == 100 }.first?.1
                    == 100)
            let median = try prometheus.scalar(
                #"histogram_quantile(0.5, sum by (le) (latency_seconds_bucket{sidestat_instance="classic"}))"#)
            #expect(median.map { $0 > 0.025 && $0 <= 0.1 } == true, "\(String(describing: median))")
            #expect(try prometheus.scalar(#"orders_total{sidestat_instance="classic"}"#) == 5)
            // Native: the counters go in requests of their own, so they land; the histograms are refused.
            #expect(try prometheus.waitFor(#"orders_total{sidestat_instance="native"}"#) { $1 == 5 }.first?.1 == 5)
            #expect(try waitUntil(timeout: 15) { (try Self.stat("remotewrite.dropped_points", native) ?? 0) >= 3 })
            let errors = native.output.split(separator: "\n").filter { $0.contains("does not accept native histograms") }
            #expect(errors.count == 1, "one error, not one per flush: \(native.output)")
            #expect(errors.first?.contains("set `histograms: \"classic\"`") == true)
            #expect(try prometheus.query("latency_seconds").isEmpty)
            #expect(classic.terminate() == 0)
            #expect(native.terminate() == 0)
        }

        @Test("a series that leaves (deleteIdleStats) is marked stale: Prometheus stops returning it at once")
        func staleness() throws {
            let prometheus = Prometheus()
            try prometheus.start(receiver: true, nativeHistograms: true)
            defer { prometheus.stop() }
            let dyno = try Self.daemon(url: prometheus.writeURL, dyno: "web.1", extra: ", deleteIdleStats: true")
            Self.send(["gone:1|c", "lat:5|ms", "stays:1|c"], to: dyno)
            #expect(try prometheus.waitFor("gone_total") { $1 == 1 }.first?.1 == 1)
            #expect(try prometheus.waitFor("histogram_count(lat_seconds)") { $1 == 1 }.first?.1 == 1)
            // Idle for one interval, the keys leave; without the marker Prometheus would return their last sample for
            // five minutes.
            Self.send(["stays:1|c"], to: dyno)
            #expect(try waitUntil(timeout: 10) { try prometheus.query("gone_total").isEmpty })
            #expect(try waitUntil(timeout: 10) { try prometheus.query("lat_seconds").isEmpty })
            #expect(dyno.terminate() == 0)
        }

        @Test("SIGTERM: the final flush reaches the receiver; with nothing listening, exit within 2.5 s, the loss logged")
        func finalFlush() throws {
            let prometheus = Prometheus()
            try prometheus.start(receiver: true, nativeHistograms: true)
            defer { prometheus.stop() }
            let dyno = try Self.daemon(url: prometheus.writeURL, dyno: "web.1", flushInterval: 60_000)
            Self.send(["last:7|c", "lat:5|ms"], to: dyno)
            // No wait: on SIGTERM the UDP reader drains what the kernel holds before the final flush.
            #expect(dyno.terminate() == 0)
            #expect(try prometheus.waitFor("last_total", timeout: 5) { $1 == 7 }.first?.1 == 7)
            #expect(try prometheus.waitFor("histogram_count(lat_seconds)", timeout: 5) { $1 == 1 }.first?.1 == 1)

            let nowhere = try Self.daemon(url: "http://127.0.0.1:\(freePort())/api/v1/write", dyno: "web.2")
            Self.send(["gone:5|c"], to: nowhere)
            #expect(try Self.waitForFlush(of: "gone", nowhere))
            let start = Date()
            #expect(nowhere.terminate() == 0)
            #expect(Date().timeIntervalSince(start) < 2.5)
            #expect(nowhere.output.contains("Final flush could not be delivered; datapoints are lost"), "\(nowhere.output)")
        }

        @Test("VictoriaMetrics receives classic histograms, counters and gauges")
        func victoriaMetrics() throws {
            let victoria = VictoriaMetrics()
            try victoria.start()
            defer { victoria.stop() }
            let dyno = try Self.daemon(url: victoria.writeURL, dyno: "web.1", remoteWrite: ", histograms: 'classic'")
            Self.send((1...100).map { "latency:\($0)|ms" } + ["orders:5|c", "orders:2|c", "temp:21.5|g"], to: dyno)
            #expect(try victoria.waitFor("orders_total") { $1 == 7 }.first?.0["sidestat_instance"] == "web.1")
            #expect(try victoria.waitFor("temp") { $1 == 21.5 }.first?.1 == 21.5)
            #expect(try victoria.waitFor(#"latency_seconds_bucket{le="+Inf"}"#) { $1 == 100 }.first?.1 == 100)
            #expect(try victoria.waitFor(#"latency_seconds_bucket{le="0.05"}"#) { $1 == 50 }.first?.1 == 50)
            #expect(try Self.stat("remotewrite.dropped_points", dyno) == 0)
            #expect(dyno.terminate() == 0)
        }

        /// A random statsd line with the names and tags a careless or hostile client sends.
        static func randomLine(_ random: inout SplitMix64) -> String {
            let names = ["req", "latency", "h", "h_seconds_count", "d", "d_sum", "x.y-z", "ü-name", "q\"uote",
                "back\\slash", "9start", "a b", "le", "neg"]
            let tagNames = ["env", "le", "quantile", "job", "instance", "sidestat_instance", "__name__", "__x", "",
                "ü", "k\"q", "b\\s", "9x", "a b", "env"]
            let tagValues = ["prod", "canary", "", "ü", "qu\"ote", "back\\slash", "x y", "=", "a:b", "é\\\""]
            var line = random.pick(names) + ":"
            switch random.next() % 6 {
            case 0: line += "\(Int(random.next() % 100) - 20)|c"
            case 1: line += "\(random.next() % 100)|g"
            case 2: line += "\(random.next() % 1000)|ms"
            case 3: line += "\(Int(random.next() % 200) - 100)|d"
            case 4: line += "\(random.pick(["a", "b", "ü"]))|s"
            default: line += "1e308|c"
            }
            let tags = (0..<Int(random.next() % 4)).map { _ -> String in
                let name = random.pick(tagNames)
                return random.next() % 4 == 0 ? name : name + ":" + random.pick(tagValues)
            }
            if !tags.isEmpty { line += "|#" + tags.joined(separator: ",") }
            return line
        }

        @Test(
            "random names and tags: promtool passes, a real scrape stays up with every series, remote write takes them all",
            arguments: [true, false])
        func hostileNamesAndTags(sanitize: Bool) throws {
            let seed = UInt64(ProcessInfo.processInfo.environment["SIDESTAT_PROPERTY_SEED"] ?? "") ?? 2026
            var random = SplitMix64(seed: seed &+ (sanitize ? 1 : 0))
            let receiver = Prometheus()
            try receiver.start(receiver: true, nativeHistograms: true)
            defer { receiver.stop() }
            let daemon = try SidestatProcess(
                config: testConfig(
                    graphitePort: nil,
                    extra: """
                        backends: ['prometheus', 'remotewrite'], instance: 'prop', keyNameSanitize: \(sanitize),
                        prometheus: {port: \(freePort())}, remoteWrite: {url: '\(receiver.writeURL)'}
                        """))
            let lines = (0..<400).map { _ in Self.randomLine(&random) }
            Self.send(lines, to: daemon)
            // Every line was read and flushed: the page's own count of metrics received says so.
            var page = ""
            #expect(
                try waitUntil(timeout: 15) {
                    page = try HTTP.get(port: daemon.httpPort, path: "/metrics").body
                    return page.contains("statsd_metrics_received_total{sidestat_instance=\"prop\"} \(lines.count)\n")
                }, "seed \(seed): \(page)")
            // statsd's timestamp_lag joins at the second flush: from then on the page's series are those it keeps.
            _ = try waitUntil(timeout: 10) {
                page = try HTTP.get(port: daemon.httpPort, path: "/metrics").body
                return page.contains("statsd_timestamp_lag{")
            }
            let samples = page.split(separator: "\n").filter { !$0.hasPrefix("#") }

            // promtool: no parse or consistency error. Its style advice about the names the client chose
            // ("a_b": abbreviated units, a gauge the client called x_total or h_seconds_count) is not about validity.
            let lint = runProcess("/bin/sh", ["-c", "/usr/bin/promtool check metrics < '\(try writeConfig(page))'"])
            let style = [
                "abbreviated units", "snake_case", "should not have \"_total\" suffix", "should have \"_total\" suffix",
                "should not have \"_count\" suffix", "should not have \"_sum\" suffix",
                "should not have \"_bucket\" suffix", "should not include type", "use base unit",
            ]
            let problems = lint.output.split(separator: "\n").filter { line in !style.contains { line.contains($0) } }
            #expect(lint.status == 0 || (lint.status == 3 && problems.isEmpty), "seed \(seed): promtool: \(lint.output)")

            let scraper = Prometheus()
            try scraper.start(scraping: [daemon.httpPort])
            defer { scraper.stop() }
            let up = try scraper.waitFor("up") { $1 == 1 }
            #expect(up.first?.1 == 1, "seed \(seed): the target is down: \(scraper.log)")
            let scraped = try scraper.waitFor("scrape_samples_post_metric_relabeling") { $1 == Double(samples.count) }
            #expect(scraped.first?.1 == Double(samples.count), "seed \(seed)")
            let stored = try scraper.waitFor(#"count({sidestat_instance="prop"})"#) { $1 == Double(samples.count) }
            #expect(stored.first?.1 == Double(samples.count), "seed \(seed): every series of the page is stored")

            // Remote write: the same series, a histogram being one series instead of _bucket, _sum and _count.
            let histograms = page.split(separator: "\n").filter { $0.hasPrefix("# TYPE") && $0.hasSuffix(" histogram") }
                .map { $0.split(separator: " ")[2] }
            let histogramSeries = samples.filter { sample in
                histograms.contains { sample.hasPrefix($0 + "_count{") }
            }.count
            let histogramLines = samples.filter { sample in
                histograms.contains { sample.hasPrefix($0 + "_") }
            }.count
            let expected = Double(samples.count - histogramLines + histogramSeries)
            let written = try receiver.waitFor(#"count({sidestat_instance="prop"})"#) { $1 == expected }
            #expect(written.first?.1 == expected, "seed \(seed)")
            #expect(try Self.stat("remotewrite.dropped_points", daemon) == 0, "seed \(seed): \(daemon.output)")
            #expect(daemon.terminate() == 0)
        }

        /// The examples marked `<!-- check-config[: NAME=value ...] -->` in a document: each ```js block after such a
        /// line, with the environment the marker gives.
        static func examples(in document: String) throws -> [(config: String, environment: [String: String])] {
            let text = try String(contentsOf: TestPaths.packageRoot.appendingPathComponent(document), encoding: .utf8)
            var examples: [(String, [String: String])] = []
            var rest = text[...]
            while let marker = rest.range(of: "<!-- check-config") {
                let markerEnd = try #require(rest[marker.upperBound...].range(of: "-->"))
                var environment: [String: String] = [:]
                for pair in rest[marker.upperBound..<markerEnd.lowerBound].split(whereSeparator: { $0 == " " || $0 == ":" }) {
                    let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
                    if parts.count == 2 { environment[parts[0]] = parts[1] }
                }
                let open = try #require(rest[markerEnd.upperBound...].range(of: "```js\n"))
                let close = try #require(rest[open.upperBound...].range(of: "```"))
                examples.append((String(rest[open.upperBound..<close.lowerBound]), environment))
                rest = rest[close.upperBound...]
            }
            return examples
        }

        @Test("check-config accepts the README's and docs/upstreams.md's examples, and names each bad key")
        func checkConfig() throws {
            let examples = try Self.examples(in: "README.md") + Self.examples(in: "docs/upstreams.md")
            #expect(examples.count >= 4)
            #expect(examples.contains { $0.config.contains("remoteWrite") && $0.config.contains("grafana.net") })
            for (config, environment) in examples {
                let check = try SidestatProcess(
                    arguments: ["check-config", try writeConfig(config)], environment: environment, waitForUp: false)
                #expect(check.waitForExit() == 0, "\(config)\n\(check.output)")
                #expect(!check.output.contains("warning"), "\(config)\n\(check.output)")
                for secret in environment.values where secret.hasPrefix("glc_") {
                    #expect(!check.output.contains(secret), "secrets are not printed: \(check.output)")
                }
                if config.contains("remoteWrite") {
                    #expect(check.output.contains("remoteWrite: { url: \"http"), "\(check.output)")
                }
            }

            for (config, key) in [
                ("{backends: ['remotewrite']}", "remoteWrite.url"),
                ("{backends: ['remotewrite'], remoteWrite: {url: 'ftp://x'}}", "remoteWrite.url"),
                ("{backends: ['remotewrite'], remoteWrite: {url: 'http://x', histograms: 'sparse'}}", "remoteWrite.histograms"),
                ("{backends: ['remotewrite'], remoteWrite: {url: 'http://x', headers: {'Content-Encoding': 'gzip'}}}", "remoteWrite.headers.Content-Encoding"),
                ("{backends: ['remotewrite'], remoteWrite: {url: 'http://x', labels: {le: '1'}}}", "remoteWrite.labels.le"),
                ("{backends: ['remotewrite'], remoteWrite: {url: 'http://x', username: 'u'}}", "remoteWrite.password"),
                ("{backends: ['remotewrite'], remoteWrite: {url: 'http://x', bearerToken: 't', username: 'u', password: 'p'}}", "remoteWrite.bearerToken"),
            ] {
                let bad = try SidestatProcess(
                    arguments: ["check-config", try writeConfig(config)], environment: [:], waitForUp: false)
                #expect(bad.waitForExit() == 2, "\(config): \(bad.output)")
                #expect(bad.output.contains(key), "\(config): \(bad.output)")
            }
            // A misspelt key inside the section is a warning with the nearest one.
            let typo = try SidestatProcess(
                arguments: ["check-config", try writeConfig("{backends: ['remotewrite'], remoteWrite: {url: 'http://x', bearer_token: 't'}}")],
                environment: [:], waitForUp: false)
            #expect(typo.waitForExit() == 0)
            #expect(typo.output.contains("remoteWrite.bearer_token\" is ignored (did you mean \"bearerToken\"?)"), "\(typo.output)")
            // Without a file, PROMETHEUS_REMOTE_WRITE_URL adds remote write to the console.
            let fromEnvironment = try SidestatProcess(
                arguments: ["check-config"],
                environment: [
                    "PROMETHEUS_REMOTE_WRITE_URL": "https://prometheus.example.com/api/v1/write",
                    "PROMETHEUS_REMOTE_WRITE_BEARER_TOKEN": "t0ken", "DYNO": "web.1",
                ], waitForUp: false)
            #expect(fromEnvironment.waitForExit() == 0)
            #expect(
                fromEnvironment.output.contains(#"backends: ["./backends/console", "./backends/remotewrite"]"#),
                "\(fromEnvironment.output)")
            #expect(
                fromEnvironment.output.contains(
                    #"remoteWrite: { url: "https://prometheus.example.com/api/v1/write", bearerToken: "***", histograms: "native" }"#),
                "\(fromEnvironment.output)")
        }
    }
}
