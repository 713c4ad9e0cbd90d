//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// The run loop of Sidestat's NIO servers (TCP statsd, management, HTTP): accepts connections until graceful shutdown
/// and serves each in a child task. When shutdown begins the listening socket closes and every open connection is
/// cancelled and closed too: a persistent statsd client or an idle keep-alive scraper must not hold up the final
/// flush. (What a TCP client sent before that has been ingested as it arrived; a partial line is dropped.)
///
/// At most `maximumConnections` are served at once: one more is closed as soon as it is accepted (and logged once a
/// minute at most), so that local clients cannot take every descriptor and leave the other listeners unable to accept.
func acceptConnections<Inbound: Sendable, Outbound: Sendable>(
    on server: NIOAsyncChannel<NIOAsyncChannel<Inbound, Outbound>, Never>, logger: Logger, kind: String,
    maximumConnections: Int = 256,
    serve: @escaping @Sendable (NIOAsyncChannelInboundStream<Inbound>, ReplyWriter<Outbound>) async throws -> Void
) async throws {
    let open = ConnectionCount()
    try await withGracefulShutdownHandler {
        try await server.executeThenClose { connections in
            try await withThrowingDiscardingTaskGroup { group in
                for try await connection in connections {
                    guard open.enter(limit: maximumConnections) else {
                        // Closed through the async channel (dropping it unclosed would trap).
                        group.addTask { try? await connection.executeThenClose { _, _ in } }
                        if open.shouldReportRefusal() {
                            logger.warning(
                                "Too many connections; new ones are closed at once",
                                metadata: ["listener.kind": "\(kind)", "listener.maximum_connections": "\(maximumConnections)"])
                        }
                        continue
                    }
                    group.addTask {
                        defer { open.leave() }
                        do {
                            try await cancelWhenGracefulShutdown {
                                let writer = ReplyWriter<Outbound>(channel: connection.channel)
                                try await connection.executeThenClose { inbound, _ in
                                    try await serve(inbound, writer)
                                }
                            }
                        } catch {
                            logger.debug("\(kind) connection closed with an error", metadata: ["error": "\(error)"])
                        }
                    }
                }
            }
        }
    } onGracefulShutdown: {
        server.channel.close(promise: nil)
    }
}

/// Writes a connection's replies. Each write returns once its bytes are in the socket's send buffer, so a reply to a
/// slow reader is whole before the connection closes: `NIOAsyncChannel`'s own writer returns as soon as it has
/// queued the bytes, and closing the channel then drops what is still queued (swift-nio #2795).
struct ReplyWriter<Outbound: Sendable>: Sendable {
    let channel: any Channel

    func write(_ part: Outbound) async throws {
        try await self.channel.writeAndFlush(part).get()
    }
}

/// The connections a listener serves, and when it last said it refused one.
final class ConnectionCount: Sendable {
    private let state = Mutex<(open: Int, lastReport: ContinuousClock.Instant?)>((0, nil))

    /// Counts a new connection, unless `limit` are open already.
    func enter(limit: Int) -> Bool {
        self.state.withLock { state in
            guard state.open < limit else { return false }
            state.open += 1
            return true
        }
    }

    func leave() {
        self.state.withLock { $0.open -= 1 }
    }

    /// True at most once a minute.
    func shouldReportRefusal() -> Bool {
        self.state.withLock { state in
            let now = ContinuousClock.now
            if let last = state.lastReport, now - last < .seconds(60) { return false }
            state.lastReport = now
            return true
        }
    }
}
