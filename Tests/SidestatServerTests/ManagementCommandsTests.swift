//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatAggregation
import SidestatConfiguration
import SidestatServer
import Testing

/// The management commands and the connection reader in process: no socket, no daemon.
struct ManagementCommandsTests {
    let aggregator = Aggregator(shardCount: 1)
    let state = DaemonState(healthUp: true)

    func commands(source: JSObject = JSObject()) -> ManagementCommands {
        var configuration = DaemonConfiguration()
        configuration.source = source
        return ManagementCommands(
            aggregator: self.aggregator, state: self.state, backends: [], configuration: configuration,
            flushState: FlushState())
    }

    func ingest(_ text: String) {
        var bytes = Array(text.utf8)
        _ = bytes.withUnsafeMutableBytes { self.aggregator.ingest(UnsafeRawBufferPointer($0), shard: 0) }
    }

    /// Feeds `input` to a session in reads of `readSize` bytes, then closes; returns every reply in order.
    func session(_ input: String, readSize: Int) -> [String] {
        var session = ManagementSession(commands: self.commands())
        let bytes = Array(input.utf8)
        var replies: [String] = []
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + readSize)
            let (some, quit) = bytes[offset..<end].withUnsafeBufferPointer { session.receive($0) }
            replies += some
            if quit { return replies }
            offset = end
        }
        if let last = session.finish() { replies.append(last) }
        return replies
    }

    @Test("counters, delcounters and health answer as statsd does")
    func commandsAnswer() {
        self.ingest("c.a:1|c\nc.b:2|c\nt:3|ms\nweird\"key:1|c")
        let commands = self.commands()
        #expect(
            commands.execute("counters")
                == #"{"statsd.bad_lines_seen":0,"statsd.packets_received":1,"statsd.metrics_received":4,"# + #""c.a":1,"c.b":2,"weirdkey":1}"#
                + "\nEND\n\n")
        #expect(commands.execute("delcounters c.* nothere") == "deleted: c.a\ndeleted: c.b\nmetric nothere not found\nEND\n\n")
        #expect(commands.execute("timers") == "{\"t\":[3]}\nEND\n\n")
        #expect(commands.execute("health down") == "health: down\n")
        #expect(!self.state.isHealthy)
        #expect(commands.execute("nonsense") == "ERROR\n")
        #expect(commands.execute("quit") == nil)
    }

    @Test("stats names series_dropped only once the budget refused keys, so statsd's output is otherwise unchanged")
    func statsSeriesDropped() {
        let commands = self.commands()
        #expect(!commands.execute("stats")!.contains("series_dropped"))
        self.state.recordSeriesDropped(7)
        #expect(commands.execute("stats")!.contains("messages.series_dropped: 7\n"))
    }

    @Test("config never shows a secret", arguments: ["apiKey", "token", "password"])
    func configRedacts(key: String) {
        let source = JSObject([("port", .number(8125)), ("librato", .object(JSObject([(key, .string("s3cret"))])))])
        let reply = self.commands(source: source).execute("config") ?? ""
        #expect(reply.contains("librato > \(key): ***\n"), "\(reply)")
        #expect(!reply.contains("s3cret"))
    }

    @Test("a session answers each line however the bytes arrive; a last line without a newline counts", arguments: [1, 3, 4096])
    func sessionFraming(readSize: Int) {
        #expect(self.session("health\r\nnope\nhealth", readSize: readSize) == ["health: up\n", "ERROR\n", "health: up\n"])
        #expect(self.session("health\nquit\nhealth\n", readSize: readSize) == ["health: up\n"])
    }

    @Test("a command line past 4 KiB is answered ERROR once, its rest skipped, and the next line answered")
    func sessionLongLine() {
        let long = String(repeating: "x", count: 100_000)
        #expect(self.session(long + "\nhealth\n", readSize: 1000) == ["ERROR\n", "health: up\n"])
    }
}
