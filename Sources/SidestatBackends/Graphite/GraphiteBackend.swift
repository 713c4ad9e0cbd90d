//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import NIOCore
import NIOPosix
import SidestatAggregation
import SidestatConfiguration
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Etsy statsd's Graphite backend (plaintext or pickle), with delivery that survives outages.
///
/// One TCP connection per flush, as statsd makes. A flush counts as delivered only when carbon has read it all:
/// Sidestat half-closes the connection and waits for carbon to close its side. A flush that cannot be delivered
/// is kept, with its original timestamps, in a bounded retry buffer and sent before the next one; past the bound
/// the oldest datapoints are dropped and counted (DEVIATIONS #17).
public final class GraphiteBackend: MetricsBackend {
    public let name: String
    let configuration: GraphiteConfiguration
    let naming: GraphiteEncoder.Naming
    let sanitizeNames: Bool
    let retryBufferBytes: Int
    let clock = ContinuousClock()

    struct State {
        var statistics: GraphiteStatistics
        var queue: [GraphiteEncoder.Chunk] = []
        var queuedBytes = 0
        var droppedPoints = 0
        var skippedNonFinite = 0

        /// Appends chunks and drops the oldest ones past `limit` bytes; returns the datapoints dropped.
        mutating func enqueue(_ chunks: [GraphiteEncoder.Chunk], limit: Int) -> Int {
            self.queue += chunks
            self.queuedBytes += chunks.reduce(0) { $0 + $1.bytes.count }
            var dropped = 0
            while self.queuedBytes > limit, !self.queue.isEmpty {
                let oldest = self.queue.removeFirst()
                self.queuedBytes -= oldest.bytes.count
                dropped += oldest.points
            }
            self.droppedPoints += dropped
            return dropped
        }
    }

    let state: Mutex<State>

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
        self.retryBufferBytes = retryBufferBytes
        self.state = Mutex(State(statistics: GraphiteStatistics(startupTime: startupTime)))
    }

    public var statistics: GraphiteStatistics { self.state.withLock { $0.statistics } }
    public var queuedBytes: Int { self.state.withLock { $0.queuedBytes } }
    public var droppedPoints: Int { self.state.withLock { $0.droppedPoints } }

    public func status() -> [(name: String, value: Double)] {
        let (statistics, queued, dropped) = self.state.withLock { ($0.statistics, $0.queuedBytes, $0.droppedPoints) }
        var status: [(name: String, value: Double)] = [
            ("last_flush", statistics.lastFlush), ("last_exception", statistics.lastException),
            ("flush_time", statistics.flushTime), ("flush_length", statistics.flushLength),
        ]
        // statsd has no retry buffer: its figures appear once there is something to say.
        if queued > 0 || dropped > 0 {
            status += [("queued_bytes", Double(queued)), ("dropped_points", Double(dropped))]
        }
        return status
    }

    /// Whether the last delivery succeeded, or a failed one is still buffered whole (for /readyz).
    public var isHealthy: Bool {
        self.state.withLock { $0.statistics.lastFlush >= $0.statistics.lastException || $0.droppedPoints == 0 }
    }

    public func flush(_ data: FlushData, deadline: ContinuousClock.Instant, logger: Logger) async {
        guard let host = self.configuration.host else { return }  // statsd computes, and sends nothing
        let port = self.configuration.wireProtocol == .pickle ? self.configuration.picklePort : self.configuration.port
        let start = self.clock.now
        var naming = self.naming
        (naming.queuedBytes, naming.droppedPoints) = self.state.withLock { ($0.queuedBytes, $0.droppedPoints) }
        var encoder = GraphiteEncoder(
            data: data, configuration: self.configuration, sanitizeNames: self.sanitizeNames,
            previous: self.statistics, naming: naming, now: { Self.milliseconds(since: start) })
        let queued = self.state.withLock { state -> [GraphiteEncoder.Chunk] in
            defer {
                state.queue = []
                state.queuedBytes = 0
            }
            return state.queue
        }
        // The current flush's chunks, kept (up to the retry bound) until carbon confirms them.
        var sent: [GraphiteEncoder.Chunk] = []
        var sentBytes = 0
        var length = 0
        var attempt = 0
        while true {
            attempt += 1
            do {
                try await Self.deliver(host: host, port: port, deadline: deadline) { write in
                        for chunk in queued { try await write(chunk.bytes) }
                        for chunk in sent { try await write(chunk.bytes) }
                        while let chunk = encoder.nextChunk() {
                            length += chunk.bytes.count
                            sent.append(chunk)
                            sentBytes += chunk.bytes.count
                            while sentBytes > self.retryBufferBytes, sent.count > 1 {
                                sentBytes -= sent.removeFirst().bytes.count
                            }
                            try await write(chunk.bytes)
                        }
                }
                let elapsed = Self.milliseconds(since: start)
                let skipped = encoder.skippedNonFinite
                self.state.withLock { state in
                    state.statistics.lastFlush = Self.unixSeconds()
                    state.statistics.flushTime = elapsed.rounded(.down)
                    state.statistics.flushLength = Double(length)
                    state.skippedNonFinite += skipped
                }
                if skipped > 0 {
                    logger.warning(
                        "Values that were NaN or infinite were left out of the flush",
                        metadata: ["backend.name": "\(self.name)", "flush.skipped": "\(skipped)"])
                }
                if !queued.isEmpty {
                    logger.info(
                        "Delivered flushes held back while Graphite was unreachable",
                        metadata: [
                            "backend.name": "\(self.name)", "flush.replayed_points": "\(queued.reduce(0) { $0 + $1.points })",
                        ])
                }
                return
            } catch {
                self.state.withLock { $0.statistics.lastException = Self.unixSeconds() }
                // On the final flush there is no next flush to retry with: keep trying until the deadline.
                if data.isFinal, self.clock.now < deadline - .milliseconds(250) {
                    if attempt == 1 {
                        logger.warning(
                            "Final flush to Graphite failed; retrying until the shutdown deadline",
                            metadata: ["backend.name": "\(self.name)", "error": "\(error)"])
                    }
                    try? await Task.sleep(for: .milliseconds(200))
                    continue
                }
                while let chunk = encoder.nextChunk() { sent.append(chunk) }
                let dropped = self.state.withLock { state in
                    state.enqueue(queued + sent, limit: self.retryBufferBytes)
                }
                let (queuedBytes, queuedPoints) = self.state.withLock { state in
                    (state.queuedBytes, state.queue.reduce(0) { $0 + $1.points })
                }
                if data.isFinal {
                    logger.error(
                        "Final flush could not be delivered to Graphite; datapoints are lost",
                        metadata: [
                            "backend.name": "\(self.name)", "graphite.host": "\(host):\(port)",
                            "flush.lost_points": "\(queuedPoints + dropped)", "error": "\(error)",
                        ])
                } else {
                    logger.warning(
                        "Graphite flush failed; keeping it for the next flush",
                        metadata: [
                            "backend.name": "\(self.name)", "graphite.host": "\(host):\(port)", "error": "\(error)",
                            "retry.queued_bytes": "\(queuedBytes)", "retry.dropped_points": "\(dropped)",
                        ])
                }
                return
            }
        }
    }

    // MARK: - Transport

    struct DeadlineExceeded: Error, CustomStringConvertible {
        var description: String { "the flush deadline passed" }
    }

    /// Connects, lets `body` write, half-closes, and returns once carbon has closed its side: by then it has
    /// read every byte.
    static func deliver(
        host: String, port: Int, deadline: ContinuousClock.Instant,
        _ body: (_ write: ([UInt8]) async throws -> Void) async throws -> Void
    ) async throws {
        let remaining = deadline - ContinuousClock().now
        guard remaining > .zero else { throw DeadlineExceeded() }
        let remainingNanoseconds =
            remaining.components.seconds * 1_000_000_000 + remaining.components.attoseconds / 1_000_000_000
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.nanoseconds(min(remainingNanoseconds, 5_000_000_000)))
            .channelOption(.allowRemoteHalfClosure, value: true)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                        wrappingChannelSynchronously: channel,
                        configuration: .init(isOutboundHalfClosureEnabled: true))
                }
            }
        // Past the deadline the connection is closed, which ends any write or wait below with an error.
        let timeout = channel.channel.eventLoop.scheduleTask(in: .nanoseconds(remainingNanoseconds)) {
            channel.channel.close(promise: nil)
        }
        defer { timeout.cancel() }
        try await channel.executeThenClose { inbound, outbound in
            try await body { bytes in
                try await outbound.write(ByteBuffer(bytes: bytes))
            }
            outbound.finish()
            for try await _ in inbound {}
        }
        // The stream also ends when the deadline closed the connection: that is not a confirmation.
        if ContinuousClock().now >= deadline { throw DeadlineExceeded() }
    }

    static func milliseconds(since start: ContinuousClock.Instant) -> Double {
        let elapsed = ContinuousClock().now - start
        return Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
    }

    static func unixSeconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Double(now.tv_sec) + (now.tv_nsec >= 500_000_000 ? 1 : 0)
    }
}
