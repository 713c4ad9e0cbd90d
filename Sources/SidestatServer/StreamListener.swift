//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import SidestatAggregation
import SidestatBackends
import SidestatConfiguration

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// statsd's TCP server (`server: "./servers/tcp"`), on a port or a Unix domain socket (`socket`).
///
/// Lines are newline-delimited; a line split across TCP segments is joined, and a final line without a newline
/// is kept when the client closes the connection (statsd drops it). Each read that completes at least one line
/// counts as one packet, as in statsd.
public final class StreamListener: Service, Sendable {
    let server: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>
    let shard: Int
    let aggregator: Aggregator
    let state: DaemonState
    let dumpMessages: Bool
    let forwarders: [any PacketForwarder]
    let logger: Logger
    let unixSocket: String?
    let lengthPrefixed: Bool
    let registry: ConnectionRegistry
    public let description: String
    public let port: Int

    /// Binds the listener now, so that errors stop start-up.
    static func bind(
        configuration: ListenerConfiguration, shard: Int, aggregator: Aggregator, state: DaemonState,
        dumpMessages: Bool, forwarders: [any PacketForwarder] = [], idleTimeout: Int = 0,
        registry: ConnectionRegistry = ConnectionRegistry(), logger: Logger
    ) async throws -> StreamListener {
        let bootstrap = ServerBootstrap.sidestat(backlog: 256, registry: registry, logger: logger, kind: "TCP")
            .childChannelOption(.allowRemoteHalfClosure, value: true)
        let initializer: @Sendable (any Channel) -> EventLoopFuture<NIOAsyncChannel<ByteBuffer, ByteBuffer>> = {
            channel in
            channel.eventLoop.makeCompletedFuture {
                if idleTimeout > 0 {
                    try channel.pipeline.syncOperations.addHandlers(
                        IdleStateHandler(readTimeout: .seconds(Int64(idleTimeout))),
                        CloseIdleConnection(seconds: idleTimeout, setting: "tcpIdleTimeout", logger: logger))
                }
                return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
        let server: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>
        let description: String
        if let path = configuration.unixSocket {
            do {
                server = try await bootstrap.bind(
                    unixDomainSocketPath: path, cleanupExistingSocketFile: true, childChannelInitializer: initializer)
            } catch {
                let reason = (error as? IOError).map { ListenError.reason($0.errnoCode) } ?? "\(error)"
                throw ListenError(description: "cannot listen on the Unix socket \(path): \(reason)")
            }
            if let mode = configuration.unixSocketMode { chmod(path, mode_t(mode)) }
            description = "unix:\(path)"
        } else {
            do {
                server = try await bootstrap.bind(
                    host: configuration.address, port: configuration.port, childChannelInitializer: initializer)
            } catch {
                throw ListenError("TCP", address: configuration.address, port: configuration.port, error: error)
            }
            description = "tcp://\(configuration.address):\(server.channel.localAddress?.port ?? configuration.port)"
        }
        return StreamListener(
            server: server, shard: shard, aggregator: aggregator, state: state, dumpMessages: dumpMessages,
            forwarders: forwarders, logger: logger, unixSocket: configuration.unixSocket,
            lengthPrefixed: configuration.lengthPrefixed, registry: registry, description: description,
            port: server.channel.localAddress?.port ?? 0)
    }

    private init(
        server: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>, shard: Int, aggregator: Aggregator,
        state: DaemonState, dumpMessages: Bool, forwarders: [any PacketForwarder], logger: Logger, unixSocket: String?,
        lengthPrefixed: Bool, registry: ConnectionRegistry, description: String, port: Int
    ) {
        self.lengthPrefixed = lengthPrefixed
        self.registry = registry
        self.forwarders = forwarders
        self.server = server
        self.shard = shard
        self.aggregator = aggregator
        self.state = state
        self.dumpMessages = dumpMessages
        self.logger = logger
        self.unixSocket = unixSocket
        self.description = description
        self.port = port
    }

    public func run() async throws {
        defer {
            if let path = self.unixSocket { unlink(path) }
        }
        try await acceptConnections(on: self.server, registry: self.registry, logger: self.logger, kind: "TCP") {
            inbound, _, connection in
            var pipeline = IngestPipeline(
                aggregator: self.aggregator, shard: self.shard, state: self.state, dumpMessages: self.dumpMessages,
                forwarders: self.forwarders, logger: self.logger)
            if self.lengthPrefixed {
                try await self.readFrames(inbound, into: &pipeline)
                return
            }
            var pending: [UInt8] = []
            // A line longer than `maximumLineBytes` is dropped (a bad line, counted and logged) and skipped to its
            // end, so a client that never sends a newline costs a bounded buffer.
            var skipping = false
            for try await buffer in inbound {
                connection.touch()
                buffer.withUnsafeReadableBytes { chunk in
                    var bytes = chunk[...]
                    if skipping {
                        guard let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) else { return }
                        skipping = false
                        bytes = bytes[(newline + 1)...]
                    }
                    guard let lastNewline = bytes.lastIndex(of: UInt8(ascii: "\n")) else {
                        pending.append(contentsOf: bytes)
                        if pending.count > Self.maximumLineBytes {
                            self.dropLongLine(&pending, &pipeline)
                            skipping = true
                        }
                        return
                    }
                    if pending.isEmpty {
                        pipeline.ingest(UnsafeRawBufferPointer(rebasing: bytes[bytes.startIndex...lastNewline]))
                    } else {
                        pending.append(contentsOf: bytes[bytes.startIndex...lastNewline])
                        pending.withUnsafeBytes { pipeline.ingest($0) }
                        pending.removeAll(keepingCapacity: true)
                    }
                    pending.append(contentsOf: bytes[(lastNewline + 1)...])
                    if pending.count > Self.maximumLineBytes {
                        self.dropLongLine(&pending, &pipeline)
                        skipping = true
                    }
                }
            }
            // The client closed: its last line counts even without a newline.
            if !pending.isEmpty {
                pending.withUnsafeBytes { pipeline.ingest($0) }
            }
        }
    }

    /// DogStatsD's stream framing: a 4-byte little-endian length, then that many bytes of newline-separated lines.
    /// A frame longer than a datagram can be is a bad line, and the connection is closed (it cannot be resynced).
    private func readFrames(
        _ inbound: NIOAsyncChannelInboundStream<ByteBuffer>, into pipeline: inout IngestPipeline
    ) async throws {
        var pending: [UInt8] = []
        var start = 0
        for try await buffer in inbound {
            buffer.withUnsafeReadableBytes { pending.append(contentsOf: $0) }
            while pending.count - start >= 4 {
                let length = pending[start..<(start + 4)].reversed().reduce(0) { $0 << 8 | Int($1) }
                guard length <= Self.maximumLineBytes else {
                    pipeline.badLine("Bad line: a length-prefixed frame of \(length) bytes, the connection is closed")
                    return
                }
                guard pending.count - start - 4 >= length else { break }
                if length > 0 {
                    pending.withUnsafeBytes { pipeline.ingest(UnsafeRawBufferPointer(rebasing: $0[(start + 4)..<(start + 4 + length)])) }
                }
                start += 4 + length
            }
            if start > 0 {
                pending.removeFirst(start)
                start = 0
            }
        }
    }

    /// The longest line read from a stream (a UDP datagram's limit): longer is a bad line.
    static let maximumLineBytes = 65_536

    private func dropLongLine(_ pending: inout [UInt8], _ pipeline: inout IngestPipeline) {
        let start = String(decoding: pending.prefix(64), as: UTF8.self)
        pending.removeAll(keepingCapacity: false)
        pipeline.badLine("Bad line: longer than \(Self.maximumLineBytes) bytes, dropped: \"\(start)...\"")
    }
}

/// Closes a statsd TCP or management connection that sent nothing for `seconds` (a client that went away without
/// closing, or one holding a connection it never uses), so that such connections cannot pile up to the bound.
/// What it sent before has been read as it arrived.
final class CloseIdleConnection: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    let seconds: Int
    /// The configuration key that sets `seconds`, for the log line.
    let setting: String
    let logger: Logger

    init(seconds: Int, setting: String, logger: Logger) {
        self.seconds = seconds
        self.setting = setting
        self.logger = logger
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read {
            self.logger.info(
                "Closing a connection idle for \(self.seconds) s (\(self.setting))",
                metadata: ["peer": "\(context.remoteAddress.map { "\($0)" } ?? "?")"])
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}
