//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

// An HTTP connection to the dashboard's port: the bytes go through the same pipeline the ports use (NIO's HTTP/1.1
// decoder, one 400 for a malformed request, the request deadline), then the method and Host checks, then the
// dashboard's routes and their query parameters, against a store that holds a few keys of each kind. The input's
// first byte sets how the rest arrives (reads of 1 to 256 bytes). A crash, a second 400 on one connection, or a
// response that is not HTTP/1.1 stops the run.

import NIOCore
import NIOEmbedded
import NIOHTTP1
import SidestatAggregation
import SidestatBackends
import SidestatServer

let store: DashboardStore = {
    let store = DashboardStore(slots: 8, budgetBytes: 1 << 20)
    let aggregator = Aggregator(shardCount: 1)
    for time in 0..<3 {
        Array("c.a:1|c\nt.a:3|ms\nt.a:9|ms\ng.a:\(time)|g\ns.a:x|s\nmulti:1|c\nmulti:2|g\nweird key/é:1|c\n".utf8)
            .withUnsafeBytes { _ = aggregator.ingest($0, shard: 0) }
        var snapshot = aggregator.takeSnapshot(policy: RetentionPolicy())
        snapshot.sortTimerSamples()
        store.record(
            FlushData(
                timestamp: 1_700_000_000 + time * 10, snapshot: snapshot, flushInterval: .seconds(10),
                processingTime: .zero,
                timerStatistics: TimerStatisticsConfiguration(
                    percentThreshold: [90], histogram: [], calculatedTimerMetrics: nil, flushIntervalSeconds: 10),
                prefixStats: "statsd", percentThreshold: [90], isFinal: false))
    }
    return store
}()
let pages = DashboardPages(store: store)
let answerer = HTTPAnswerer(
    policy: HTTPEndpoint.Policy(allowedHosts: ["metrics.internal"]), boundAddress: "127.0.0.1", route: { pages.route($0) })

/// Answers each whole request as the ports do.
final class Answering: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    var head: HTTPRequestHead? = nil

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head): self.head = head
        case .body: break
        case .end:
            guard let head = self.head else { return }
            let (parts, keepAlive) = answerer.response(to: head)
            for part in parts { context.write(self.wrapOutboundOut(part), promise: nil) }
            context.flush()
            if !keepAlive { context.close(promise: nil) }
            self.head = nil
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTP(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    guard count > 0 else { return 0 }
    let channel = EmbeddedChannel()
    try! HTTPEndpoint.configure(channel.pipeline.syncOperations, policy: HTTPEndpoint.Policy())
    try! channel.pipeline.syncOperations.addHandler(Answering())
    try! channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    let readSize = Int(start[0]) + 1
    var offset = 1
    while offset < count, channel.isActive {
        let end = min(count, offset + readSize)
        _ = try? channel.writeInbound(ByteBuffer(bytes: UnsafeBufferPointer(start: start + offset, count: end - offset)))
        offset = end
    }
    var output: [UInt8] = []
    while let buffer = try? channel.readOutbound(as: ByteBuffer.self) {
        output += buffer.readableBytesView
    }
    // Close whatever is still open, and let the loop run what closing schedules, so that the channel and its
    // pipeline are released.
    channel.embeddedEventLoop.run()
    _ = try? channel.finish(acceptAlreadyClosed: true)
    channel.embeddedEventLoop.run()
    let text = String(decoding: output, as: UTF8.self)
    if !output.isEmpty, !text.hasPrefix("HTTP/1.1 ") { fatalError("not an HTTP/1.1 response: \(text.prefix(80))") }
    if text.split(separator: "HTTP/1.1 400", omittingEmptySubsequences: false).count > 2 {
        fatalError("two 400 answers on one connection")
    }
    return 0
}
