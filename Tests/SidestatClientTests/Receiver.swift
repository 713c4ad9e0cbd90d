//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation

/// A UDP socket on 127.0.0.1 (port 0) that the client under test sends to: the exact datagrams, in order.
final class Receiver {
    let fd: Int32
    let port: Int

    init() {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        self.fd = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length)
                return getsockname(fd, pointer, &length)
            }
        }
        self.port = Int(UInt16(bigEndian: address.sin_port))
        var size: Int32 = 8 << 20
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    }

    deinit { close(self.fd) }

    /// The next datagram, or nil when none comes within `timeout` seconds.
    func next(timeout: Double = 5) -> String? {
        var descriptor = pollfd(fd: self.fd, events: Int16(POLLIN), revents: 0)
        guard poll(&descriptor, 1, Int32(timeout * 1000)) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 65536)
        let count = recv(self.fd, &buffer, buffer.count, 0)
        return count < 0 ? nil : String(decoding: buffer[..<count], as: UTF8.self)
    }

    /// Datagrams until `done` says the lines so far are enough (or `timeout` passes with nothing new).
    func datagrams(timeout: Double = 5, until done: ([String]) -> Bool) -> [String] {
        var datagrams: [String] = []
        while !done(datagrams.flatMap { $0.split(separator: "\n").map(String.init) }),
            let datagram = self.next(timeout: timeout)
        {
            datagrams.append(datagram)
        }
        return datagrams
    }

    /// The lines of the datagrams until there are `count`.
    func lines(_ count: Int, timeout: Double = 5) -> [String] {
        self.datagrams(timeout: timeout) { $0.count >= count }.flatMap { $0.split(separator: "\n").map(String.init) }
    }
}
