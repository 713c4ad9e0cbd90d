//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import ServiceLifecycle
import SidestatAggregation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// statsd's repeater backend: every packet received (bad lines included) is forwarded unchanged to other statsd
/// servers, over UDP, or over TCP with a newline after each packet that lacks one.
///
/// Forwarding never blocks ingest. UDP sends are non-blocking (a full socket buffer drops the packet, counted).
/// Over TCP each target has its own bounded queue, drained by the delivery engine over one kept connection: every
/// packet reaches every target, in order, once; what a target cannot take yet is retried. On shutdown (after the
/// listeners have stopped) each target gets what is left, and the connection is closed once the target has read it.
public final class Repeater: MetricsBackend, PacketForwarder, Service, @unchecked Sendable {
    // @unchecked: `udpSockets` and `tcpTargets` are written once in `init`; everything else is atomic or locked.
    public let name = "repeater"
    private var udpSockets: [Int32] = []
    private var tcpTargets: [TCPTarget] = []
    private let forwarded = Atomic<Int>(0)
    private let dropped = Atomic<Int>(0)
    /// Bytes each TCP target may hold while it cannot be reached.
    static let queueLimit = 4 * 1024 * 1024
    let shutdownTimeout: Duration
    let logger: Logger
    public let destination: String

    /// One TCP target: packets not yet handed to its delivery, and a signal that there are some.
    final class TCPTarget: Sendable {
        let delivery: Delivery<StreamTransport>
        let pending = Mutex<(bytes: [UInt8], packets: Int)>(([], 0))
        let signal: AsyncStream<Void>
        let continuation: AsyncStream<Void>.Continuation

        init(_ target: RepeaterTarget) {
            self.delivery = Delivery(
                name: "repeater",
                transport: StreamTransport(
                    label: "repeater \(target.host):\(target.port)", host: target.host, port: target.port,
                    keepsConnection: true),
                retryBufferBytes: Repeater.queueLimit, maxAttempts: 1, startupTime: 0)
            (self.signal, self.continuation) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
        }

        /// Takes what is pending, as one payload.
        func take() -> StreamPayload? {
            self.pending.withLock { pending in
                guard pending.packets > 0 else { return nil }
                defer { pending = ([], 0) }
                return StreamPayload(bytes: pending.bytes, points: pending.packets)
            }
        }
    }

    public init(targets: [RepeaterTarget], tcp: Bool, shutdownTimeout: Duration = .seconds(10), logger: Logger) {
        self.shutdownTimeout = shutdownTimeout
        self.logger = logger
        self.destination = "every packet to " + targets.map { "\($0.host):\($0.port)" }.joined(separator: ", ")
            + (tcp ? " over TCP" : " over UDP")
        if tcp {
            self.tcpTargets = targets.map(TCPTarget.init)
        } else {
            for target in targets {
                if let fd = Self.connectUDP(target) { self.udpSockets.append(fd) }
            }
        }
    }

    public var packetForwarder: (any PacketForwarder)? {
        self.udpSockets.isEmpty && self.tcpTargets.isEmpty ? nil : self
    }

    /// After the listeners have stopped, the repeater sends what they forwarded last.
    public var service: (any Service)? { self }

    deinit {
        for fd in self.udpSockets { close(fd) }
    }

    /// Forwards one received packet (called on the ingest path).
    public func forward(_ packet: UnsafeRawBufferPointer) {
        for fd in self.udpSockets {
            if send(fd, packet.baseAddress, packet.count, Int32(MSG_DONTWAIT)) >= 0 {
                self.forwarded.wrappingAdd(1, ordering: .relaxed)
            } else {
                self.dropped.wrappingAdd(1, ordering: .relaxed)
            }
        }
        let newline = packet.last != UInt8(ascii: "\n")
        for target in self.tcpTargets {
            let accepted = target.pending.withLock { pending -> Bool in
                guard pending.bytes.count + packet.count < Self.queueLimit else { return false }
                pending.bytes.append(contentsOf: packet)
                if newline { pending.bytes.append(UInt8(ascii: "\n")) }
                pending.packets += 1
                return true
            }
            if accepted {
                target.continuation.yield()
            } else {
                self.dropped.wrappingAdd(1, ordering: .relaxed)
            }
        }
    }

    public func flush(_ data: FlushData, deadline: ContinuousClock.Instant, logger: Logger) async {}

    public func status() -> [(name: String, value: Double)] {
        let lost = self.tcpTargets.reduce(0) { $0 + $1.delivery.statistics.droppedPoints }
        return [
            ("forwarded_packets", Double(self.forwarded.load(ordering: .relaxed))),
            ("dropped_packets", Double(self.dropped.load(ordering: .relaxed) + lost)),
        ]
    }

    /// Delivers each TCP target's packets as they come; on graceful shutdown, delivers what is left and returns.
    public func run() async {
        guard !self.tcpTargets.isEmpty else {
            // UDP sends need no service; returning early would end the group.
            try? await gracefulShutdown()
            return
        }
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                for target in self.tcpTargets {
                    group.addTask { await self.run(target) }
                }
            }
        } onGracefulShutdown: {
            for target in self.tcpTargets { target.continuation.finish() }
        }
    }

    private func run(_ target: TCPTarget) async {
        for await _ in target.signal {
            await self.deliver(target, isFinal: false)
            if target.delivery.statistics.queuedBytes > 0 {
                // The target could not take it: try again in a while, or with the next packet.
                try? await Task.sleep(for: .milliseconds(500))
                target.continuation.yield()
            }
        }
        await self.deliver(target, isFinal: true)
    }

    private func deliver(_ target: TCPTarget, isFinal: Bool) async {
        var payload = target.take()
        let deadline = ContinuousClock.now + (isFinal ? self.shutdownTimeout : .seconds(5))
        let delivered = await target.delivery.deliver(
            {
                defer { payload = nil }
                return payload
            }, isFinal: isFinal, deadline: deadline, logger: self.logger)
        self.forwarded.wrappingAdd(delivered, ordering: .relaxed)
    }

    static func connectUDP(_ target: RepeaterTarget) -> Int32? {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>? = nil
        guard getaddrinfo(target.host, String(target.port), &hints, &result) == 0, let info = result else { return nil }
        defer { freeaddrinfo(result) }
        let fd = socket(info.pointee.ai_family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        guard Glibc.connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
            close(fd)
            return nil
        }
        return fd
    }
}
