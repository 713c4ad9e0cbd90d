//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatSupport
import CSidestat
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Bytes for a stream upstream: a part of a Graphite flush, a run of repeated packets.
public struct StreamPayload: DeliveryPayload {
    public var bytes: [UInt8]
    /// The datapoints (Graphite lines, repeated packets) in `bytes`.
    public var points: Int

    public init(bytes: [UInt8], points: Int) {
        self.bytes = bytes
        self.points = points
    }

    public var byteCount: Int { self.bytes.count }
}

/// Sends payloads over TCP, once.
///
/// Graphite's way (`keepsConnection` false): a connection per attempt, as statsd opens one per flush. A payload
/// counts as delivered once all its bytes were written and the connection closed without error; the final flush
/// half-closes and counts as delivered when carbon closes its side (it has read everything), or, for an upstream
/// that never closes, once the peer has acknowledged every byte and a second has passed. The repeater's way
/// (`keepsConnection` true): one connection kept open across attempts, a payload delivered once written.
///
/// The sockets are blocking calls with deadlines, on a thread of their own (never on the cooperative pool).
package final class StreamTransport: DeliveryTransport {
    /// The upstream as errors name it: `graphite 127.0.0.1:2003`.
    let label: String
    let host: String
    let port: Int
    let keepsConnection: Bool
    /// Whether the payload is lines (plaintext): after a write that failed half way, the lines written whole count
    /// as delivered, and only the rest is retried.
    let lineOriented: Bool
    private let kept = Mutex<Int32>(-1)
    /// How long the final flush waits for an upstream that has acknowledged every byte to close its side.
    static let closeGrace: Duration = .seconds(1)

    package init(label: String, host: String, port: Int, keepsConnection: Bool = false, lineOriented: Bool = true) {
        self.label = label
        self.lineOriented = lineOriented
        self.host = host
        self.port = port
        self.keepsConnection = keepsConnection
    }

    deinit {
        let fd = self.kept.withLock { $0 }
        if fd >= 0 { close(fd) }
    }

    package func send(_ source: DeliverySource<StreamPayload>, _ attempt: DeliveryAttempt) async -> DeliveryFailure? {
        await ReaderThread.run(name: "sidestat-send") { self.sendBlocking(source, attempt) }
    }

    func failure(_ what: String, connected: Bool) -> DeliveryFailure {
        DeliveryFailure("\(self.label): \(what)", connected: connected)
    }

    func sendBlocking(_ source: DeliverySource<StreamPayload>, _ attempt: DeliveryAttempt) -> DeliveryFailure? {
        guard var payload = source.next() else { return nil }  // nothing to send: no connection
        var fd = self.kept.withLock { fd in
            defer { fd = -1 }
            return fd
        }
        if fd >= 0 && Self.peerClosed(fd) {
            close(fd)
            fd = -1
        }
        if fd < 0 {
            switch self.connect(deadline: attempt.connectDeadline) {
            case .success(let connected): fd = connected
            case .failure(let failure): return failure
            }
        }
        // Bytes written in this attempt, and the last count of those the peer had not acknowledged.
        var total = 0
        var unacknowledged = 0
        while true {
            let (written, failure) = self.write(payload.bytes, to: fd, unacknowledged: &unacknowledged, deadline: attempt.deadline)
            total += written
            if let failure {
                close(fd)
                // A regular flush's bytes count once in our kernel; the final flush's once the peer acknowledged them
                // (the process is about to exit). Whole lines among them are not sent again.
                source.confirm(firstBytes: attempt.isFinal ? total - unacknowledged : written, split: self.splitAtLine)
                return failure
            }
            if !attempt.isFinal { source.confirm() }
            guard let next = source.next() else { break }
            payload = next
        }
        if attempt.isFinal {
            let failure = self.awaitClose(fd, unacknowledged: &unacknowledged, deadline: attempt.deadline)
            close(fd)
            if failure == nil {
                source.confirm()
            } else {
                // Reset or no answer: what the peer acknowledged may have been read; it is not sent twice.
                source.confirm(firstBytes: total - unacknowledged, split: self.splitAtLine)
            }
            return failure
        }
        if self.keepsConnection {
            self.kept.withLock { $0 = fd }
        } else {
            close(fd)
        }
        return nil
    }

    /// Cuts a payload after the last whole line within its first `count` bytes: the lines delivered, and the rest.
    func splitAtLine(_ payload: StreamPayload, _ count: Int) -> (points: Int, rest: StreamPayload)? {
        guard self.lineOriented, let end = payload.bytes[..<count].lastIndex(of: UInt8(ascii: "\n")) else { return nil }
        let lines = payload.bytes[...end].reduce(0) { $0 + ($1 == UInt8(ascii: "\n") ? 1 : 0) }
        return (lines, StreamPayload(bytes: Array(payload.bytes[(end + 1)...]), points: max(0, payload.points - lines)))
    }

    /// Connects without blocking past `deadline`.
    func connect(deadline: ContinuousClock.Instant) -> Result<Int32, DeliveryFailure> {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>? = nil
        let resolved = getaddrinfo(self.host, String(self.port), &hints, &list)
        guard resolved == 0, let info = list else {
            return .failure(self.failure("cannot resolve \(self.host): \(String(cString: gai_strerror(resolved)))", connected: false))
        }
        defer { freeaddrinfo(list) }
        let fd = socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return .failure(self.failure("cannot open a socket: \(Self.errorText(errno))", connected: false)) }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        if Glibc.connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) != 0 {
            guard errno == EINPROGRESS else {
                let code = errno
                close(fd)
                return .failure(self.failure(Self.errorText(code), connected: false))
            }
            guard Self.poll(fd, events: Int16(POLLOUT), until: { deadline }) else {
                close(fd)
                return .failure(self.failure("connection timed out", connected: false))
            }
            var code: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &length)
            if code != 0 {
                close(fd)
                return .failure(self.failure(Self.errorText(code), connected: false))
            }
        }
        return .success(fd)
    }

    /// Writes all of `bytes`; a failure if the peer resets or the deadline passes first, with how many bytes
    /// were written. Keeps `unacknowledged` up to date (the socket forgets it once reset).
    func write(
        _ bytes: [UInt8], to fd: Int32, unacknowledged: inout Int, deadline: () -> ContinuousClock.Instant
    ) -> (Int, DeliveryFailure?) {
        bytes.withUnsafeBytes { buffer -> (Int, DeliveryFailure?) in
            var offset = 0
            while offset < buffer.count {
                let written = Glibc.send(fd, buffer.baseAddress! + offset, buffer.count - offset, Int32(MSG_NOSIGNAL))
                if written > 0 {
                    offset += written
                    unacknowledged = max(0, Int(sidestat_unacknowledged_bytes(fd)))
                    continue
                }
                let code = errno
                if written < 0 && code == EINTR { continue }
                guard written < 0 && (code == EAGAIN || code == EWOULDBLOCK) else {
                    return (offset, self.failure(Self.errorText(code), connected: true))
                }
                if !Self.poll(fd, events: Int16(POLLOUT), until: deadline) {
                    return (offset, self.failure("timed out after writing \(offset) of \(buffer.count) bytes", connected: true))
                }
            }
            return (offset, nil)
        }
    }

    /// After the final flush: half-closes, and waits until the upstream has read everything.
    func awaitClose(_ fd: Int32, unacknowledged: inout Int, deadline: () -> ContinuousClock.Instant) -> DeliveryFailure? {
        shutdown(fd, Int32(SHUT_WR))
        var acknowledgedSince: ContinuousClock.Instant? = nil
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let now = ContinuousClock.now
            let outstanding = Int(sidestat_unacknowledged_bytes(fd))
            if outstanding >= 0 { unacknowledged = outstanding }
            if outstanding == 0 {
                let since = acknowledgedSince ?? now
                acknowledgedSince = since
                if now - since >= Self.closeGrace { return nil }
            } else {
                acknowledgedSince = nil
            }
            let limit = min(deadline(), now + .milliseconds(100))
            guard Self.poll(fd, events: Int16(POLLIN), until: { limit }) else {
                if ContinuousClock.now >= deadline() {
                    return self.failure("did not confirm the final flush before the shutdown deadline", connected: true)
                }
                continue
            }
            let count = recv(fd, &buffer, buffer.count, 0)
            if count == 0 { return nil }  // the upstream closed its side: it has read every byte
            if count < 0 && errno != EAGAIN && errno != EINTR {
                return self.failure(Self.errorText(errno), connected: true)
            }
        }
    }

    /// Waits for `events` on `fd`; false when the deadline passed first. Polls in slices so that a deadline that
    /// moves earlier is seen.
    static func poll(_ fd: Int32, events: Int16, until deadline: () -> ContinuousClock.Instant) -> Bool {
        while true {
            // At least one look, even past the deadline: a connection refused at once is not a time-out.
            let remaining = max(.zero, deadline() - ContinuousClock.now)
            let milliseconds = min(
                100, Int32(remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000))
            var entry = pollfd(fd: fd, events: events, revents: 0)
            let result = Glibc.poll(&entry, 1, milliseconds)
            if result > 0 { return true }
            if result < 0 && errno != EINTR { return true }  // let the next call report the error
            if remaining == .zero { return false }
        }
    }

    /// Whether a kept connection's peer has closed or reset it.
    static func peerClosed(_ fd: Int32) -> Bool {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard Glibc.poll(&entry, 1, 0) > 0 else { return false }
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT)) <= 0
    }

    static func errorText(_ code: Int32) -> String {
        switch code {
        case ECONNREFUSED: return "connection refused"
        case ECONNRESET: return "connection reset by the upstream"
        case EPIPE: return "connection closed by the upstream"
        case ETIMEDOUT: return "connection timed out"
        case EHOSTUNREACH, ENETUNREACH: return "no route to the upstream"
        default: return String(cString: strerror(code)).lowercased()
        }
    }
}
