//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import NIOCore
import ServiceLifecycle

/// The run loop of Sidestat's NIO servers (TCP statsd, management, HTTP): accepts connections until graceful shutdown
/// and serves each in a child task. When shutdown begins the listening socket closes and every open connection is
/// cancelled and closed too: a persistent statsd client or an idle keep-alive scraper must not hold up the final
/// flush. (What a TCP client sent before that has been ingested as it arrived; a partial line is dropped.)
func acceptConnections<Inbound: Sendable, Outbound: Sendable>(
    on server: NIOAsyncChannel<NIOAsyncChannel<Inbound, Outbound>, Never>, logger: Logger, kind: String,
    serve: @escaping @Sendable (NIOAsyncChannelInboundStream<Inbound>, NIOAsyncChannelOutboundWriter<Outbound>) async throws
        -> Void
) async throws {
    try await withGracefulShutdownHandler {
        try await server.executeThenClose { connections in
            try await withThrowingDiscardingTaskGroup { group in
                for try await connection in connections {
                    group.addTask {
                        do {
                            try await cancelWhenGracefulShutdown {
                                try await connection.executeThenClose { inbound, outbound in
                                    try await serve(inbound, outbound)
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
