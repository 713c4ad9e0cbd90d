//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import SidestatAggregation
import SidestatConfiguration
import SidestatProtocol
import Synchronization

/// A key split into its name and its tags: `req;env=prod;dc=x` → `req`, [(env, prod), (dc, x)].
public struct MetricName: Sendable {
    public var name: String
    public var tags: [(key: String, value: String)]

    public init(_ key: String) {
        var key = key
        (self.name, self.tags) = key.withUTF8 { bytes in
            // `name;tag1=value1;tag2`: split on `;`, each tag on its first `=`; empty tags are skipped.
            func text(_ range: Range<Int>) -> String { String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self) }
            var end = 0
            while end < bytes.count, bytes[end] != UInt8(ascii: ";") { end += 1 }
            let name = text(0..<end)
            var tags: [(key: String, value: String)] = []
            var start = end + 1
            while start <= bytes.count {
                var stop = start
                var equals: Int? = nil
                while stop < bytes.count, bytes[stop] != UInt8(ascii: ";") {
                    if equals == nil, bytes[stop] == UInt8(ascii: "=") { equals = stop }
                    stop += 1
                }
                if stop > start {
                    if let equals {
                        tags.append((text(start..<equals), text(equals + 1..<stop)))
                    } else {
                        tags.append((text(start..<stop), ""))
                    }
                }
                start = stop + 1
            }
            return (name, tags)
        }
    }
}

/// An upstream reached with HTTP requests (Librato, InfluxDB, OTLP): each flush is encoded into requests and handed
/// to the delivery engine, which sends them after any still held from earlier flushes. A request that fails in a way
/// that may pass later (no response, 408, 429, 5xx) is kept, with the rest of the flush, for the next flush; one the
/// upstream refuses (any other status) is dropped and counted at once.
public final class HTTPBackend: MetricsBackend {
    public let name: String
    public let destination: String
    let encode: @Sendable (FlushData) -> [HTTPRequest]
    let delivery: Delivery<HTTPTransport>
    /// Whether each group of late points is encoded at its own interval's time (an API that takes per-point times:
    /// InfluxDB, OTLP) rather than folded into the interval by the flusher.
    public let acceptsLatePoints: Bool

    /// - Parameter destination: where the requests go, for the start-up line (the API's URL).
    public init(
        name: String, destination: String = "", retryBufferBytes: Int, startupTime: Double,
        acceptsLatePoints: Bool = false, encode: @escaping @Sendable (FlushData) -> [HTTPRequest]
    ) {
        self.name = name
        self.destination = destination
        self.acceptsLatePoints = acceptsLatePoints
        self.encode = encode
        self.delivery = Delivery(
            name: name, transport: HTTPTransport(name: name), retryBufferBytes: retryBufferBytes,
            startupTime: startupTime)
    }

    /// An HTTP upstream made from its section: `encode` gets each flush and the daemon's instance name.
    public convenience init(
        name: String, destination: String, context: BackendContext, acceptsLatePoints: Bool = false,
        encode: @escaping @Sendable (FlushData, _ instance: String) -> [HTTPRequest]
    ) {
        let instance = context.configuration.instance
        self.init(
            name: name, destination: destination, retryBufferBytes: context.configuration.retryBufferBytes,
            startupTime: context.startupTime, acceptsLatePoints: acceptsLatePoints
        ) { encode($0, instance) }
    }

    package var statistics: DeliveryStatistics { self.delivery.statistics }

    public func status() -> [(name: String, value: Double)] { self.statistics.status }

    public var isHealthy: Bool { self.delivery.isHealthy }

    public var flushesOverlap: Bool { true }

    public func flush(_ data: FlushData, deadline: ContinuousClock.Instant, logger: Logger) async {
        let flushes = [data] + (self.acceptsLatePoints ? data.lateFlushes : [])
        var requests = flushes.flatMap(self.encode).makeIterator()
        await self.delivery.deliver({ requests.next() }, isFinal: data.isFinal, deadline: deadline, logger: logger)
    }
}

extension HTTPRequest: DeliveryPayload {
    public var byteCount: Int { self.body.count }
}

/// Sends requests once: a 2xx response delivers one; a status that says the upstream will never take it drops it.
struct HTTPTransport: DeliveryTransport {
    let name: String

    func send(_ source: DeliverySource<HTTPRequest>, _ attempt: DeliveryAttempt) async -> DeliveryFailure? {
        func milliseconds(until instant: ContinuousClock.Instant) -> Int {
            let remaining = instant - .now
            return Int(remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000)
        }
        while let request = source.next() {
            let remaining = milliseconds(until: attempt.deadline())
            guard remaining > 0 else { return DeliveryFailure("\(self.name): the flush deadline passed", connected: true) }
            do throws(HTTPClient.Failure) {
                // At least 200 ms to connect, even past the attempt's connect window: a retry after an answer.
                _ = try await HTTPClient.send(
                    request, timeoutMilliseconds: min(remaining, 10_000),
                    connectTimeoutMilliseconds: max(200, milliseconds(until: attempt.connectDeadline)))
                source.confirm()
            } catch {
                guard error.retryable else {
                    source.reject(because: "\(self.name): \(error)", key: "HTTP \(error.status)")
                    continue
                }
                return DeliveryFailure("\(self.name): \(error)", connected: error.connected)
            }
        }
        return nil
    }
}

/// Writes numbers and text for the JSON and line protocols, without NaN or Infinity.
struct TextWriter {
    var bytes: [UInt8] = []

    mutating func write(_ text: String) { self.bytes.append(contentsOf: text.utf8) }

    mutating func write(_ number: Double) { JSNumber.append(number, to: &self.bytes) }

    mutating func jsonString(_ text: String) { JSONText.append(text, to: &self.bytes) }
}
