//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import Testing

/// Writes a config file and returns its path.
func writeConfig(_ text: String) throws -> String {
    let path = TestPaths.temporaryDirectory().appendingPathComponent("config.js")
    try text.write(to: path, atomically: true, encoding: .utf8)
    return path.path
}

func number(_ value: Any?) -> Double? { (value as? NSNumber)?.doubleValue }

extension EndToEnd {
    /// The upstreams beyond Graphite: real InfluxDB and Prometheus from Debian, OTLP decoded with PyPI's
    /// opentelemetry-proto, and the exact requests for the hosted services (Librato, Hosted Graphite).
    struct UpstreamTests {
        static let sample = "hits:3|c\nhits:4|c\nlatency:10|ms\nlatency:30|ms\ntemp:21.5|g\nusers:a|s\nusers:b|s\nreq:2|c|#env:prod"

        @Test("InfluxDB 1.x: the /write line protocol is stored and queried back, tagged with the instance")
        func influxV1() throws {
            let influx = InfluxDB()
            try influx.start()
            defer { influx.stop() }
            try influx.query("CREATE DATABASE statsd", method: "POST")
            let daemon = try SidestatProcess(
                config: testConfig(
                    graphitePort: nil,
                    extra: """
                        backends: ["influxdb"], instance: "web.1",
                        influxdb: {url: "http://127.0.0.1:\(influx.port)", database: "statsd"}
                        """))
            Send.udp([Self.sample], port: daemon.udpPort)
            func first(_ query: String, where predicate: ([String: Any]) -> Bool = { _ in true }) throws -> [String: Any]? {
                var row: [String: Any]? = nil
                _ = try waitUntil(timeout: 15) {
                    row = try influx.rows(query, database: "statsd").first(where: predicate)
                    return row != nil
                }
                return row
            }
            let hits = try #require(
                try first(#"SELECT sum("count") FROM "hits" WHERE "instance" = 'web.1' AND "metric_type" = 'counter'"#))
            #expect(number(hits["sum"]) == 7)
            let latency = try #require(try first(#"SELECT "mean", "upper_90", "count", "sum" FROM "latency" WHERE "count" > 0"#))
            #expect(number(latency["mean"]) == 20)
            #expect(number(latency["upper_90"]) == 30)
            #expect(number(latency["count"]) == 2)
            #expect(number(latency["sum"]) == 40)
            let temp = try #require(try first(#"SELECT last("value") FROM "temp" WHERE "metric_type" = 'gauge'"#))
            #expect(number(temp["last"]) == 21.5)
            let users = try #require(try first(#"SELECT max("count") FROM "users" WHERE "metric_type" = 'set'"#))
            #expect(number(users["max"]) == 2)
            let tagged = try #require(try first(#"SELECT sum("count") FROM "req" WHERE "env" = 'prod'"#))
            #expect(number(tagged["sum"]) == 2)
            // Every backend's delivery figures are statsd's own gauges.
            let flushes = try #require(
                try first(#"SELECT last("value") FROM "statsd.backends.influxdb.flush_length""#) { (number($0["last"]) ?? 0) > 0 })
            #expect((number(flushes["last"]) ?? 0) > 0)
            #expect(daemon.terminate() == 0)
        }

        @Test("InfluxDB 2.x: /api/v2/write with the token, org, bucket and the line protocol body")
        func influxV2() throws {
            let capture = HTTPCapture()
            try capture.start(status: 204)
            let daemon = try SidestatProcess(
                config: testConfig(
                    graphitePort: nil, flushInterval: 60_000,
                    extra: """
                        backends: ["influxdb"], instance: "web.1",
                        influxdb: {url: "http://127.0.0.1:\(capture.port)/", token: "s3cret", org: "acme", bucket: "apps"}
                        """))
            // And a point stamped two intervals (of a minute) ago: a line at its own interval's time.
            let stamped = Int(Date().timeIntervalSince1970) - 150
            Send.udp([Self.sample, "old:5|c|T\(stamped)"], port: daemon.udpPort)
            // No wait: on SIGTERM the UDP reader drains what the kernel holds before the final flush.
            #expect(daemon.terminate() == 0)
            let request = try #require(capture.waitFor { ($0["body"] as? String)?.hasPrefix("statsd") == true || ($0["body"] as? String)?.contains("hits,") == true })
            let late = try #require(capture.waitFor { ($0["body"] as? String)?.hasPrefix("old,") == true })
            let lateLine = (late["body"] as? String ?? "").split(separator: "\n").first.map(String.init) ?? ""
            let lateTime = try #require(lateLine.split(separator: " ").last.flatMap { Int($0) })
            #expect(lateLine.hasPrefix("old,instance=web.1,metric_type=counter count=5,"), "\(lateLine)")
            #expect(lateTime > stamped && lateTime <= stamped + 60, "\(lateLine)")
            #expect(request["path"] as? String == "/api/v2/write?org=acme&bucket=apps&precision=s")
            let headers = try #require(request["headers"] as? [String: String])
            #expect(headers["authorization"] == "Token s3cret")
            #expect(headers["content-type"] == "text/plain; charset=utf-8")
            let lines = (request["body"] as? String ?? "").split(separator: "\n").map(String.init)
            let timestamp = try #require(lines.first?.split(separator: " ").last.flatMap { Int($0) })
            #expect(abs(timestamp - Int(Date().timeIntervalSince1970)) < 60)
            for expected in [
                "hits,instance=web.1,metric_type=counter count=7,rate=0.11666666666666667 \(timestamp)",
                "temp,instance=web.1,metric_type=gauge value=21.5 \(timestamp)",
                "users,instance=web.1,metric_type=set count=2 \(timestamp)",
                "req,env=prod,instance=web.1,metric_type=counter count=2,rate=0.03333333333333333 \(timestamp)",
            ] {
                #expect(lines.contains(expected), "\(lines)")
            }
            let latency = try #require(lines.first { $0.hasPrefix("latency,instance=web.1,metric_type=timer ") })
            for field in ["count=2", "mean=20", "upper_90=30", "lower=10", "sum=40"] {
                #expect(latency.contains(field), "\(latency)")
            }
        }

        @Test("Prometheus scrapes /metrics: totals across flushes, gauges, timers as histograms; promtool passes")
        func prometheus() throws {
            let daemon = try SidestatProcess(
                config: testConfig(
                    graphitePort: nil,
                    extra: """
                        backends: ["prometheus"], instance: "web.1",
                        prometheus: {port: \(freePort()), buckets: [0.01, 0.1, 1]}
                        """))
            #expect(daemon.httpPort > 0)
            Send.udp(["hits:3|c\nlatency:10|ms\ntemp:21.5|g\nreq:2|c|#env:prod"], port: daemon.udpPort)
            // A second flush adds to the totals. (A set's size is that of the last interval, as in statsd.)
            #expect(
                try waitUntil(timeout: 10) {
                    try HTTP.get(port: daemon.httpPort, path: "/metrics").body.contains("hits_total{sidestat_instance=\"web.1\"} 3\n")
                })
            Send.udp(["hits:4|c\nlatency:300|ms\nusers:a|s\nusers:b|s\npayload:300|d\npayload:3000|d"], port: daemon.udpPort)
            var exposition = ""
            _ = try waitUntil(timeout: 10) {
                exposition = try HTTP.get(port: daemon.httpPort, path: "/metrics").body
                return exposition.contains("hits_total{sidestat_instance=\"web.1\"} 7\n")
                    && exposition.contains("latency_seconds_count{sidestat_instance=\"web.1\"} 2\n")
            }
            for line in [
                "# TYPE hits_total counter", "hits_total{sidestat_instance=\"web.1\"} 7",
                "# TYPE latency_seconds histogram",
                "latency_seconds_bucket{sidestat_instance=\"web.1\",le=\"0.01\"} 1",
                "latency_seconds_bucket{sidestat_instance=\"web.1\",le=\"0.1\"} 1",
                "latency_seconds_bucket{sidestat_instance=\"web.1\",le=\"1\"} 2",
                "latency_seconds_bucket{sidestat_instance=\"web.1\",le=\"+Inf\"} 2",
                "latency_seconds_sum{sidestat_instance=\"web.1\"} 0.31", "latency_seconds_count{sidestat_instance=\"web.1\"} 2",
                "# TYPE temp gauge", "temp{sidestat_instance=\"web.1\"} 21.5", "users{sidestat_instance=\"web.1\"} 2",
                "req_total{env=\"prod\",sidestat_instance=\"web.1\"} 2",
                // A DogStatsD distribution: a histogram of its own values, with the distribution buckets.
                "# TYPE payload histogram",
                "payload_bucket{sidestat_instance=\"web.1\",le=\"250\"} 0",
                "payload_bucket{sidestat_instance=\"web.1\",le=\"500\"} 1",
                "payload_bucket{sidestat_instance=\"web.1\",le=\"5000\"} 2",
                "payload_sum{sidestat_instance=\"web.1\"} 3300", "payload_count{sidestat_instance=\"web.1\"} 2",
            ] {
                #expect(exposition.split(separator: "\n").contains(Substring(line)), "\(line) in:\n\(exposition)")
            }

            // promtool lints the endpoint's output.
            let promtool = Process()
            promtool.executableURL = URL(fileURLWithPath: "/usr/bin/promtool")
            promtool.arguments = ["check", "metrics"]
            let input = Pipe()
            let output = Pipe()
            promtool.standardInput = input
            promtool.standardOutput = output
            promtool.standardError = output
            try promtool.run()
            input.fileHandleForWriting.write(Data(exposition.utf8))
            try input.fileHandleForWriting.close()
            let lint = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            promtool.waitUntilExit()
            #expect(promtool.terminationStatus == 0 && lint.isEmpty, "promtool: \(lint)")

            // A real Prometheus scrapes it; the values come back through its query API.
            let prometheus = Prometheus()
            try prometheus.start(scraping: daemon.httpPort)
            defer { prometheus.stop() }
            let hits = try prometheus.waitFor(#"hits_total{sidestat_instance="web.1"}"#) { _, value in value == 7 }
            #expect(hits.first?.1 == 7, "\(hits)")
            #expect(hits.first?.0["job"] == "sidestat")
            let p50 = try prometheus.waitFor(#"histogram_quantile(0.5, latency_seconds_bucket)"#) { _, _ in true }
            #expect(p50.first.map { $0.1 > 0 && $0.1 <= 0.01 } == true, "\(p50)")
            let count = try prometheus.waitFor(#"latency_seconds_count"#) { _, value in value == 2 }
            #expect(count.first?.1 == 2)
            let temp = try prometheus.waitFor(#"temp"#) { _, value in value == 21.5 }
            #expect(temp.first?.1 == 21.5)
            let tagged = try prometheus.waitFor(#"req_total{env="prod"}"#) { _, value in value == 2 }
            #expect(tagged.first?.1 == 2)
            #expect(daemon.terminate() == 0)
        }

        @Test("OTLP/HTTP: delta sums, gauges and exponential histograms, decoded by opentelemetry-proto")
        func otlp() throws {
            let capture = HTTPCapture()
            try capture.start(otlp: true)
            let daemon = try SidestatProcess(
                config: testConfig(
                    graphitePort: nil, flushInterval: 60_000,
                    extra: """
                        backends: ["otlp"], instance: "web.1",
                        otlp: {endpoint: "http://127.0.0.1:\(capture.port)", serviceName: "shop", headers: {"x-api-key": "k1"}}
                        """))
            let samples: [Double] = [3, 5, 7, 12, 100, 0]
            Send.udp(
                ["hits:3|c\nhits:4|c\ntemp:21.5|g\nusers:a|s\nusers:b|s\nreq:2|c|#env:prod"]
                    + samples.map { "latency:\(Int($0))|ms" } + ["balance:-4|d\nbalance:8|d\nbalance:0|d"]
                    // Two intervals (of a minute) late: a point of its own, at that interval's end.
                    + ["old:5|c|T\(Int(Date().timeIntervalSince1970) - 150)"],
                port: daemon.udpPort)
            // No wait: on SIGTERM the UDP reader drains what the kernel holds before the final flush.
            #expect(daemon.terminate() == 0)
            let request = try #require(capture.waitFor { _ in true })
            #expect(request["path"] as? String == "/v1/metrics")
            let headers = try #require(request["headers"] as? [String: String])
            #expect(headers["content-type"] == "application/x-protobuf")
            #expect(headers["x-api-key"] == "k1")
            let metrics = try #require(request["metrics"] as? [[String: Any]])
            func metric(_ name: String) -> [String: Any]? { metrics.first { $0["name"] as? String == name } }
            func point(_ name: String) -> [String: Any]? { (metric(name)?["points"] as? [[String: Any]])?.first }

            let hits = try #require(metric("hits"))
            #expect(hits["resource"] as? [String: String] == ["service.name": "shop", "service.instance.id": "web.1"])
            #expect(hits["kind"] as? String == "sum")
            #expect(hits["temporality"] as? String == "AGGREGATION_TEMPORALITY_DELTA")
            #expect(hits["monotonic"] as? Bool == true)
            let hitsPoint = try #require(point("hits"))
            #expect(number(hitsPoint["value"]) == 7)
            let start = try #require(number(hitsPoint["start"]))
            let time = try #require(number(hitsPoint["time"]))
            #expect(time - start == 60e9)
            #expect(abs(time / 1e9 - Date().timeIntervalSince1970) < 60)
            #expect(metric("temp")?["kind"] as? String == "gauge")
            #expect(number(point("temp")?["value"]) == 21.5)
            #expect(number(point("users")?["value"]) == 2)
            #expect(point("req")?["attributes"] as? [String: String] == ["env": "prod"])
            #expect(number(point("req")?["value"]) == 2)
            // The late group comes in a request of its own, at its interval's time.
            #expect(point("old") == nil)
            let lateRequest = try #require(capture.waitFor { request in
                (request["metrics"] as? [[String: Any]])?.contains { $0["name"] as? String == "old" } == true
            })
            let lateMetric = try #require((lateRequest["metrics"] as? [[String: Any]])?.first { $0["name"] as? String == "old" })
            let old = try #require((lateMetric["points"] as? [[String: Any]])?.first)
            #expect(number(old["value"]) == 5)
            let oldTime = try #require(number(old["time"])) / 1e9
            #expect(oldTime > time / 1e9 - 181 && oldTime < time / 1e9 - 59, "\(oldTime) vs \(time / 1e9)")
            #expect(number(old["time"]).flatMap { t in number(old["start"]).map { t - $0 } } == 60e9)

            let latency = try #require(metric("latency"))
            #expect(latency["kind"] as? String == "exponential_histogram")
            #expect(latency["temporality"] as? String == "AGGREGATION_TEMPORALITY_DELTA")
            #expect(latency["unit"] as? String == "ms")
            // A DogStatsD distribution: no unit, and its negative values in the negative buckets.
            let balance = try #require(metric("balance"))
            #expect(balance["kind"] as? String == "exponential_histogram")
            #expect(balance["unit"] as? String == "")
            let balancePoint = try #require(point("balance"))
            #expect(number(balancePoint["count"]) == 3)
            #expect(number(balancePoint["sum"]) == 4)
            #expect(number(balancePoint["zero_count"]) == 1)
            #expect(number(balancePoint["min"]) == -4)
            #expect((balancePoint["negative_buckets"] as? [Any])?.compactMap(number).reduce(0, +) == 1)
            #expect((balancePoint["buckets"] as? [Any])?.compactMap(number).reduce(0, +) == 1)
            let histogram = try #require(point("latency"))
            #expect(number(histogram["count"]) == 6)
            #expect(number(histogram["sum"]) == 127)
            #expect(number(histogram["min"]) == 0)
            #expect(number(histogram["max"]) == 100)
            #expect(number(histogram["zero_count"]) == 1)
            // Each sample is in the bucket the OTLP spec assigns it at the histogram's scale:
            // bucket i holds (base^i, base^(i+1)], base = 2^(2^-scale).
            let scale = try #require(number(histogram["scale"]))
            let offset = try #require(number(histogram["offset"]))
            let buckets = try #require(histogram["buckets"] as? [Any]).compactMap(number)
            var expected: [Double] = []
            for sample in samples where sample > 0 {
                let index = Int((log2(sample) * pow(2, scale)).rounded(.up)) - 1 - Int(offset)
                #expect(index >= 0, "sample \(sample) below the offset")
                guard index >= 0 else { continue }
                while expected.count <= index { expected.append(0) }
                expected[index] += 1
            }
            func trimmed(_ values: [Double]) -> [Double] { Array(values.reversed().drop { $0 == 0 }.reversed()) }
            #expect(trimmed(buckets) == trimmed(expected), "scale \(scale) offset \(offset)")
            #expect(scale >= 3, "the 160-bucket limit allows a fine scale for 3...100 ms")
        }

        @Test("Librato: POST /v1/metrics with basic auth and the JSON body, source from the instance")
        func librato() throws {
            let capture = HTTPCapture()
            try capture.start()
            let daemon = try SidestatProcess(
                config: testConfig(
                    graphitePort: nil, flushInterval: 60_000,
                    extra: """
                        backends: ["librato"], instance: "web.3",
                        librato: {user: "ops@example.com", token: "t0ken", api: "http://127.0.0.1:\(capture.port)"}
                        """))
            Send.udp([Self.sample], port: daemon.udpPort)
            // No wait: on SIGTERM the UDP reader drains what the kernel holds before the final flush.
            #expect(daemon.terminate() == 0)
            let request = try #require(capture.waitFor { _ in true })
            #expect(request["path"] as? String == "/v1/metrics")
            let headers = try #require(request["headers"] as? [String: String])
            #expect(headers["authorization"] == "Basic " + Data("ops@example.com:t0ken".utf8).base64EncodedString())
            #expect(headers["content-type"] == "application/json")
            let body = try #require(HTTP.json(request["body"] as? String ?? "") as? [String: Any])
            #expect(body["source"] as? String == "web.3")
            #expect(abs((number(body["measure_time"]) ?? 0) - Date().timeIntervalSince1970) < 60)
            let gauges = try #require(body["gauges"] as? [[String: Any]])
            func gauge(_ name: String) -> [String: Any]? { gauges.first { $0["name"] as? String == name } }
            #expect(number(gauge("hits")?["value"]) == 7)
            #expect(number(gauge("temp")?["value"]) == 21.5)
            #expect(number(gauge("users")?["value"]) == 2)
            #expect(number(gauge("req.env_prod")?["value"]) == 2)
            let latency = try #require(gauge("latency"))
            #expect(latency.keys.sorted() == ["count", "max", "min", "name", "sum", "sum_squares"])
            #expect(number(latency["count"]) == 2)
            #expect(number(latency["sum"]) == 40)
            #expect(number(latency["min"]) == 10)
            #expect(number(latency["max"]) == 30)
            #expect(number(latency["sum_squares"]) == 1000)
            let names = gauges.compactMap { $0["name"] as? String }
            #expect(names.allSatisfy { ["hits", "temp", "users", "req.env_prod", "latency"].contains($0) || $0.hasPrefix("statsd.") })
        }

        @Test("Hosted Graphite: HOSTEDGRAPHITE_APIKEY is the first path segment of every line; $DYNO the instance")
        func hostedGraphite() throws {
            let sink = try LineSink()
            let config = try writeConfig(
                testConfig(
                    graphitePort: nil, flushInterval: 60_000,
                    extra: "backends: ['hostedgraphite'], hostedGraphite: {host: '127.0.0.1', port: \(sink.port)}, "
                        + "graphite: {instance: 'path'}"))
            var environment = ProcessInfo.processInfo.environment
            environment["HOSTEDGRAPHITE_APIKEY"] = "6b1e-api-key"
            environment["DYNO"] = "web.2"
            let daemon = try SidestatProcess(arguments: ["--config", config], environment: environment)
            Send.udp([Self.sample], port: daemon.udpPort)
            // No wait: on SIGTERM the UDP reader drains what the kernel holds before the final flush.
            #expect(daemon.terminate() == 0)
            let lines = sink.lines
            #expect(!lines.isEmpty)
            #expect(lines.allSatisfy { $0.name.hasPrefix("6b1e-api-key.") }, "\(lines)")
            #expect(lines.value("6b1e-api-key.stats_counts.web_2.hits") == "7")
            #expect(lines.value("6b1e-api-key.stats.timers.web_2.latency.mean") == "20")
            #expect(lines.value("6b1e-api-key.stats_counts.web_2.statsd.packets_received") == "1")
        }

        @Test("with no config file, the platform's variables turn on Hosted Graphite and Librato")
        func platformVariables() throws {
            var environment = ProcessInfo.processInfo.environment
            environment["HOSTEDGRAPHITE_APIKEY"] = "key-1"
            environment["LIBRATO_USER"] = "ops@example.com"
            environment["LIBRATO_TOKEN"] = "t0ken"
            environment["DYNO"] = "web.4"
            let process = try SidestatProcess(arguments: ["check-config"], environment: environment, waitForUp: false)
            #expect(process.waitForExit() == 0)
            let output = process.output
            #expect(output.contains("backends: [\"./backends/console\", \"./backends/hostedgraphite\", \"./backends/librato\"]"), "\(output)")
            #expect(output.contains("hostedGraphite: { apiKey: \"***\", host: \"carbon.hostedgraphite.com\", port: 2003 }"))
            #expect(output.contains("librato: { user: \"ops@example.com\", token: \"***\", source: \"web.4\""))
            #expect(output.contains("instance: \"web.4\""))
        }
    }
}
