//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

// A management connection: the input's first byte sets how the rest arrives (reads of 1 to 256 bytes), and the rest
// is what the client sends, against a daemon state holding a few metrics of each kind.

import SidestatAggregation
import SidestatConfiguration
import SidestatServer

let aggregator = Aggregator(shardCount: 2)
let seed = Array("c.a:1|c\nc.b:2|c|@0.5\nt.a:3|ms\ng.a:4|g\ns.a:x|s\nweird key/é:1|c\n".utf8)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzManagement(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    guard count > 0 else { return 0 }
    // A fresh interval each run (a flush empties it), so that memory stays flat over millions of runs.
    _ = aggregator.takeSnapshot(policy: RetentionPolicy())
    seed.withUnsafeBytes { _ = aggregator.ingest($0, shard: 0) }
    var configuration = DaemonConfiguration()
    configuration.source = JSObject([("port", .number(8125)), ("graphite", .object(JSObject([("apiKey", .string("secret"))])))])
    let commands = ManagementCommands(
        aggregator: aggregator, state: DaemonState(healthUp: true), backends: [], configuration: configuration,
        flushState: FlushState())
    var session = ManagementSession(commands: commands)
    let readSize = Int(start[0]) + 1
    var offset = 1
    while offset < count {
        let end = min(count, offset + readSize)
        let (replies, quit) = session.receive(UnsafeBufferPointer(start: start + offset, count: end - offset))
        for reply in replies where reply.contains("secret") { fatalError("a secret in a reply: \(reply)") }
        if quit { return 0 }
        offset = end
    }
    if let reply = session.finish(), reply.contains("secret") { fatalError("a secret in a reply: \(reply)") }
    return 0
}
