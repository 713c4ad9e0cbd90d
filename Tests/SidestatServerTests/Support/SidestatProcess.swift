//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import Testing

/// Paths the end-to-end tests need.
enum TestPaths {
    /// The package root (…/Tests/SidestatServerTests/Support/ is three levels below it).
    static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// The `sidestat` executable built next to the test bundle (or `SIDESTAT_TEST_BINARY`, to run the end-to-end
    /// tests against another build).
    static var sidestat: String {
        if let path = ProcessInfo.processInfo.environment["SIDESTAT_TEST_BINARY"] { return path }
        let testBinary = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var directory = testBinary.deletingLastPathComponent()
        while directory.path != "/" {
            let candidate = directory.appendingPathComponent("sidestat").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        return packageRoot.appendingPathComponent(".build/debug/sidestat").path
    }

    /// `../shared` beside the repository.
    static let shared = packageRoot.deletingLastPathComponent().appendingPathComponent("shared")

    /// A virtualenv made by scripts/test for one PyPI package.
    static func venvPython(_ package: String) -> String {
        packageRoot.appendingPathComponent(".build/venvs/\(package)/bin/python").path
    }

    /// The Python of the Playwright virtualenv, with Debian's Chromium beside it (scripts/test installs both).
    static func playwrightPython() throws -> String {
        let python = Self.venvPython("playwright")
        guard FileManager.default.isExecutableFile(atPath: python),
            FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium")
        else {
            throw TestFailure("Playwright or Chromium is missing: run scripts/test, which installs both")
        }
        return python
    }

    /// A new directory under the system's temporary directory. The test process removes every one it made when it
    /// exits (a test that fails keeps nothing behind either; set SIDESTAT_KEEP_TEST_FILES=1 to keep them).
    static func temporaryDirectory() -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("sidestat-test-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        TemporaryDirectories.shared.add(url)
        return url
    }
}

/// The temporary directories the tests made, removed when the test process exits.
final class TemporaryDirectories: @unchecked Sendable {
    static let shared: TemporaryDirectories = {
        let directories = TemporaryDirectories()
        atexit { TemporaryDirectories.shared.removeAll() }
        return directories
    }()

    private let lock = NSLock()
    private var urls: [URL] = []

    func add(_ url: URL) {
        self.lock.lock()
        self.urls.append(url)
        self.lock.unlock()
    }

    func removeAll() {
        guard ProcessInfo.processInfo.environment["SIDESTAT_KEEP_TEST_FILES"] == nil else { return }
        self.lock.lock()
        defer { self.lock.unlock() }
        for url in self.urls { try? FileManager.default.removeItem(at: url) }
        self.urls = []
    }
}

/// A running `sidestat` child process with its output captured.
final class SidestatProcess: @unchecked Sendable {
    let process = Process()
    let outputFile: URL
    let directory: URL
    private(set) var udpPort = 0
    private(set) var managementPort = 0
    private(set) var tcpPort = 0
    private(set) var httpPort = 0

    /// Starts `sidestat` (or `executable`, which runs one) with `arguments` and waits for "server is up" (or exit).
    init(
        arguments: [String], environment: [String: String]? = nil, waitForUp: Bool = true,
        workingDirectory: URL? = nil, executable: String? = nil
    ) throws {
        self.directory = TestPaths.temporaryDirectory()
        if let workingDirectory { self.process.currentDirectoryURL = workingDirectory }
        self.outputFile = self.directory.appendingPathComponent("output.log")
        _ = FileManager.default.createFile(atPath: self.outputFile.path, contents: nil)
        let handle = try FileHandle(forWritingTo: self.outputFile)
        self.process.executableURL = URL(fileURLWithPath: executable ?? TestPaths.sidestat)
        self.process.arguments = arguments
        self.process.standardOutput = handle
        self.process.standardError = handle
        self.process.standardInput = FileHandle.nullDevice
        if let environment { self.process.environment = environment }
        try self.process.run()
        if waitForUp { try self.waitForUp() }
    }

    /// Writes `config` (a config.js text) to a file and starts `sidestat --config FILE`.
    convenience init(config: String, extraArguments: [String] = []) throws {
        let directory = TestPaths.temporaryDirectory()
        let path = directory.appendingPathComponent("config.js")
        try config.write(to: path, atomically: true, encoding: .utf8)
        try self.init(arguments: ["--config", path.path] + extraArguments)
    }

    var output: String { (try? String(contentsOf: self.outputFile, encoding: .utf8)) ?? "" }

    func waitForUp(timeout: Double = 20) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let line = self.output.split(separator: "\n").first(where: { $0.contains("server is up") }) {
                for field in line.split(separator: " ") {
                    let parts = field.split(separator: "=", maxSplits: 1).map(String.init)
                    guard parts.count == 2, let port = parts[1].split(separator: ":").last.flatMap({ Int($0) }) else {
                        continue
                    }
                    switch parts[0] {
                    case "udp": self.udpPort = port
                    case "mgmt": self.managementPort = port
                    case "tcp": self.tcpPort = port
                    case "http": self.httpPort = port
                    default: break
                    }
                }
                return
            }
            if !self.process.isRunning {
                throw TestFailure("sidestat exited with \(self.process.terminationStatus):\n\(self.output)")
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
        throw TestFailure("sidestat did not start:\n\(self.output)")
    }

    /// Waits until the output contains `text`.
    /// The management port's `counters` dump: what the daemon has aggregated so far this interval.
    func counters() throws -> String { try Send.management(["counters\n"], port: self.managementPort) }

    func waitForOutput(_ text: String, timeout: Double = 10) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if self.output.contains(text) { return true }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return false
    }

    func signal(_ signal: Int32) {
        kill(self.process.processIdentifier, signal)
    }

    /// Sends SIGTERM and waits for the exit status.
    @discardableResult
    func terminate(timeout: Double = 15) -> Int32 {
        if self.process.isRunning { self.signal(SIGTERM) }
        return self.waitForExit(timeout: timeout)
    }

    func waitForExit(timeout: Double = 15) -> Int32 {

        let deadline = Date().addingTimeInterval(timeout)
        while self.process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if self.process.isRunning {
            self.signal(SIGKILL)
            self.process.waitUntilExit()
            return -1
        }
        return self.process.terminationStatus
    }

    deinit {
        if self.process.isRunning {
            kill(self.process.processIdentifier, SIGKILL)
            self.process.waitUntilExit()
        }
    }

    /// Runs `sidestat` to completion and returns its exit status and output.
    static func run(_ arguments: [String], timeout: Double = 20) throws -> (status: Int32, output: String) {
        let process = try SidestatProcess(arguments: arguments, waitForUp: false)
        let status = process.waitForExit(timeout: timeout)
        return (status, process.output)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// UDP and TCP clients for the tests.
enum Send {
    static func udp(_ datagrams: [String], port: Int, host: String = "127.0.0.1") {
        udpBytes(datagrams.map { Array($0.utf8) }, port: port, host: host)
    }

    static func udpBytes(_ datagrams: [[UInt8]], port: Int, host: String = "127.0.0.1") {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>? = nil
        guard getaddrinfo(host, String(port), &hints, &result) == 0, let info = result else { return }
        defer { freeaddrinfo(result) }
        let fd = socket(info.pointee.ai_family, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        for datagram in datagrams {
            _ = datagram.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, info.pointee.ai_addr, info.pointee.ai_addrlen) }
        }
    }

    /// Writes each chunk separately (with a pause, so they arrive as separate segments), then closes.
    static func tcp(_ chunks: [[UInt8]], port: Int, pause: Double = 0.05) throws {
        let fd = try connect(port: port)
        defer { close(fd) }
        for chunk in chunks {
            _ = chunk.withUnsafeBytes { Foundation.send(fd, $0.baseAddress, $0.count, 0) }
            Thread.sleep(forTimeInterval: pause)
        }
    }

    /// Reads from `fd` until the peer closes (or the socket's receive timeout passes).
    static func readAll(_ fd: Int32) -> [UInt8] {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count <= 0 { break }
            received += buffer[0..<count]
        }
        return received
    }

    /// Reads as a slow client does: `chunk` bytes at a time with a pause after each, until the peer closes (or the
    /// socket's receive timeout passes). Connect with a small `receiveBuffer` so that the server's writes back up.
    static func readSlowly(_ fd: Int32, chunk: Int = 4096, pauseMicroseconds: UInt32 = 1000) -> [UInt8] {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: chunk)
        while true {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count <= 0 { break }
            received += buffer[0..<count]
            usleep(pauseMicroseconds)  // the reader's own pace: this is what makes it slow, not a wait
        }
        return received
    }

    static func connect(port: Int, receiveBuffer: Int32? = nil, address host: String = "127.0.0.1") throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        if var size = receiveBuffer { setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size)) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr(host)
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Foundation.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard status == 0 else {
            close(fd)
            throw TestFailure("cannot connect to 127.0.0.1:\(port)")
        }
        return fd
    }

    /// Sends management commands (as `chunks`, each written separately) and reads until `until` appears.
    static func management(_ chunks: [String], port: Int, until: String = "END\n\n", timeout: Double = 5) throws -> String {
        let fd = try connect(port: port)
        defer { close(fd) }
        var timeoutValue = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeoutValue, socklen_t(MemoryLayout<timeval>.size))
        for chunk in chunks {
            _ = Array(chunk.utf8).withUnsafeBytes { Foundation.send(fd, $0.baseAddress, $0.count, 0) }
            Thread.sleep(forTimeInterval: 0.05)
        }
        var received: [UInt8] = []
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 65536)
        while Date() < deadline {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count > 0 { received += buffer[0..<count] }
            if count == 0 { break }
            if String(decoding: received, as: UTF8.self).hasSuffix(until) { break }
        }
        return String(decoding: received, as: UTF8.self)
    }
}

/// Checks `condition` every 20 ms until it holds (true) or `timeout` seconds have passed (false).
func waitUntil(timeout: Double, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        Thread.sleep(forTimeInterval: 0.02)
    }
    return try condition()
}

/// A port free for both UDP and TCP on loopback (bound and released; good enough for a child that binds it next).
func freePort() -> Int {
    for _ in 0..<50 {
        let port = freeTCPPort()
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if status == 0 { return port }
    }
    return freeTCPPort()
}

private func freeTCPPort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    _ = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Runs `executable` with `arguments`, waits, and returns its status and merged output.
@discardableResult
func runProcess(
    _ executable: String, _ arguments: [String], environment: [String: String] = [:], in directory: URL? = nil
) -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    if let directory { process.currentDirectoryURL = directory }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    process.standardInput = FileHandle.nullDevice
    do { try process.run() } catch { return (-1, "\(error)") }
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, output)
}
