//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import SidestatAggregation
import SidestatBackends
import SidestatTestSupport
import Testing

extension EndToEnd {
    /// Remote write's delivery rules, in process against a loopback HTTP endpoint that answers as told (statuses a
    /// real receiver gives only under load: 429, 503 with Retry-After, a 5xx that never ends).
    struct RemoteWriteDeliveryTests {
        static func flush(_ counters: [(String, Double)], timestamp: Int, isFinal: Bool = false) -> FlushData {
            var snapshot = MetricSnapshot()
            for (key, value) in counters { snapshot.counters.append(.init(key: snapshot.store(key), value: value)) }
            return FlushData(
                timestamp: timestamp, snapshot: snapshot, flushInterval: .seconds(1), processingTime: .zero,
                timerStatistics: TimerStatisticsConfiguration(
                    percentThreshold: [90], histogram: [], calculatedTimerMetrics: nil, flushIntervalSeconds: 1),
                prefixStats: "statsd", percentThreshold: [90], isFinal: isFinal)
        }

        static func backend(port: Int, policy: RemoteWriteRetryPolicy = RemoteWriteRetryPolicy()) -> RemoteWriteBackend {
            var configuration = RemoteWriteConfiguration(url: "http://127.0.0.1:\(port)/api/v1/write")
            configuration.headers = ["X-Scope-OrgID: tenant-1"]
            configuration.bearerToken = "t0ken"
            return RemoteWriteBackend(configuration: configuration, instance: "web.1", startupTime: 0, retryPolicy: policy)
        }

        /// The series of each recorded request, decoded.
        static func decoded(_ capture: HTTPCapture) throws -> [[DecodedWriteRequest.Series]] {
            try capture.requests.map { request in
                let body = Array(Data(base64Encoded: request["body_base64"] as? String ?? "") ?? Data())
                return try DecodedWriteRequest(SnappyDecoder.decode(body)).series
            }
        }

        static func figure(_ backend: RemoteWriteBackend, _ name: String) -> Double? {
            backend.status().first { $0.name == name }?.value
        }

        @Test("the spec's headers; 503 with Retry-After waits that long, then the same request, whole, is sent again")
        func retryAfter() async throws {
            let capture = HTTPCapture()
            try capture.start(script: "503:retry-after=2,204")
            defer { capture.stop() }
            let backend = Self.backend(port: capture.port)
            await backend.flush(
                Self.flush([("hits", 3)], timestamp: 1_700_000_000), deadline: .now + .seconds(10), logger: LogRecorder().logger)
            let requests = capture.requests
            #expect(requests.count == 2)
            let headers = try #require(requests.first?["headers"] as? [String: String])
            #expect(headers["content-encoding"] == "snappy")
            #expect(headers["content-type"] == "application/x-protobuf")
            #expect(headers["x-prometheus-remote-write-version"] == "0.1.0")
            #expect(headers["user-agent"]?.hasPrefix("Sidestat/") == true)
            #expect(headers["authorization"] == "Bearer t0ken")
            #expect(headers["x-scope-orgid"] == "tenant-1")
            let times = requests.compactMap { $0["time"] as? Double }
            #expect(times.count == 2 && times[1] - times[0] >= 1.9, "\(times)")
            #expect(requests[0]["body_base64"] as? String == requests[1]["body_base64"] as? String)
            let series = try Self.decoded(capture)
            #expect(series[1].first { $0.name == "hits_total" }?.samples.first?.timestamp == 1_700_000_000_000)
            #expect(Self.figure(backend, "dropped_points") == 0)
        }

        @Test("429 is retried; any other 4xx is dropped, counted, and logged once")
        func clientErrors() async throws {
            let capture = HTTPCapture()
            try capture.start(script: "429,204,400:body=out of order sample,400,400,204")
            defer { capture.stop() }
            let backend = Self.backend(port: capture.port)
            let recorder = LogRecorder()
            for second in 0..<5 {
                await backend.flush(
                    Self.flush([("hits", 1)], timestamp: 1_700_000_000 + second), deadline: .now + .seconds(5),
                    logger: recorder.logger)
            }
            #expect(capture.requests.map { $0["status"] as? Int } == [429, 204, 400, 400, 400, 204])
            #expect(Self.figure(backend, "dropped_points") == 3)
            let refusals = recorder.matching("Upstream refused")
            #expect(refusals.count == 1, "\(refusals.map(\.metadata))")
            #expect(refusals.first?.metadata["error"]?.contains("HTTP 400: out of order sample") == true)
            // The request after the refused ones carries its own flush, at its own time.
            let last = try #require(try Self.decoded(capture).last)
            #expect(last.first { $0.name == "hits_total" }?.samples.first?.value == 5)
        }

        @Test("a request answered 5xx is retried with backoff, then given up after the bound, with one error")
        func givesUpOnEndless5xx() async throws {
            let capture = HTTPCapture()
            try capture.start(script: "500:body=unexpected error")
            defer { capture.stop() }
            var policy = RemoteWriteRetryPolicy()
            policy.firstDelay = .milliseconds(100)
            policy.maximumRefusals = 3
            let backend = Self.backend(port: capture.port, policy: policy)
            let recorder = LogRecorder()
            for second in 0..<2 {
                await backend.flush(
                    Self.flush([("hits", 1)], timestamp: 1_700_000_000 + second), deadline: .now + .seconds(5),
                    logger: recorder.logger)
            }
            #expect(capture.requests.count == 6, "3 attempts for each flush's request")
            let times = capture.requests.compactMap { $0["time"] as? Double }
            #expect(times[2] - times[1] >= times[1] - times[0], "the wait grows: \(times)")
            #expect(Self.figure(backend, "dropped_points") == 2)
            let errors = recorder.matching("Upstream refused")
            #expect(errors.count == 1)
            #expect(errors.first?.metadata["error"]?.contains("refused a request 3 times") == true)
            #expect(errors.first?.metadata["error"]?.contains("HTTP 500: unexpected error") == true)
        }

        @Test("after an outage the held flushes go first, in order, with their original timestamps")
        func replayInOrder() async throws {
            let port = freePort()
            let backend = Self.backend(port: port)
            let logger = LogRecorder().logger
            // Nobody listens yet: each flush is held.
            for second in 0..<3 {
                await backend.flush(
                    Self.flush([("hits", 1)], timestamp: 1_700_000_000 + second), deadline: .now + .milliseconds(300),
                    logger: logger)
            }
            #expect((Self.figure(backend, "queued_bytes") ?? 0) > 0)
            let capture = HTTPCapture(port: port)
            try capture.start(status: 204)
            defer { capture.stop() }
            await backend.flush(
                Self.flush([("hits", 1)], timestamp: 1_700_000_003), deadline: .now + .seconds(10), logger: logger)
            let samples = try Self.decoded(capture).compactMap { $0.first { $0.name == "hits_total" }?.samples.first }
            #expect(samples.map(\.timestamp) == [0, 1, 2, 3].map { 1_700_000_000_000 + $0 * 1000 })
            #expect(samples.map(\.value) == [1, 2, 3, 4])
            #expect(Self.figure(backend, "queued_bytes") == 0)
            #expect(Self.figure(backend, "dropped_points") == 0)
        }
    }
}
