//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import SidestatAggregation
import SidestatProtocol
import Synchronization

/// A key split into its name and its tags: `req;env=prod;dc=x` → `req`, [(env, prod), (dc, x)].
public struct MetricName: Sendable {
    public var name: String
    public var tags: [(key: String, value: String)]

    public init(_ key: String) {
        let parts = key.split(separator: ";", omittingEmptySubsequences: false)
        self.name = String(parts.first ?? "")
        self.tags = parts.dropFirst().compactMap { part in
            guard !part.isEmpty else { return nil }
            let pieces = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return (String(pieces[0]), pieces.count > 1 ? String(pieces[1]) : "")
        }
    }
}

/// The figures every backend keeps about its deliveries (statsd's `graphiteStats`, for each upstream).
public struct DeliveryStatistics: Sendable {
    /// Unix seconds of the last successful delivery.
    public var lastFlush: Double
    /// Unix seconds of the last failure.
    public var lastException: Double
    /// Milliseconds the last delivery took.
    public var flushTime: Double = 0
    /// Bytes of the last delivered flush.
    public var flushLength: Double = 0
    public var queuedBytes = 0
    public var droppedPoints = 0

    public init(startupTime: Double) {
        self.lastFlush = startupTime
        self.lastException = startupTime
    }

    var status: [(name: String, value: Double)] {
        [
            ("last_flush", self.lastFlush), ("last_exception", self.lastException), ("flush_time", self.flushTime),
            ("flush_length", self.flushLength), ("queued_bytes", Double(self.queuedBytes)),
            ("dropped_points", Double(self.droppedPoints)),
        ]
    }
}

/// An upstream reached with HTTP requests (Librato, InfluxDB, OTLP): each flush is encoded into requests, sent in
/// order after any still buffered from earlier flushes. A request that fails in a way that may pass later (no
/// response, 5xx, 429) is kept, with the rest of the flush, in a buffer bounded by `retryBufferBytes` (the oldest
/// dropped and counted past the bound); one the upstream refuses (other 4xx) is dropped and counted at once.
public final class HTTPBackend: MetricsBackend {
    public let name: String
    let encode: @Sendable (FlushData) -> [HTTPRequest]
    let retryBufferBytes: Int

    struct State {
        var statistics: DeliveryStatistics
        var queue: [HTTPRequest] = []
    }

    let state: Mutex<State>

    public init(
        name: String, retryBufferBytes: Int, startupTime: Double, encode: @escaping @Sendable (FlushData) -> [HTTPRequest]
    ) {
        self.name = name
        self.encode = encode
        self.retryBufferBytes = retryBufferBytes
        self.state = Mutex(State(statistics: DeliveryStatistics(startupTime: startupTime)))
    }

    public var statistics: DeliveryStatistics { self.state.withLock { $0.statistics } }

    public func status() -> [(name: String, value: Double)] { self.statistics.status }

    public var isHealthy: Bool {
        self.state.withLock { $0.statistics.lastFlush >= $0.statistics.lastException || $0.statistics.droppedPoints == 0 }
    }

    public func flush(_ data: FlushData, deadline: ContinuousClock.Instant, logger: Logger) async {
        let clock = ContinuousClock()
        let start = clock.now
        let fresh = self.encode(data)
        // Until the upstream confirms them, the held requests and this flush's count as queued.
        let queued = self.state.withLock { state -> [HTTPRequest] in
            defer {
                state.queue = []
                state.statistics.queuedBytes += fresh.reduce(0) { $0 + $1.body.count }
            }
            return state.queue
        }
        var pending = queued + fresh
        var index = 0
        var sentBytes = 0
        var refused = 0
        while index < pending.count {
            let remaining = deadline - clock.now
            let milliseconds = Int(remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000)
            do throws(HTTPClient.Failure) {
                guard milliseconds > 0 else {
                    throw HTTPClient.Failure(description: "the flush deadline passed", status: 0)
                }
                _ = try await HTTPClient.send(pending[index], timeoutMilliseconds: min(milliseconds, 10_000))
                sentBytes += pending[index].body.count
                self.state.withLock { $0.statistics.queuedBytes -= pending[index].body.count }
                index += 1
            } catch {
                self.state.withLock { $0.statistics.lastException = DaemonClock.unixSeconds() }
                if !error.retryable {
                    // The upstream refuses this payload: sending it again cannot help.
                    refused += pending[index].points
                    self.state.withLock {
                        $0.statistics.droppedPoints += pending[index].points
                        $0.statistics.queuedBytes -= pending[index].body.count
                    }
                    logger.error(
                        "Upstream refused a flush; its datapoints are dropped",
                        metadata: ["backend.name": "\(self.name)", "error": "\(error)", "flush.dropped_points": "\(pending[index].points)"])
                    index += 1
                    continue
                }
                if data.isFinal, clock.now < deadline - .milliseconds(250) {
                    try? await Task.sleep(for: .milliseconds(200))
                    continue
                }
                let rest = Array(pending[index...])
                pending = []
                let (dropped, queuedBytes, queuedPoints) = self.requeue(rest)
                if data.isFinal {
                    logger.error(
                        "Final flush could not be delivered; datapoints are lost",
                        metadata: [
                            "backend.name": "\(self.name)", "flush.lost_points": "\(queuedPoints + dropped)",
                            "error": "\(error)",
                        ])
                } else {
                    logger.warning(
                        "Flush failed; keeping it for the next flush",
                        metadata: [
                            "backend.name": "\(self.name)", "error": "\(error)", "retry.queued_bytes": "\(queuedBytes)",
                            "retry.dropped_points": "\(dropped)",
                        ])
                }
                return
            }
        }
        let elapsed = clock.now - start
        self.state.withLock { state in
            if refused == 0 || index > 0 { state.statistics.lastFlush = DaemonClock.unixSeconds() }
            state.statistics.flushTime = Double(elapsed.components.seconds * 1000)
                + Double(elapsed.components.attoseconds / 1_000_000_000_000_000)
            state.statistics.flushLength = Double(sentBytes)
        }
        if !queued.isEmpty && refused == 0 {
            logger.info(
                "Delivered flushes held back while the upstream was unreachable",
                metadata: ["backend.name": "\(self.name)", "flush.replayed_requests": "\(queued.count)"])
        }
    }

    /// Puts requests back at the end of the buffer, dropping the oldest past the bound.
    /// Returns (points dropped now, bytes queued, points queued).
    func requeue(_ requests: [HTTPRequest]) -> (Int, Int, Int) {
        self.state.withLock { state in
            state.queue += requests
            var bytes = state.queue.reduce(0) { $0 + $1.body.count }
            var dropped = 0
            while bytes > self.retryBufferBytes, !state.queue.isEmpty {
                let oldest = state.queue.removeFirst()
                bytes -= oldest.body.count
                dropped += oldest.points
            }
            state.statistics.queuedBytes = bytes
            state.statistics.droppedPoints += dropped
            return (dropped, bytes, state.queue.reduce(0) { $0 + $1.points })
        }
    }
}

/// Wall-clock time, as statsd reads it.
enum DaemonClock {
    static func unixSeconds() -> Double {
        GraphiteBackend.unixSeconds()
    }
}

/// Writes numbers and text for the JSON and line protocols, without NaN or Infinity.
struct TextWriter {
    var bytes: [UInt8] = []

    mutating func write(_ text: String) { self.bytes.append(contentsOf: text.utf8) }

    mutating func write(_ number: Double) { JSNumber.append(number, to: &self.bytes) }

    mutating func jsonString(_ text: String) {
        self.bytes.append(UInt8(ascii: "\""))
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": self.write("\\\"")
            case "\\": self.write("\\\\")
            case "\n": self.write("\\n")
            case "\r": self.write("\\r")
            case "\t": self.write("\\t")
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    self.write("\\u" + String(repeating: "0", count: 4 - hex.count) + hex)
                } else {
                    self.bytes.append(contentsOf: String(scalar).utf8)
                }
            }
        }
        self.bytes.append(UInt8(ascii: "\""))
    }
}
