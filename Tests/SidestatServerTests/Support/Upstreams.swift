//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation

/// A minimal HTTP/1.0 client over a loopback socket, for the tests: one request, the whole response.
enum HTTP {
    struct Response {
        var status: Int
        var body: String
        var headers: [String: String]
    }

    /// - Parameter host: the `Host` header (`127.0.0.1:PORT` by default; an empty string sends none).
    static func request(
        _ method: String, port: Int, path: String, body: String = "", headers: [String] = [], timeout: Double = 10,
        host: String? = nil
    ) throws -> Response {
        let fd = try Send.connect(port: port)
        defer { close(fd) }
        var timeoutValue = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeoutValue, socklen_t(MemoryLayout<timeval>.size))
        let hostHeader = host ?? "127.0.0.1:\(port)"
        var head = "\(method) \(path) HTTP/1.0\r\n" + (hostHeader.isEmpty ? "" : "Host: \(hostHeader)\r\n")
        for header in headers { head += header + "\r\n" }
        head += "Content-Length: \(body.utf8.count)\r\n\r\n"
        let bytes = Array((head + body).utf8)
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes { Foundation.send(fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 { throw TestFailure("send failed") }
            sent += count
        }
        let text = String(decoding: Send.readAll(fd), as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw TestFailure("no HTTP response: \(text)") }
        let lines = text[..<split.lowerBound].split(separator: "\r\n")
        guard let statusLine = lines.first, statusLine.split(separator: " ").count >= 2,
            let status = Int(statusLine.split(separator: " ")[1])
        else { throw TestFailure("bad status line: \(text)") }
        var responseHeaders: [String: String] = [:]
        for line in lines.dropFirst() {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2 {
                responseHeaders[parts[0].lowercased()] = parts[1].trimmingCharacters(in: .whitespaces)
            }
        }
        return Response(status: status, body: String(text[split.upperBound...]), headers: responseHeaders)
    }

    static func get(port: Int, path: String) throws -> Response { try request("GET", port: port, path: path) }

    /// Percent-encoding for a query parameter.
    static func encode(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? text
    }

    static func json(_ text: String) -> Any? { try? JSONSerialization.jsonObject(with: Data(text.utf8)) }
}

/// Foundation's `Process` starts a child with the signal mask of the thread that calls `run()`, and the test
/// runner's threads block SIGTERM and SIGINT: a server started that way cannot be stopped gracefully (and loses
/// what it has not written yet when it is killed). This runs `executable` through a tiny exec wrapper that clears
/// the mask first.
func cleanSignalMask(_ executable: String, _ arguments: [String]) -> (URL, [String]) {
    let wrapper = "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); os.execv(sys.argv[1], sys.argv[1:])"
    return (URL(fileURLWithPath: "/usr/bin/python3"), ["-c", wrapper, executable] + arguments)
}

/// A child server for the tests, its output in a log file, stopped (SIGTERM, then SIGKILL) when released.
class ChildServer: @unchecked Sendable {
    let directory: URL
    let process = Process()
    private(set) var name = ""

    /// - Parameter directory: where its data and log go (a new temporary one, or an earlier server's, to restart it).
    init(directory: URL = TestPaths.temporaryDirectory()) {
        self.directory = directory
    }

    func launch(_ executable: String, _ arguments: [String]) throws {
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw TestFailure("\(executable) is not installed: run scripts/test, which installs it")
        }
        let log = self.directory.appendingPathComponent("server.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        self.name = executable
        (self.process.executableURL, self.process.arguments) = cleanSignalMask(executable, arguments)
        self.process.standardOutput = handle
        self.process.standardError = handle
        self.process.standardInput = FileHandle.nullDevice
        try self.process.run()
    }

    var log: String {
        (try? String(contentsOf: self.directory.appendingPathComponent("server.log"), encoding: .utf8)) ?? ""
    }

    /// Waits until `port` answers `path` with a 2xx status.
    func waitForHTTP(port: Int, path: String, timeout: Double = 30) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let response = try? HTTP.get(port: port, path: path), (200..<300).contains(response.status) { return }
            if !self.process.isRunning { throw TestFailure("\(self.name) exited:\n\(self.log)") }
            Thread.sleep(forTimeInterval: 0.1)
        }
        throw TestFailure("\(self.name) did not answer \(path):\n\(self.log)")
    }

    func stop() {
        guard self.process.isRunning else { return }
        self.process.terminate()
        let deadline = Date().addingTimeInterval(10)
        while self.process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if self.process.isRunning { kill(self.process.processIdentifier, SIGKILL) }
        self.process.waitUntilExit()
    }

    deinit { self.stop() }
}

/// A real InfluxDB 1.x (Debian's `influxdb`) on loopback, its data in a temporary directory.
final class InfluxDB: ChildServer, @unchecked Sendable {
    let port = freePort()

    func start() throws {
        let root = self.directory.path
        let config = self.directory.appendingPathComponent("influxdb.conf")
        try """
        reporting-disabled = true
        bind-address = "127.0.0.1:\(freePort())"
        [meta]
          dir = "\(root)/meta"
        [data]
          dir = "\(root)/data"
          wal-dir = "\(root)/wal"
          query-log-enabled = false
        [http]
          bind-address = "127.0.0.1:\(self.port)"
          log-enabled = false
        [monitor]
          store-enabled = false

        """.write(to: config, atomically: true, encoding: .utf8)
        try self.launch("/usr/bin/influxd", ["-config", config.path])
        try self.waitForHTTP(port: self.port, path: "/ping")
    }

    @discardableResult
    func query(_ q: String, database: String? = nil, method: String = "GET") throws -> Any? {
        var path = "/query?q=\(HTTP.encode(q))"
        if let database { path += "&db=\(HTTP.encode(database))" }
        let response = try HTTP.request(method, port: self.port, path: path)
        guard response.status == 200 else { throw TestFailure("InfluxDB query failed: \(response.status) \(response.body)") }
        return HTTP.json(response.body)
    }

    /// The rows of a SELECT, as [column: value] dictionaries.
    func rows(_ q: String, database: String) throws -> [[String: Any]] {
        guard let result = try self.query(q, database: database) as? [String: Any],
            let results = result["results"] as? [[String: Any]]
        else { return [] }
        var rows: [[String: Any]] = []
        for statement in results {
            for series in statement["series"] as? [[String: Any]] ?? [] {
                let columns = series["columns"] as? [String] ?? []
                for values in series["values"] as? [[Any]] ?? [] {
                    rows.append(Dictionary(uniqueKeysWithValues: zip(columns, values)))
                }
            }
        }
        return rows
    }
}

/// A server that answers PromQL on `/api/v1/query` (Prometheus, VictoriaMetrics).
class PromQLServer: ChildServer, @unchecked Sendable {
    let port: Int

    init(port: Int = freePort(), directory: URL = TestPaths.temporaryDirectory()) {
        self.port = port
        super.init(directory: directory)
    }

    /// An instant query's samples: (labels, value); a native histogram's sample has the value NaN.
    func query(_ q: String) throws -> [([String: String], Double)] {
        let response = try HTTP.get(port: self.port, path: "/api/v1/query?query=\(HTTP.encode(q))")
        guard let object = HTTP.json(response.body) as? [String: Any], let data = object["data"] as? [String: Any],
            let result = data["result"] as? [[String: Any]]
        else { throw TestFailure("query failed: \(response.body)") }
        return result.compactMap { sample in
            guard let labels = sample["metric"] as? [String: String] else { return nil }
            if sample["histogram"] != nil { return (labels, .nan) }
            guard let value = sample["value"] as? [Any], value.count == 2, let text = value[1] as? String,
                let number = Double(text)
            else { return nil }
            return (labels, number)
        }
    }

    /// A range selector's samples (`x[5m]`): each series' labels and its (Unix seconds, value) pairs, oldest first.
    func samples(_ q: String) throws -> [([String: String], [(Double, Double)])] {
        let response = try HTTP.get(port: self.port, path: "/api/v1/query?query=\(HTTP.encode(q))")
        guard let object = HTTP.json(response.body) as? [String: Any], let data = object["data"] as? [String: Any],
            let result = data["result"] as? [[String: Any]]
        else { throw TestFailure("query failed: \(response.body)") }
        return result.compactMap { series in
            guard let labels = series["metric"] as? [String: String], let values = series["values"] as? [[Any]] else {
                return nil
            }
            return (labels, values.compactMap { pair in
                guard pair.count == 2, let time = number(pair[0]), let value = (pair[1] as? String).flatMap(Double.init)
                else { return nil }
                return (time, value)
            })
        }
    }

    /// The value of a query that returns one sample (an aggregation), or nil when it returns none.
    func scalar(_ q: String) throws -> Double? { try self.query(q).first?.1 }

    /// Waits until `q` returns a sample that satisfies `predicate`.
    func waitFor(_ q: String, timeout: Double = 30, _ predicate: ([String: String], Double) -> Bool) throws
        -> [([String: String], Double)]
    {
        let deadline = Date().addingTimeInterval(timeout)
        var last: [([String: String], Double)] = []
        while Date() < deadline {
            last = try self.query(q)
            if last.contains(where: predicate) { return last }
            Thread.sleep(forTimeInterval: 0.2)
        }
        return last
    }
}

/// A real Prometheus (Debian's `prometheus`) on loopback: scraping targets every second, and/or a Remote-Write
/// receiver (`/api/v1/write`), with or without native histograms.
final class Prometheus: PromQLServer, @unchecked Sendable {
    var writeURL: String { "http://127.0.0.1:\(self.port)/api/v1/write" }

    func start(scraping targets: [Int] = [], receiver: Bool = false, nativeHistograms: Bool = false) throws {
        let config = self.directory.appendingPathComponent("prometheus.yml")
        var text = """
            global:
              scrape_interval: 1s
              evaluation_interval: 1s

            """
        if !targets.isEmpty {
            text += """
                scrape_configs:
                  - job_name: sidestat
                    metrics_path: /metrics
                    static_configs:
                      - targets: [\(targets.map { "\"127.0.0.1:\($0)\"" }.joined(separator: ", "))]

                """
        }
        try text.write(to: config, atomically: true, encoding: .utf8)
        var arguments = [
            "--config.file=\(config.path)", "--storage.tsdb.path=\(self.directory.path)/data",
            "--web.listen-address=127.0.0.1:\(self.port)",
        ]
        if receiver { arguments.append("--web.enable-remote-write-receiver") }
        if nativeHistograms { arguments.append("--enable-feature=native-histograms") }
        try self.launch("/usr/bin/prometheus", arguments)
        try self.waitForHTTP(port: self.port, path: "/-/ready")
    }

    func start(scraping target: Int) throws { try self.start(scraping: [target]) }
}

/// A real VictoriaMetrics (Debian's `victoria-metrics`) on loopback: Remote-Write at `/api/v1/write`, PromQL
/// (MetricsQL) queries answered at once (no latency offset).
final class VictoriaMetrics: PromQLServer, @unchecked Sendable {
    var writeURL: String { "http://127.0.0.1:\(self.port)/api/v1/write" }

    func start() throws {
        try self.launch(
            "/usr/bin/victoria-metrics",
            [
                "-httpListenAddr=127.0.0.1:\(self.port)", "-storageDataPath=\(self.directory.path)/data",
                "-search.latencyOffset=0s", "-loggerLevel=ERROR",
            ])
        try self.waitForHTTP(port: self.port, path: "/health")
    }
}

/// `http_capture.py`: a loopback HTTP endpoint that records every request (and decodes OTLP with PyPI's
/// opentelemetry-proto), for the upstreams that cannot run here.
final class HTTPCapture: ChildServer, @unchecked Sendable {
    let port: Int
    var output: URL { self.directory.appendingPathComponent("requests.jsonl") }

    init(port: Int = freePort()) {
        self.port = port
        super.init()
    }

    /// - Parameter script: answers in turn, the last repeating (`503:retry-after=2,204`: see http_capture.py).
    func start(otlp: Bool = false, status: Int = 200, script: String? = nil) throws {
        let python = otlp ? TestPaths.venvPython("otlp") : "/usr/bin/python3"
        let program = TestPaths.packageRoot.appendingPathComponent("Tests/SidestatServerTests/Support/http_capture.py")
        var arguments = [program.path, String(self.port), self.output.path]
        if otlp { arguments.append("--otlp") }
        arguments += ["--status", String(status)]
        if let script { arguments += ["--script", script] }
        try self.launch(python, arguments)
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if let fd = try? Send.connect(port: self.port) {
                close(fd)
                return
            }
            if !self.process.isRunning { throw TestFailure("http_capture.py exited:\n\(self.log)") }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw TestFailure("http_capture.py did not start:\n\(self.log)")
    }

    /// Every request recorded so far.
    var requests: [[String: Any]] {
        let text = (try? String(contentsOf: self.output, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { HTTP.json(String($0)) as? [String: Any] }
    }

    /// Waits until a recorded request satisfies `predicate`.
    func waitFor(timeout: Double = 15, _ predicate: ([String: Any]) -> Bool) -> [String: Any]? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let request = self.requests.first(where: predicate) { return request }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return nil
    }
}
