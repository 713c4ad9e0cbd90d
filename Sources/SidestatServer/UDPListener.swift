//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatSupport
import CSidestat
import Logging
import ServiceLifecycle
import SidestatAggregation
import SidestatBackends
import SidestatConfiguration
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A statsd UDP listener: dedicated reader threads that receive batches of datagrams with `recvmmsg` into
/// buffers allocated once, and aggregate each batch into their own shard under one lock acquisition.
///
/// Sockets are bound when the listener is made, so a port in use stops start-up with a clear message, and the
/// bound port is known before the daemon runs (port 0 picks a free one). On shutdown each reader drains what the
/// kernel already holds, then stops: nothing that arrived before the signal is lost.
public final class UDPListener: Service, Sendable {
    public let localAddress: String
    public let port: Int
    /// The socket file of a Unix datagram listener (removed when it stops).
    public let unixSocket: String?
    let sockets: [Int32]
    let firstShard: Int
    let aggregator: Aggregator
    let state: DaemonState
    let dumpMessages: Bool
    let forwarders: [any PacketForwarder]
    let logger: Logger
    private let stopping = Atomic<Bool>(false)

    /// Datagrams per `recvmmsg` call.
    static let batchSize = 64
    /// Bounds of the adaptive pause after a short receive batch, in microseconds.
    static let minimumNapMicroseconds = 50
    static let maximumNapMicroseconds = 400
    /// One datagram's receive buffer: room for the largest UDP payload (64 KiB) and the '\n' and 16 spare bytes
    /// the parser's hot path reads after it, plus 23 cache lines so that the buffers of a batch do not all start on
    /// the same cache sets (at a 64 KiB stride the first bytes of every datagram compete for the same few sets).
    static let slotBytes = 65_536 + 23 * 64
    /// What `recvmmsg` may write into a slot: all but the terminator's 17 bytes.
    static let receiveBytes = slotBytes - 17

    /// Binds `readers` sockets (SO_REUSEPORT when more than one) on the configured address and port.
    init(
        configuration: ListenerConfiguration, receiveBufferBytes: Int, readers: Int, firstShard: Int,
        aggregator: Aggregator, state: DaemonState, dumpMessages: Bool, forwarders: [any PacketForwarder] = [], logger: Logger
    ) throws {
        self.forwarders = forwarders
        self.firstShard = firstShard
        self.aggregator = aggregator
        self.state = state
        self.dumpMessages = dumpMessages
        self.logger = logger
        if configuration.transport == .unixDatagram, let path = configuration.unixSocket {
            // DogStatsD's Unix datagram socket: one reader, the same batch loop.
            let fd = sidestat_bind_unix_datagram(path, Int32(configuration.unixSocketMode ?? -1))
            guard fd >= 0 else {
                throw ListenError(description: "cannot listen on the Unix datagram socket \(path): \(ListenError.reason(-fd))")
            }
            Self.configure(fd, receiveBufferBytes: receiveBufferBytes)
            self.sockets = [fd]
            self.port = 0
            self.localAddress = path
            self.unixSocket = path
            return
        }
        self.unixSocket = nil
        var sockets: [Int32] = []
        var port = configuration.port
        var family: Int32 = AF_INET
        do {
            for _ in 0..<max(1, readers) {
                let (fd, boundPort, boundFamily) = try Self.bindSocket(
                    address: configuration.address, port: port, reusePort: readers > 1,
                    receiveBufferBytes: receiveBufferBytes, logger: logger, logBuffer: sockets.isEmpty)
                sockets.append(fd)
                port = boundPort
                family = boundFamily
            }
        } catch {
            for fd in sockets { close(fd) }
            throw error
        }
        self.sockets = sockets
        self.port = port
        self.localAddress = family == AF_INET6 ? "[\(configuration.address)]" : configuration.address
    }

    static func bindSocket(
        address: String, port: Int, reusePort: Bool, receiveBufferBytes: Int, logger: Logger, logBuffer: Bool
    ) throws -> (Int32, Int, Int32) {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var result: UnsafeMutablePointer<addrinfo>? = nil
        let status = getaddrinfo(address, String(port), &hints, &result)
        guard status == 0, let info = result else {
            throw ListenError("UDP", address: address, port: port, reason: "cannot resolve: \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(result) }
        let fd = socket(info.pointee.ai_family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ListenError("UDP", address: address, port: port, errno: errno) }
        var one: Int32 = 1
        if reusePort {
            // Never SO_REUSEADDR: on Linux it lets another process share the UDP port silently.
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        Self.configure(fd, receiveBufferBytes: receiveBufferBytes)
        guard bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
            let code = errno
            close(fd)
            throw ListenError("UDP", address: address, port: port, errno: code)
        }
        let boundPort = Int(sidestat_local_port(fd))
        if logBuffer {
            var effective: Int32 = 0
            var size = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &effective, &size)
            // Linux doubles the requested size for its bookkeeping and caps it at net.core.rmem_max.
            let metadata: Logger.Metadata = [
                "udp.receive_buffer.requested": "\(receiveBufferBytes)", "udp.receive_buffer.effective": "\(effective)",
            ]
            if Int(effective) < receiveBufferBytes {
                logger.warning(
                    "The kernel capped the UDP receive buffer (raise net.core.rmem_max to allow more)",
                    metadata: metadata)
            } else {
                logger.debug("UDP receive buffer", metadata: metadata)
            }
        }
        return (fd, boundPort, info.pointee.ai_family)
    }

    /// The receive buffer, and a receive timeout so that a reader notices shutdown.
    static func configure(_ fd: Int32, receiveBufferBytes: Int) {
        var requested = Int32(clamping: receiveBufferBytes)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &requested, socklen_t(MemoryLayout<Int32>.size))
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    public func run() async throws {
        let threads = self.sockets.enumerated().map { index, fd in
            ReaderThread(name: "sidestat-udp\(index)") { [self] in
                self.readLoop(fd: fd, shard: self.firstShard + index)
            }
        }
        for thread in threads { thread.start() }
        // Run until shutdown (or cancellation), then let the readers drain and stop.
        try? await gracefulShutdown()
        self.stopping.store(true, ordering: .releasing)
        for thread in threads { await thread.finished() }
        for fd in self.sockets { close(fd) }
        if let path = self.unixSocket { unlink(path) }
    }

    /// The reader loop: one `recvmmsg` per batch, one lock acquisition per batch.
    private func readLoop(fd: Int32, shard: Int) {
        let batch = Self.batchSize
        let stride = Self.slotBytes
        let buffers = UnsafeMutablePointer<UInt8>.allocate(capacity: batch * stride)
        let lengths = UnsafeMutablePointer<UInt32>.allocate(capacity: batch)
        defer {
            buffers.deallocate()
            lengths.deallocate()
        }
        let ingestShard = self.aggregator.shards[shard]
        var pipeline = IngestPipeline(
            aggregator: self.aggregator, shard: shard, state: self.state, dumpMessages: self.dumpMessages,
            forwarders: self.forwarders, logger: self.logger)
        let seesPackets = pipeline.seesPackets
        var draining = false
        // After a short batch, a short nap lets the next recvmmsg find a fuller queue: fewer wakeups and system
        // calls per datagram. The nap grows while batches stay short and shrinks when one comes back full; the
        // socket buffer holds far more than arrives during the longest nap.
        var nap = Self.minimumNapMicroseconds
        while true {
            let flags = draining ? sidestat_msg_dontwait() : 0
            let count = sidestat_recv_batch(fd, buffers, stride, Self.receiveBytes, UInt32(batch), lengths, flags)
            if count > 0 {
                if seesPackets {
                    for index in 0..<Int(count) {
                        pipeline.received(UnsafeRawBufferPointer(start: buffers + index * stride, count: Int(lengths[index])))
                    }
                }
                let report = ingestShard.withBatch(sequence: self.aggregator.nextSequence(), terminated: true) {
                    ingest in
                    for index in 0..<Int(count) {
                        let length = Int(lengths[index])
                        (buffers + index * stride + length).pointee = UInt8(ascii: "\n")
                        ingest(UnsafeRawBufferPointer(start: buffers + index * stride, count: length))
                    }
                }
                pipeline.ingested(report)
            } else if count < 0 {
                self.logger.error("UDP receive failed", metadata: ["error": "\(String(cString: strerror(-count)))"])
                if draining { return }
            } else if draining {
                return  // the kernel queue is empty
            }
            if count > 0 && !draining {
                if count < Int32(batch) {
                    usleep(UInt32(nap))
                    nap = min(nap * 2, Self.maximumNapMicroseconds)
                } else {
                    nap = max(nap / 2, Self.minimumNapMicroseconds)
                }
            }
            if !draining, self.stopping.load(ordering: .acquiring) {
                draining = true
            }
        }
    }
}
