//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import SidestatAggregation
import SidestatConfiguration

/// Etsy statsd's Graphite backend (plaintext or pickle), with delivery that survives outages.
///
/// A connection per flush, as statsd makes, through the delivery engine: each flush starts on time whatever carbon
/// does with the one before, what carbon could not be sent is kept, with its original timestamps, in a bounded
/// retry buffer and sent before the next flush (DEVIATIONS #17), and the final flush counts as delivered once
/// carbon has read it all.
public final class GraphiteBackend: MetricsBackend {
    public let name: String
    let configuration: GraphiteConfiguration
    let naming: GraphiteEncoder.Naming
    let sanitizeNames: Bool
    /// Nil without `graphiteHost`: statsd computes, and sends nothing.
    let delivery: Delivery<StreamTransport>?
    let startupTime: Double

    /// - Parameters:
    ///   - sanitizeNames: statsd's graphite backend sanitizes key names itself when `keyNameSanitize` is off.
    ///   - startupTime: Unix seconds; statsd reports it as the first `last_flush` and `last_exception`.
    public init(
        name: String = "graphite", configuration: GraphiteConfiguration, naming: GraphiteEncoder.Naming = .init(),
        sanitizeNames: Bool, retryBufferBytes: Int, startupTime: Double
    ) {
        self.name = name
        self.naming = naming
        self.configuration = configuration
        self.sanitizeNames = sanitizeNames
        self.startupTime = startupTime
        self.delivery = configuration.host.map { host in
            let port = configuration.wireProtocol == .pickle ? configuration.picklePort : configuration.port
            return Delivery(
                name: name, transport: StreamTransport(
                    label: "\(name) \(host):\(port)", host: host, port: port,
                    lineOriented: configuration.wireProtocol == .text),
                retryBufferBytes: retryBufferBytes, startupTime: startupTime)
        }
    }

    package var statistics: DeliveryStatistics {
        self.delivery?.statistics ?? DeliveryStatistics(startupTime: self.startupTime)
    }

    public func status() -> [(name: String, value: Double)] {
        let statistics = self.statistics
        var status: [(name: String, value: Double)] = [
            ("last_flush", statistics.lastFlush), ("last_exception", statistics.lastException),
            ("flush_time", statistics.flushTime), ("flush_length", statistics.flushLength),
        ]
        // statsd has no retry buffer: its figures appear once there is something to say.
        if statistics.queuedBytes > 0 || statistics.droppedPoints > 0 {
            status += [("queued_bytes", Double(statistics.queuedBytes)), ("dropped_points", Double(statistics.droppedPoints))]
        }
        return status
    }

    public var isHealthy: Bool { self.delivery?.isHealthy ?? true }

    public var destination: String {
        guard let host = self.configuration.host else {
            return "no graphiteHost: each flush is computed and sent nowhere"
        }
        return self.configuration.wireProtocol == .pickle
            ? "carbon pickle to \(host):\(self.configuration.picklePort)"
            : "carbon plaintext to \(host):\(self.configuration.port)"
    }

    public var deliversUpstream: Bool { self.delivery != nil }

    public var flushesOverlap: Bool { true }

    public var finalFlushWaitsForTick: Bool { self.delivery?.isReachable ?? false }

    /// statsd's graphite backend sends its figures as its `graphiteStats` lines; Hosted Graphite's go as gauges, as
    /// every other upstream's do.
    public var statusAsGauges: Bool { self.name != "graphite" }

    /// Carbon takes each point's own time: late points are sent at their interval's.
    public var acceptsLatePoints: Bool { true }

    public func flush(_ data: FlushData, deadline: ContinuousClock.Instant, logger: Logger) async {
        guard let delivery = self.delivery else { return }
        let statistics = delivery.statistics
        var naming = self.naming
        (naming.queuedBytes, naming.droppedPoints) = (statistics.queuedBytes, statistics.droppedPoints)
        let clock = ContinuousClock()
        let start = clock.now
        func encoder(_ data: FlushData) -> GraphiteEncoder {
            GraphiteEncoder(
                data: data, configuration: self.configuration, sanitizeNames: self.sanitizeNames,
                previous: GraphiteStatistics(statistics), naming: naming,
                now: {
                    let elapsed = clock.now - start
                    return Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
                })
        }
        // The interval's lines, then each group of late points (`|T` before the interval) at its own interval's
        // time, in the same delivery: carbon stores a point at the time it carries.
        var encoders = [encoder(data)]
        for late in data.lateFlushes {
            var lateEncoder = encoder(late)
            lateEncoder.includesTrailer = false
            encoders.append(lateEncoder)
        }
        var current = 0
        var skipped = 0
        await delivery.deliver(
            {
                while current < encoders.count {
                    if let chunk = encoders[current].nextChunk() { return chunk }
                    skipped += encoders[current].skippedNonFinite
                    current += 1
                }
                return nil
            }, isFinal: data.isFinal, deadline: deadline, logger: logger)
        if skipped > 0 {
            logger.warning(
                "Values that were NaN or infinite were left out of the flush",
                metadata: ["backend.name": "\(self.name)", "flush.skipped": "\(skipped)"])
        }
    }
}

extension GraphiteStatistics {
    /// The figures statsd's `graphiteStats` lines report.
    init(_ statistics: DeliveryStatistics) {
        self.init(startupTime: 0)
        self.lastFlush = statistics.lastFlush
        self.lastException = statistics.lastException
        self.flushTime = statistics.flushTime
        self.flushLength = statistics.flushLength
    }
}
