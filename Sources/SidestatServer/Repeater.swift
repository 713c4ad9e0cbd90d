//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import SidestatBackends
import SidestatConfiguration
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// statsd's repeater backend: every packet received (bad lines included) is forwarded unchanged to other statsd
/// servers, over UDP, or over TCP with a newline after each packet that lacks one.
///
/// Forwarding never blocks ingest: UDP sends are non-blocking (a full socket buffer drops the packet, counted), and
/// TCP goes through a bounded queue that a thread of its own writes out, reconnecting after failures.
public final class Repeater: MetricsBackend, @unchecked Sendable {
    // @unchecked: `udpSockets` is written once in `init`; the TCP state is behind `queue`.
    public let name = "repeater"
    let targets: [RepeaterTarget]
    let tcp: Bool
    private var udpSockets: [Int32] = []
    private let forwarded = Atomic<Int>(0)
    private let dropped = Atomic<Int>(0)
    private let queue = Mutex<(packets: [[UInt8]], bytes: Int, stopping: Bool)>(([], 0, false))
    private var threads: [ReaderThread] = []
    static let queueLimit = 4 * 1024 * 1024
    let logger: Logger

    public init(targets: [RepeaterTarget], tcp: Bool, logger: Logger) {
        self.targets = targets
        self.tcp = tcp
        self.logger = logger
        if !tcp {
            for target in targets {
                if let fd = Self.connect(target, type: Int32(SOCK_DGRAM.rawValue)) { self.udpSockets.append(fd) }
            }
        } else {
            for target in targets {
                let thread = ReaderThread(name: "sidestat-repeat") { [self] in self.tcpLoop(target) }
                self.threads.append(thread)
            }
            for thread in self.threads { thread.start() }
        }
    }

    deinit {
        for fd in self.udpSockets { close(fd) }
    }

    /// Forwards one received packet (called on the ingest path).
    public func forward(_ packet: UnsafeRawBufferPointer) {
        if !self.tcp {
            for fd in self.udpSockets {
                if send(fd, packet.baseAddress, packet.count, Int32(MSG_DONTWAIT)) >= 0 {
                    self.forwarded.wrappingAdd(1, ordering: .relaxed)
                } else {
                    self.dropped.wrappingAdd(1, ordering: .relaxed)
                }
            }
            return
        }
        var bytes = Array(packet)
        if bytes.last != UInt8(ascii: "\n") { bytes.append(UInt8(ascii: "\n")) }
        let accepted = self.queue.withLock { queue -> Bool in
            guard queue.bytes + bytes.count <= Self.queueLimit * max(1, self.targets.count) else { return false }
            queue.packets.append(bytes)
            queue.bytes += bytes.count
            return true
        }
        if !accepted { self.dropped.wrappingAdd(1, ordering: .relaxed) }
    }

    public func flush(_ data: FlushData, deadline: ContinuousClock.Instant, logger: Logger) async {}

    public func status() -> [(name: String, value: Double)] {
        [
            ("forwarded_packets", Double(self.forwarded.load(ordering: .relaxed))),
            ("dropped_packets", Double(self.dropped.load(ordering: .relaxed))),
        ]
    }

    /// Stops the TCP writers after they have written what is queued (or given up).
    public func stop() async {
        self.queue.withLock { $0.stopping = true }
        for thread in self.threads { await thread.finished() }
    }

    /// One TCP target: take what is queued, write it, reconnect when the connection fails.
    private func tcpLoop(_ target: RepeaterTarget) {
        var fd: Int32 = -1
        while true {
            let (batch, stopping) = self.queue.withLock { queue -> ([[UInt8]], Bool) in
                let taken = queue.packets
                queue.packets = []
                queue.bytes = 0
                return (taken, queue.stopping)
            }
            if batch.isEmpty {
                if stopping { break }
                usleep(5_000)
                continue
            }
            var pending = batch.flatMap { $0 }
            var attempts = 0
            while !pending.isEmpty {
                if fd < 0 { fd = Self.connect(target, type: Int32(SOCK_STREAM.rawValue)) ?? -1 }
                let written = fd < 0 ? -1 : pending.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if written > 0 {
                    pending.removeFirst(written)
                    self.forwarded.wrappingAdd(1, ordering: .relaxed)
                    continue
                }
                if fd >= 0 { close(fd) }
                fd = -1
                attempts += 1
                if attempts > 3 || self.queue.withLock({ $0.stopping }) {
                    self.dropped.wrappingAdd(batch.count, ordering: .relaxed)
                    break
                }
                usleep(200_000)
            }
        }
        if fd >= 0 { close(fd) }
    }

    static func connect(_ target: RepeaterTarget, type: Int32) -> Int32? {
        var hints = addrinfo()
        hints.ai_socktype = type
        var result: UnsafeMutablePointer<addrinfo>? = nil
        guard getaddrinfo(target.host, String(target.port), &hints, &result) == 0, let info = result else { return nil }
        defer { freeaddrinfo(result) }
        let fd = socket(info.pointee.ai_family, type, 0)
        guard fd >= 0 else { return nil }
        guard Glibc.connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
            close(fd)
            return nil
        }
        return fd
    }
}
