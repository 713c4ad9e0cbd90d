//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import CSidestatClient
import Synchronization

import Glibc

/// The batch of lines not sent yet and the socket they go to. Lines are appended under one lock; a datagram leaves
/// when the next line would not fit, or when the flush thread says so. Sending never blocks (MSG_DONTWAIT): what the
/// socket refuses (no server, a full buffer) is dropped and counted.
final class Sender: Sendable {
    private struct Batch: ~Copyable {
        var bytes: [UInt8]
        var lines = 0
        var socket: Int32 = -1
        /// The socket refused a datagram in a way that a new socket may not (a Unix socket file that was replaced).
        var reconnect = true
    }

    private let batch: Mutex<Batch>
    private let maxDatagramSize: Int
    private let destination: SidestatClient.Configuration.Transport

    let datagramsSent = Atomic<Int>(0)
    let datagramsDropped = Atomic<Int>(0)
    let linesDropped = Atomic<Int>(0)

    init(destination: SidestatClient.Configuration.Transport, maxDatagramSize: Int) {
        self.destination = destination
        self.maxDatagramSize = max(maxDatagramSize, 64)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(self.maxDatagramSize * 2)
        self.batch = Mutex(Batch(bytes: bytes))
    }

    /// Appends one line (or, with `lines`, several that must share a datagram) that `write` writes. If they do not
    /// fit behind what is batched, the batch leaves first; a batch that is full after them leaves at once.
    @inline(__always)
    func append(lines: Int = 1, _ write: (inout [UInt8]) -> Bool) {
        self.batch.withLock { batch in
            let start = batch.bytes.count
            guard write(&batch.bytes) else {
                batch.bytes.removeSubrange(start...)
                self.linesDropped.add(lines, ordering: .relaxed)
                return
            }
            if batch.bytes.count > self.maxDatagramSize && start > 0 {
                self.send(&batch, upTo: start)
            }
            batch.lines += lines
            if batch.bytes.count >= self.maxDatagramSize - 8 {
                self.send(&batch, upTo: batch.bytes.count)
            }
        }
    }

    /// Sends what is batched, opening the socket first if it is not open.
    func flush() {
        let needsSocket = self.batch.withLock { $0.reconnect }
        if needsSocket { self.connect() }
        self.batch.withLock { batch in
            if !batch.bytes.isEmpty { self.send(&batch, upTo: batch.bytes.count) }
        }
    }

    /// Sends what is batched and closes the socket; what comes later is dropped and counted.
    func close() {
        self.flush()
        self.batch.withLock { batch in
            if batch.socket >= 0 { _ = Glibc.close(batch.socket) }
            batch.socket = -1
            batch.reconnect = false
        }
    }

    /// Opens a socket to the destination (name resolution happens here, outside the lock) and swaps it in.
    private func connect() {
        let socket: Int32
        switch self.destination {
        case .udp(let host, let port): socket = sidestat_client_udp(host, Int32(port))
        case .unixDatagram(let path): socket = sidestat_client_unix_datagram(path)
        }
        let old = self.batch.withLock { batch -> Int32 in
            let old = batch.socket
            batch.socket = socket
            batch.reconnect = socket < 0
            return old
        }
        if old >= 0 { _ = Glibc.close(old) }
    }

    /// Sends `bytes[..<end]` as one datagram (without the last newline, as statsd clients do) and keeps the rest.
    private func send(_ batch: inout Batch, upTo end: Int) {
        let lines = batch.lines
        var sent = false
        if batch.socket >= 0 {
            let length = end - (batch.bytes[end - 1] == UInt8(ascii: "\n") ? 1 : 0)
            let result = batch.bytes.withUnsafeBytes { Glibc.send(batch.socket, $0.baseAddress, length, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
            sent = result >= 0
            if !sent, case .unixDatagram = self.destination, errno == ECONNREFUSED || errno == ENOTCONN {
                batch.reconnect = true
            }
        }
        if sent {
            self.datagramsSent.add(1, ordering: .relaxed)
        } else {
            self.datagramsDropped.add(1, ordering: .relaxed)
            self.linesDropped.add(lines, ordering: .relaxed)
        }
        if end == batch.bytes.count {
            batch.bytes.removeAll(keepingCapacity: true)
        } else {
            batch.bytes.removeSubrange(..<end)
        }
        batch.lines = 0
    }
}

extension Sender {
    /// Appends `key`'s line with an integer value (`tail`: the key's own, or one with a sample rate).
    @inline(__always)
    func line(_ key: LineKey, _ value: Int64, tail: [UInt8]? = nil) {
        self.append { bytes in
            bytes.append(contentsOf: key.head)
            LineFormat.append(value, to: &bytes)
            bytes.append(contentsOf: tail ?? key.tail)
            return true
        }
    }

    /// Appends `key`'s line with a value that may be fractional; infinity and NaN are dropped and counted.
    @inline(__always)
    func line(_ key: LineKey, _ value: Double, tail: [UInt8]? = nil) {
        self.append { bytes in
            bytes.append(contentsOf: key.head)
            guard LineFormat.append(value, to: &bytes) else { return false }
            bytes.append(contentsOf: tail ?? key.tail)
            return true
        }
    }

    /// Appends `key`'s line with `nanoseconds` written as milliseconds.
    @inline(__always)
    func line(_ key: LineKey, nanoseconds: Int64, tail: [UInt8]? = nil) {
        self.append { bytes in
            bytes.append(contentsOf: key.head)
            LineFormat.appendMilliseconds(nanoseconds, to: &bytes)
            bytes.append(contentsOf: tail ?? key.tail)
            return true
        }
    }

    /// Appends `key`'s line with a set member (already made safe for the wire).
    func line(_ key: LineKey, member: String) {
        self.append { bytes in
            bytes.append(contentsOf: key.head)
            bytes.append(contentsOf: member.utf8)
            bytes.append(contentsOf: key.tail)
            return true
        }
    }
}
