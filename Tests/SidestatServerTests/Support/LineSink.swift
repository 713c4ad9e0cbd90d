//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation

/// A TCP listener on 127.0.0.1 that records every line it receives, per connection, as carbon's plaintext
/// receiver would read them: the test's view of the Graphite wire. It can be stopped and started again on the
/// same port to play an outage, and can misbehave as real upstreams do (`Behaviour`).
final class LineSink: @unchecked Sendable {
    struct Line: Hashable {
        var name: String
        var value: String
        var timestamp: Int
    }

    /// How the listener treats its connections.
    enum Behaviour {
        /// Reads each connection to its end, then closes it (as carbon-cache does).
        case normal
        /// Never reads nor closes the first connection it accepts; reads later ones normally.
        case staleFirst
        /// Reads every connection at `bytesPerSecond`.
        case slow(bytesPerSecond: Int)
        /// Reads everything but never closes a connection.
        case noClose
        /// Reads the first `bytes` of each connection, then resets it (RST), as a load balancer in trouble does.
        case resetAfter(bytes: Int)
    }

    private let lock = NSCondition()
    private var connections: [[String]] = []
    /// When each connection was accepted.
    private var acceptTimes: [Date] = []
    private var held: [Int32] = []
    private var listener: Int32 = -1
    private(set) var port: Int = 0
    private var running = false
    let behaviour: Behaviour

    init(port: Int = 0, behaviour: Behaviour = .normal) throws {
        self.behaviour = behaviour
        try self.start(port: port)
    }

    func start(port: Int? = nil) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if case .staleFirst = self.behaviour {
            // A small receive window, as a stuck carbon has: the unread connection fills up soon.
            var size: Int32 = 4096
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port ?? self.port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 16) == 0 else {
            close(fd)
            throw TestFailure("LineSink cannot listen")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.port = Int(UInt16(bigEndian: address.sin_port))
        self.lock.lock()
        self.listener = fd
        self.running = true
        self.lock.unlock()
        let thread = Thread { [self] in self.acceptLoop(fd) }
        thread.start()
    }

    /// Stops listening: connections are refused until `start()`.
    func stop() {
        self.lock.lock()
        self.running = false
        let fd = self.listener
        self.listener = -1
        self.lock.unlock()
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }

    private func acceptLoop(_ listener: Int32) {
        while true {
            let connection = accept(listener, nil, nil)
            if connection < 0 { return }
            self.lock.lock()
            let index = self.connections.count
            self.connections.append([])
            self.acceptTimes.append(Date())
            if case .staleFirst = self.behaviour, index == 0 { self.held.append(connection) }
            self.lock.broadcast()
            self.lock.unlock()
            if case .staleFirst = self.behaviour, index == 0 { continue }
            let thread = Thread { [self] in self.read(connection, index: index) }
            thread.start()
        }
    }

    private func read(_ fd: Int32, index: Int) {
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        var want = buffer.count
        if case .slow(let rate) = self.behaviour { want = max(1, rate / 10) }
        var received = 0
        if case .resetAfter(let limit) = self.behaviour { want = limit }
        while true {
            let count = recv(fd, &buffer, want, 0)
            if count <= 0 { break }
            received += count
            if case .slow = self.behaviour { Thread.sleep(forTimeInterval: 0.1) }
            pending += buffer[0..<count]
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                self.lock.lock()
                self.connections[index].append(line)
                self.lock.broadcast()
                self.lock.unlock()
            }
            if case .resetAfter(let limit) = self.behaviour, received >= limit {
                var linger = linger(l_onoff: 1, l_linger: 0)
                setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
                break
            }
        }
        if case .noClose = self.behaviour {
            self.lock.lock()
            self.held.append(fd)
            self.lock.unlock()
            return
        }
        close(fd)
    }

    /// When connection `index` was accepted (waiting for it).
    func acceptTime(_ index: Int, timeout: Double = 10) -> Date? {
        let deadline = Date().addingTimeInterval(timeout)
        self.lock.lock()
        defer { self.lock.unlock() }
        while index >= self.acceptTimes.count {
            if !self.lock.wait(until: deadline) { return nil }
        }
        return self.acceptTimes[index]
    }

    /// Every line received so far, as it came, per connection.
    var rawConnections: [[String]] {
        self.lock.lock()
        defer { self.lock.unlock() }
        return self.connections
    }

    /// Every line received so far, parsed.
    var lines: [Line] {
        self.lock.lock()
        defer { self.lock.unlock() }
        return self.connections.flatMap { $0 }.compactMap(Self.parse)
    }

    var connectionCount: Int {
        self.lock.lock()
        defer { self.lock.unlock() }
        return self.connections.count
    }

    /// The lines of one flush (one connection).
    func flush(_ index: Int) -> [Line] {
        self.lock.lock()
        defer { self.lock.unlock() }
        return index < self.connections.count ? self.connections[index].compactMap(Self.parse) : []
    }

    static func parse(_ text: String) -> Line? {
        let parts = text.split(separator: " ")
        guard parts.count == 3, let timestamp = Int(parts[2]) else { return nil }
        return Line(name: String(parts[0]), value: String(parts[1]), timestamp: timestamp)
    }

    /// Waits until a received line satisfies `predicate`, and returns it.
    func waitFor(timeout: Double = 10, _ predicate: (Line) -> Bool) -> Line? {
        let deadline = Date().addingTimeInterval(timeout)
        self.lock.lock()
        defer { self.lock.unlock() }
        while true {
            if let line = self.connections.flatMap({ $0 }).compactMap(Self.parse).first(where: predicate) { return line }
            if !self.lock.wait(until: deadline) { return nil }
        }
    }

    /// Waits for a complete flush (a connection that has reached statsd's last line, `graphiteStats.flush_length`)
    /// with a line that satisfies `predicate`, and returns its index and lines.
    func waitForFlush(timeout: Double = 10, where predicate: (Line) -> Bool) -> (index: Int, lines: [Line])? {
        let deadline = Date().addingTimeInterval(timeout)
        self.lock.lock()
        defer { self.lock.unlock() }
        while true {
            for (index, connection) in self.connections.enumerated() {
                let lines = connection.compactMap(Self.parse)
                if lines.contains(where: { $0.name.contains("graphiteStats.flush_length") }), lines.contains(where: predicate) {
                    return (index, lines)
                }
            }
            if !self.lock.wait(until: deadline) { return nil }
        }
    }

    /// Waits for the complete flush at `index` (a later connection).
    func waitForFlush(at index: Int, timeout: Double = 10) -> [Line]? {
        let deadline = Date().addingTimeInterval(timeout)
        self.lock.lock()
        defer { self.lock.unlock() }
        while true {
            if index < self.connections.count {
                let lines = self.connections[index].compactMap(Self.parse)
                if lines.contains(where: { $0.name.contains("graphiteStats.flush_length") }) { return lines }
            }
            if !self.lock.wait(until: deadline) { return nil }
        }
    }

    /// The value of the first line named `name` (waiting for it).
    func value(_ name: String, timeout: Double = 10) -> String? {
        self.waitFor(timeout: timeout) { $0.name == name }?.value
    }

    /// Every value received for `name`, in order.
    func values(_ name: String) -> [String] {
        self.lines.filter { $0.name == name }.map(\.value)
    }

    deinit {
        if self.listener >= 0 { close(self.listener) }
        for fd in self.held { close(fd) }
    }
}
