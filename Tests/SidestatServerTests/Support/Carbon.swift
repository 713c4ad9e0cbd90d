//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation

/// A real carbon-cache (Debian's graphite-carbon) on loopback, storing into whisper files in a temporary
/// directory, with one-second resolution.
final class CarbonCache: @unchecked Sendable {
    let directory: URL
    private(set) var linePort = 0
    private(set) var picklePort = 0
    private var process = Process()
    private let configPath: String

    init() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/carbon-cache") else {
            throw TestFailure("carbon-cache is not installed: run scripts/test (it installs graphite-carbon)")
        }
        self.directory = TestPaths.temporaryDirectory()
        let conf = self.directory.appendingPathComponent("conf")
        self.configPath = conf.appendingPathComponent("carbon.conf").path
        for sub in ["conf", "storage/whisper", "log"] {
            try FileManager.default.createDirectory(
                at: self.directory.appendingPathComponent(sub), withIntermediateDirectories: true)
        }
        try "[default]\npattern = .*\nretentions = 1s:1h\n".write(
            to: conf.appendingPathComponent("storage-schemas.conf"), atomically: true, encoding: .utf8)
        // A port picked free can be taken by another socket before carbon binds it: then try other ports.
        var lastError: any Error = TestFailure("carbon-cache did not start")
        for _ in 0..<3 {
            do {
                try self.configure(conf)
                try self.start()
                return
            } catch {
                lastError = error
                self.stop()
            }
        }
        throw lastError
    }

    /// Writes carbon.conf with new free ports.
    private func configure(_ conf: URL) throws {
        self.linePort = freePort()
        self.picklePort = freePort()
        let queryPort = freePort()
        let root = self.directory.path
        try """
        [cache]
        STORAGE_DIR = \(root)/storage/
        LOCAL_DATA_DIR = \(root)/storage/whisper/
        CONF_DIR = \(root)/conf/
        LOG_DIR = \(root)/log/
        PID_DIR = \(root)/
        DATABASE = whisper
        ENABLE_LOGROTATION = False
        MAX_CACHE_SIZE = inf
        MAX_UPDATES_PER_SECOND = inf
        MAX_CREATES_PER_MINUTE = inf
        LINE_RECEIVER_INTERFACE = 127.0.0.1
        LINE_RECEIVER_PORT = \(self.linePort)
        PICKLE_RECEIVER_INTERFACE = 127.0.0.1
        PICKLE_RECEIVER_PORT = \(self.picklePort)
        CACHE_QUERY_INTERFACE = 127.0.0.1
        CACHE_QUERY_PORT = \(queryPort)
        ENABLE_UDP_LISTENER = False
        WHISPER_AUTOFLUSH = True
        LOG_UPDATES = False
        LOG_CREATES = False

        """.write(to: conf.appendingPathComponent("carbon.conf"), atomically: true, encoding: .utf8)
    }

    /// Starts carbon-cache (again, after `stop()`, on the same ports and whisper files) and waits for its receivers.
    func start() throws {
        self.process = Process()
        let root = self.directory.path
        (self.process.executableURL, self.process.arguments) = cleanSignalMask(
            "/usr/bin/carbon-cache",
            ["--config=\(self.configPath)", "--nodaemon", "--pidfile=\(root)/carbon.pid", "--logfile=-", "start"])
        let log = self.directory.appendingPathComponent("log/console.log")
        if !FileManager.default.fileExists(atPath: log.path) { _ = FileManager.default.createFile(atPath: log.path, contents: nil) }
        let handle = try FileHandle(forWritingTo: log)
        handle.seekToEndOfFile()
        self.process.standardOutput = handle
        self.process.standardError = handle
        try self.process.run()
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            guard self.process.isRunning else { throw TestFailure("carbon-cache exited:\n\(self.log.suffix(2000))") }
            if let fd = try? Send.connect(port: self.linePort) {
                close(fd)
                if let pickle = try? Send.connect(port: self.picklePort) {
                    close(pickle)
                    return
                }
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
        throw TestFailure("carbon-cache did not start")
    }

    /// carbon-cache's own log (for failure messages).
    var log: String {
        (try? String(contentsOf: self.directory.appendingPathComponent("log/console.log"), encoding: .utf8)) ?? ""
    }

    /// Whisper's stored datapoints for `metric` (dotted name): (timestamp, value), None values left out.
    func fetch(_ metric: String) -> [(Int, Double)] {
        let path = self.directory.appendingPathComponent(
            "storage/whisper/" + metric.replacingOccurrences(of: ".", with: "/") + ".wsp").path
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/whisper-fetch")
        process.arguments = ["--from=\(Int(Date().timeIntervalSince1970) - 600)", path]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return [] }
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return text.split(separator: "\n").compactMap { line in
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard parts.count == 2, let timestamp = Int(parts[0]), let value = Double(parts[1]) else { return nil }
            return (timestamp, value)
        }
    }

    /// Waits until whisper holds a datapoint for `metric` that satisfies `predicate`.
    func waitFor(_ metric: String, timeout: Double = 20, _ predicate: (Double) -> Bool) -> [(Int, Double)] {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let points = self.fetch(metric)
            if points.contains(where: { predicate($0.1) }) { return points }
            Thread.sleep(forTimeInterval: 0.2)
        }
        return self.fetch(metric)
    }

    /// Stops carbon-cache: SIGINT (it writes its cache out first), then SIGKILL if it lingers.
    func stop() {
        guard self.process.isRunning else { return }
        self.process.interrupt()
        let deadline = Date().addingTimeInterval(10)
        while self.process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if self.process.isRunning { kill(self.process.processIdentifier, SIGKILL) }
        self.process.waitUntilExit()
    }

    deinit { self.stop() }
}
