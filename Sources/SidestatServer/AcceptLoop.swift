//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import SidestatSupport
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The run loop of Sidestat's NIO servers (TCP statsd, management, HTTP): accepts connections until graceful shutdown
/// and serves each in a child task. When shutdown begins the listening socket closes and every open connection is
/// cancelled and closed too: a persistent statsd client or an idle keep-alive scraper must not hold up the final
/// flush. (What a TCP client sent before that has been ingested as it arrived; a partial line is dropped.)
///
/// At most `maximumConnections` are served at once. One more takes the place of the connection idle the longest
/// (logged once a minute at most), so that clients holding idle sockets cannot lock the others out; only when every
/// connection is busy answering is the new one closed at once.
func acceptConnections<Inbound: Sendable, Outbound: Sendable>(
    on server: NIOAsyncChannel<NIOAsyncChannel<Inbound, Outbound>, Never>, registry: ConnectionRegistry,
    logger: Logger, kind: String, maximumConnections: Int = 256,
    serve: @escaping @Sendable (NIOAsyncChannelInboundStream<Inbound>, ReplyWriter<Outbound>, ConnectionHandle)
        async throws -> Void
) async throws {
    let listener = registry.newListener()
    try await withGracefulShutdownHandler {
        try await server.executeThenClose { connections in
            try await withThrowingDiscardingTaskGroup { group in
                for try await connection in connections {
                    let (id, evicted) = registry.admit(connection.channel, listener: listener, limit: maximumConnections)
                    if let evicted {
                        evicted.close(promise: nil)
                        if registry.shouldReport(listener) {
                            logger.warning(
                                "At the connection bound: the connection idle the longest is closed for a new one",
                                metadata: [
                                    "listener.kind": "\(kind)", "listener.maximum_connections": "\(maximumConnections)",
                                ])
                        }
                    }
                    guard let id else {
                        // Every connection is busy answering: this one is closed at once (through the async channel:
                        // dropping it unclosed would trap).
                        group.addTask { try? await connection.executeThenClose { _, _ in } }
                        if registry.shouldReport(listener) {
                            logger.warning(
                                "Too many connections, all busy; new ones are closed at once",
                                metadata: ["listener.kind": "\(kind)", "listener.maximum_connections": "\(maximumConnections)"])
                        }
                        continue
                    }
                    group.addTask {
                        defer { registry.leave(id) }
                        do {
                            try await cancelWhenGracefulShutdown {
                                let writer = ReplyWriter<Outbound>(channel: connection.channel)
                                try await connection.executeThenClose { inbound, _ in
                                    try await serve(inbound, writer, ConnectionHandle(registry: registry, id: id))
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

/// Every connection the daemon's TCP listeners serve, with when each last did something and whether it is busy
/// answering: at a listener's bound, or when the process runs out of descriptors, the one idle the longest is closed
/// to make room.
final class ConnectionRegistry: Sendable {
    struct Entry: Sendable {
        let channel: any Channel
        let listener: Int
        /// The registry's activity counter when the connection last read something (a higher one is more recent).
        var active: UInt64
        var busy = false
    }

    struct State {
        var entries: [Int: Entry] = [:]
        var nextID = 0
        var listeners = 0
        var activity: UInt64 = 0
    }

    private let state = Mutex(State())
    private let reports = ReportThrottle<Int>()

    init() {}

    func newListener() -> Int {
        self.state.withLock { state in
            state.listeners += 1
            return state.listeners
        }
    }

    /// Counts a new connection of `listener`. At `limit`, the listener's connection idle the longest is taken out and
    /// returned to be closed; when every one is busy, the new one is refused (nil).
    func admit(_ channel: any Channel, listener: Int, limit: Int) -> (id: Int?, evicted: (any Channel)?) {
        self.state.withLock { state in
            var evicted: (any Channel)? = nil
            let open = state.entries.values.lazy.filter { $0.listener == listener }
            if open.count >= limit {
                guard let oldest = state.entries.filter({ $0.value.listener == listener && !$0.value.busy })
                    .min(by: { $0.value.active < $1.value.active })
                else { return (nil, nil) }
                evicted = oldest.value.channel
                state.entries[oldest.key] = nil
            }
            state.nextID += 1
            state.activity += 1
            state.entries[state.nextID] = Entry(channel: channel, listener: listener, active: state.activity)
            return (state.nextID, evicted)
        }
    }

    /// The process ran out of descriptors: closes the connection idle the longest, of any listener. Returns whether
    /// there was one.
    func evictOldestIdle() -> Bool {
        let oldest = self.state.withLock { state -> (any Channel)? in
            guard let oldest = state.entries.filter({ !$0.value.busy }).min(by: { $0.value.active < $1.value.active })
            else { return nil }
            state.entries[oldest.key] = nil
            return oldest.value.channel
        }
        oldest?.close(promise: nil)
        return oldest != nil
    }

    func touch(_ id: Int) {
        self.state.withLock { state in
            state.activity += 1
            state.entries[id]?.active = state.activity
        }
    }

    func setBusy(_ id: Int, _ busy: Bool) {
        self.state.withLock { state in
            state.activity += 1
            state.entries[id]?.active = state.activity
            state.entries[id]?.busy = busy
        }
    }

    func leave(_ id: Int) {
        self.state.withLock { $0.entries[id] = nil }
    }

    /// Open connections of `listener` (for tests and `stats`).
    func count(_ listener: Int? = nil) -> Int {
        self.state.withLock { state in state.entries.values.filter { listener == nil || $0.listener == listener }.count }
    }

    /// True at most once a minute for each listener.
    func shouldReport(_ listener: Int) -> Bool { self.reports.shouldReport(listener) }
}

/// One connection's place in the registry: what serving it reports.
struct ConnectionHandle: Sendable {
    let registry: ConnectionRegistry
    let id: Int

    /// It read something.
    func touch() { self.registry.touch(self.id) }

    /// It is answering a request (not to be closed for a newcomer), or done.
    func busy(_ busy: Bool) { self.registry.setBusy(self.id, busy) }
}

/// Out of descriptors (EMFILE, ENFILE) or kernel memory, accept fails while connections wait; NIO would try again at
/// once, and the listening socket stays readable, so it spins. This stops reading from the listening socket instead,
/// closes the connection idle the longest (of any listener) to free a descriptor, and tries again shortly: at once
/// when one was freed, after a second otherwise. It is logged at most once a minute.
final class AcceptPause: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel

    let registry: ConnectionRegistry
    let logger: Logger
    let kind: String
    private let reports = ReportThrottle<Bool>()

    init(registry: ConnectionRegistry, logger: Logger, kind: String) {
        self.registry = registry
        self.logger = logger
        self.kind = kind
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let error = error as? IOError, [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(error.errnoCode) else {
            context.fireErrorCaught(error)
            return
        }
        let channel = context.channel
        try? channel.syncOptions?.setOption(.autoRead, value: false)
        let freed = self.registry.evictOldestIdle()
        if self.reports.shouldReport() {
            self.logger.warning(
                "Cannot accept a connection: \(freed ? "the connection idle the longest is closed to make room" : "accepting pauses for a second")",
                metadata: ["listener.kind": "\(self.kind)", "error": "\(error)"])
        }
        context.eventLoop.assumeIsolated().scheduleTask(in: freed ? .milliseconds(10) : .seconds(1)) {
            try? channel.syncOptions?.setOption(.autoRead, value: true)
        }
    }
}
