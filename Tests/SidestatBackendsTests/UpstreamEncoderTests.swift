//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import SidestatAggregation
import SidestatBackends
import SidestatConfiguration
import Testing

/// The upstream encoders and the HTTP backend's retry buffer, without servers (the end-to-end tests use real ones).
struct UpstreamEncoderTests {
    func flush(
        counters: [(String, Double)] = [], gauges: [(String, Double)] = [], timers: [(String, [Double])] = [],
        timestamp: Int = 1_700_000_000
    ) -> FlushData {
        makeFlush(counters: counters, gauges: gauges, timers: timers, timestamp: timestamp)
    }

    @Test("InfluxDB line protocol: escaped names and tags, the instance and type as tags, no NaN or Infinity")
    func influxLines() {
        let data = self.flush(
            counters: [("my key,x;env=prod east", 5), ("bad", .infinity)], gauges: [("g=1", -2.5)])
        var configuration = InfluxDBConfiguration()
        configuration.username = "u"
        configuration.password = "p"
        let requests = InfluxEncoder.requests(data, configuration: configuration, instance: "web.1")
        #expect(requests.count == 1)
        #expect(requests[0].url == "http://127.0.0.1:8086/write?db=statsd&precision=s")
        #expect(requests[0].basicAuth == "u:p")
        #expect(requests[0].points == 2)
        #expect(
            String(decoding: requests[0].body, as: UTF8.self)
                == "my\\ key\\,x,env=prod\\ east,instance=web.1,metric_type=counter count=5,rate=0.5 1700000000\n"
                + "g=1,instance=web.1,metric_type=gauge value=-2.5 1700000000\n")
    }

    @Test("Prometheus: names and labels sanitized, values escaped, counters add up across flushes, timers in seconds")
    func prometheusRender() async {
        let backend = PrometheusBackend(buckets: [0.01, 0.1], instance: "web \"1\"", startupTime: 0)
        let logger = Logger(label: "test")
        let data = self.flush(
            counters: [("api.v1-hits;env=prod;__name__=x;a:b=c", 2)], timers: [("db.query", [5, 50, 500])])
        await backend.flush(data, deadline: .now, logger: logger)
        // The timer is idle in the second interval: statsd (deleteTimers off) flushes it with no samples.
        await backend.flush(
            self.flush(counters: [("api.v1-hits;env=prod;__name__=x;a:b=c", 3)], timers: [("db.query", [])]),
            deadline: .now, logger: logger)
        let text = backend.render()
        // A tag named __name__ cannot set the metric name: it becomes exported___name__.
        #expect(text.contains("# TYPE api_v1_hits_total counter\napi_v1_hits_total{a_b=\"c\",env=\"prod\",exported___name__=\"x\",sidestat_instance=\"web \\\"1\\\"\"} 5\n"), "\(text)")
        #expect(text.contains("db_query_seconds_bucket{sidestat_instance=\"web \\\"1\\\"\",le=\"0.01\"} 1\n"))
        #expect(text.contains("db_query_seconds_bucket{sidestat_instance=\"web \\\"1\\\"\",le=\"0.1\"} 2\n"))
        #expect(text.contains("db_query_seconds_bucket{sidestat_instance=\"web \\\"1\\\"\",le=\"+Inf\"} 3\n"))
        #expect(text.contains("db_query_seconds_sum{sidestat_instance=\"web \\\"1\\\"\"} 0.555\n"))
    }

    @Test("Prometheus: a key a flush no longer brings (deleteIdleStats) leaves the page; a returning counter restarts")
    func prometheusIdleSeries() async {
        let backend = PrometheusBackend(buckets: [0.1], instance: "i", startupTime: 0)
        let logger = Logger(label: "test")
        await backend.flush(self.flush(counters: [("a", 1), ("b", 2)], timers: [("t", [5])]), deadline: .now, logger: logger)
        await backend.flush(self.flush(counters: [("a", 3)]), deadline: .now, logger: logger)
        var text = backend.render()
        #expect(text.contains("a_total{sidestat_instance=\"i\"} 4\n"), "\(text)")
        #expect(!text.contains("b_total") && !text.contains("t_seconds"), "\(text)")
        #expect(backend.status().first { $0.name == "series" }?.value == 1)
        await backend.flush(self.flush(counters: [("a", 1), ("b", 5)]), deadline: .now, logger: logger)
        text = backend.render()
        #expect(text.contains("a_total{sidestat_instance=\"i\"} 5\n") && text.contains("b_total{sidestat_instance=\"i\"} 5\n"))
    }

    @Test("Prometheus: past seriesBudget series of a type, new series are left out and counted; known ones go on")
    func prometheusSeriesBudget() async {
        let backend = PrometheusBackend(buckets: [0.1], instance: "i", startupTime: 0, seriesBudget: 2)
        let logger = Logger(label: "test")
        await backend.flush(self.flush(counters: [("a", 1), ("b", 1), ("c", 1)], timers: [("t", [1])]), deadline: .now, logger: logger)
        await backend.flush(self.flush(counters: [("c", 1), ("b", 1), ("a", 1)], timers: [("t", [1])]), deadline: .now, logger: logger)
        let text = backend.render()
        #expect(text.contains("a_total{sidestat_instance=\"i\"} 2\n") && text.contains("b_total{sidestat_instance=\"i\"} 2\n"), "\(text)")
        #expect(!text.contains("c_total"))
        #expect(text.contains("t_seconds_count{sidestat_instance=\"i\"} 2\n"), "another type has its own budget")
        #expect(backend.status().first { $0.name == "series_dropped" }?.value == 2)
    }

    @Test("Librato: measurements batched 300 to a request, each request carrying its source and time")
    func libratoBatches() {
        let counters = (0..<301).map { ("c\($0)", Double($0)) }
        let configuration = LibratoConfiguration(user: "u", token: "t", source: "web.1")
        let requests = LibratoEncoder.requests(self.flush(counters: counters), configuration: configuration)
        #expect(requests.map(\.points) == [300, 1])
        #expect(requests.allSatisfy { $0.url == "https://metrics-api.librato.com/v1/metrics" && $0.basicAuth == "u:t" })
        #expect(String(decoding: requests[1].body, as: UTF8.self) == #"{"source":"web.1","measure_time":1700000000,"gauges":[{"name":"c300","value":300}]}"#)
    }

    @Test("HTTP backend: an unreachable upstream keeps flushes in order up to the bound, then drops the oldest")
    func httpRetryBuffer() async throws {
        // Port 1 on loopback: nobody listens there, so the connection is refused, a failure that may pass later.
        let port = 1
        let body = [UInt8](repeating: UInt8(ascii: "x"), count: 100)
        let backend = HTTPBackend(name: "test", retryBufferBytes: 250, startupTime: 0) { data in
            [HTTPRequest(url: "http://127.0.0.1:\(port)/write", headers: [], body: body, points: data.timestamp)]
        }
        let logger = Logger(label: "test")
        for timestamp in 1...2 {
            await backend.flush(self.flush(timestamp: timestamp), deadline: .now + .seconds(5), logger: logger)
        }
        #expect(backend.statistics.queuedBytes == 200)
        #expect(backend.statistics.droppedPoints == 0)
        #expect(backend.isHealthy)
        // A third flush passes the bound: the oldest (the first, 1 point) goes.
        await backend.flush(self.flush(timestamp: 3), deadline: .now + .seconds(5), logger: logger)
        #expect(backend.statistics.queuedBytes == 200)
        #expect(backend.statistics.droppedPoints == 1)
        #expect(!backend.isHealthy)
        await backend.flush(self.flush(timestamp: 4), deadline: .now + .seconds(5), logger: logger)
        #expect(backend.statistics.droppedPoints == 1 + 2)
        #expect(backend.status().map(\.name) == ["last_flush", "last_exception", "flush_time", "flush_length", "queued_bytes", "dropped_points"])
    }
}
