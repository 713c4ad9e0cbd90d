//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import SidestatSupport
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// A small HTTP/1.1 server: `/healthz`, `/readyz`, the pages backends serve (`/metrics`), and the dashboard.
///
/// A web page in a browser on the same machine can reach it, so it answers only what such a page cannot abuse:
/// - GET and HEAD only (405 otherwise);
/// - only for a `Host` that is a loopback name (`localhost`, `*.localhost`, `127.x.x.x`, `[::1]`), its own bound
///   address, or one of `httpAllowedHosts` (421 otherwise), so that DNS rebinding cannot read it;
/// - every answer says `nosniff`, may not be framed, and allows only its own origin's scripts and styles;
/// - a request must arrive whole within `httpRequestTimeout` of the connection opening or the last answer;
/// - a malformed request gets one 400, and the connection closes.
public final class HTTPEndpoint: Service, Sendable {
    public struct Response: Sendable {
        public var status: HTTPResponseStatus
        public var contentType: String
        public var body: String
        public var headers: [(String, String)] = []

        public init(status: HTTPResponseStatus, contentType: String, body: String, headers: [(String, String)] = []) {
            self.status = status
            self.contentType = contentType
            self.body = body
            self.headers = headers
        }
    }

    /// Who may ask what.
    public struct Policy: Sendable {
        /// Host names besides the loopback ones and the bound address (lower case, with or without a port).
        public var allowedHosts: [String] = []
        /// The whole request's deadline, from the connection opening or the last answer.
        public var requestTimeout: TimeAmount = .seconds(10)
        public var maximumConnections = 64

        public init(allowedHosts: [String] = [], requestTimeout: TimeAmount = .seconds(10), maximumConnections: Int = 64) {
            self.allowedHosts = allowedHosts
            self.requestTimeout = requestTimeout
            self.maximumConnections = maximumConnections
        }
    }

    let server: NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>
    let answerer: HTTPAnswerer
    let policy: Policy
    let registry: ConnectionRegistry
    let logger: Logger
    public let port: Int

    /// Installs what every Sidestat HTTP port reads requests with: NIO's HTTP/1.1 codec, one 400 for a malformed
    /// request (`BadRequestOnce`), and the request deadline (`RequestDeadline`).
    public static func configure(_ pipeline: ChannelPipeline.SynchronousOperations, policy: Policy) throws {
        try pipeline.configureHTTPServerPipeline(withErrorHandling: false)
        try pipeline.addHandlers(BadRequestOnce(), RequestDeadline(timeout: policy.requestTimeout))
    }

    /// - Parameter route: the answer to a GET of a URI (its path and query, as the request line has it).
    static func bind(
        host: String, port: Int, name: String = "the HTTP port", policy: Policy = Policy(),
        registry: ConnectionRegistry = ConnectionRegistry(), logger: Logger,
        route: @escaping @Sendable (String) -> Response
    ) async throws -> HTTPEndpoint {
        let server: NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>
        do {
            // A client that half-closes after its request (`nc -q1`) still gets the whole response.
            server = try await ServerBootstrap.sidestat(backlog: 64, registry: registry, logger: logger, kind: "HTTP")
                .childChannelOption(.allowRemoteHalfClosure, value: true)
                .bind(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try Self.configure(channel.pipeline.syncOperations, policy: policy)
                        return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(
                            wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw ListenError(name, address: host, port: port, error: error)
        }
        return HTTPEndpoint(
            server: server, route: route, policy: policy, boundAddress: host, registry: registry, logger: logger)
    }

    private init(
        server: NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>,
        route: @escaping @Sendable (String) -> Response, policy: Policy, boundAddress: String,
        registry: ConnectionRegistry, logger: Logger
    ) {
        self.server = server
        self.policy = policy
        self.registry = registry
        self.logger = logger
        let port = server.channel.localAddress?.port ?? 0
        self.port = port
        self.answerer = HTTPAnswerer(policy: policy, boundAddress: boundAddress, route: route) { host in
            logger.warning(
                "Refused an HTTP request for another host (a web page's DNS rebinding, or a name to add to httpAllowedHosts)",
                metadata: ["http.host": "\(host)", "http.port": "\(port)"])
        }
    }

    public func run() async throws {
        try await acceptConnections(
            on: self.server, registry: self.registry, logger: self.logger, kind: "HTTP",
            maximumConnections: self.policy.maximumConnections
        ) { inbound, writer, connection in
            var request: HTTPRequestHead? = nil
            for try await part in inbound {
                connection.touch()
                switch part {
                case .head(let head):
                    request = head
                    connection.busy(true)
                case .body:
                    break
                case .end:
                    guard let head = request else { return }
                    let (parts, keepAlive) = self.answerer.response(to: head)
                    for part in parts { try await writer.write(part) }
                    connection.busy(false)
                    request = nil
                    if !keepAlive { return }
                }
            }
        }
    }

}

/// What an HTTP port answers to a whole request, apart from the socket (tests and the fuzzer use it directly):
/// the method and `Host` checks, then `route`.
public struct HTTPAnswerer: Sendable {
    let policy: HTTPEndpoint.Policy
    let boundAddress: String
    let route: @Sendable (String) -> HTTPEndpoint.Response
    /// Called (at most once a minute for each host) when a request for another host is refused.
    let refused: @Sendable (String) -> Void
    /// The hosts this port refused, each logged at most once a minute.
    let refusedHosts = ReportThrottle<String>()

    public init(
        policy: HTTPEndpoint.Policy, boundAddress: String, route: @escaping @Sendable (String) -> HTTPEndpoint.Response,
        refused: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.policy = policy
        self.boundAddress = boundAddress
        self.route = route
        self.refused = refused
    }

    /// On every answer: no sniffing, no framing, only this origin's scripts, styles and data.
    static let securityHeaders: [(String, String)] = [
        ("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
        ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
        ("Cache-Control", "no-store"),
    ]

    /// The response's parts to a whole request (`head`), and whether the connection stays open after it.
    public func response(to head: HTTPRequestHead) -> (parts: [HTTPServerResponsePart], keepAlive: Bool) {
        let (response, close) = self.answer(head)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: response.contentType)
        headers.add(name: "Content-Length", value: String(response.body.utf8.count))
        for (name, value) in Self.securityHeaders + response.headers { headers.add(name: name, value: value) }
        let keepAlive = head.isKeepAlive && !close
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        var parts: [HTTPServerResponsePart] = [
            .head(HTTPResponseHead(version: .http1_1, status: response.status, headers: headers))
        ]
        if head.method != .HEAD { parts.append(.body(.byteBuffer(ByteBuffer(string: response.body)))) }
        parts.append(.end(nil))
        return (parts, keepAlive)
    }

    /// The answer to a whole request, and whether the connection closes after it.
    func answer(_ head: HTTPRequestHead) -> (HTTPEndpoint.Response, close: Bool) {
        guard head.method == .GET || head.method == .HEAD else {
            return (
                HTTPEndpoint.Response(
                    status: .methodNotAllowed, contentType: "text/plain", body: "only GET and HEAD\n",
                    headers: [("Allow", "GET, HEAD")]), true
            )
        }
        if let host = head.headers.first(name: "Host"), !self.allows(host: host) {
            if self.refusedHosts.shouldReport(host) { self.refused(host) }
            return (
                HTTPEndpoint.Response(
                    status: .misdirectedRequest, contentType: "text/plain",
                    body: "this port answers only for localhost, its own address and the names in httpAllowedHosts\n"),
                true
            )
        }
        return (self.route(head.uri), false)
    }

    /// Whether a `Host` header names this server: a loopback name or address, the bound address, or an allowed name.
    func allows(host header: String) -> Bool {
        let host = Self.hostName(header)
        if host == "localhost" || host.hasSuffix(".localhost") || host == "::1" || host == "0:0:0:0:0:0:0:1" { return true }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        if octets.count == 4, octets[0] == "127", octets.allSatisfy({ UInt8($0) != nil }) { return true }
        if host == self.boundAddress.lowercased() { return true }
        let full = header.lowercased()
        return self.policy.allowedHosts.contains { $0 == host || $0 == full }
    }

    /// The host part of a `Host` header, lower case, without a port or the brackets of an IPv6 address.
    static func hostName(_ header: String) -> String {
        let text = header.lowercased().trimmingASCIISpaces
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            return String(text[text.index(after: text.startIndex)..<close])
        }
        if let colon = text.lastIndex(of: ":") { return String(text[..<colon]) }
        return text
    }
}

extension String {
    var trimmingASCIISpaces: String {
        String(self.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}

/// A malformed request gets one 400 (NIO's own error handler can answer twice when the parser fails twice), then the
/// connection closes.
final class BadRequestOnce: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var answered = false
    private var responding = false

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard error is HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        guard !self.answered else { return }
        self.answered = true
        if !self.responding {
            var headers = HTTPHeaders()
            headers.add(name: "Connection", value: "close")
            headers.add(name: "Content-Length", value: "0")
            context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .badRequest, headers: headers))), promise: nil)
            context.writeAndFlush(self.wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
        } else {
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Nothing after a malformed request is read.
        guard !self.answered else { return }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch self.unwrapOutboundIn(data) {
        case .head: self.responding = true
        case .end: self.responding = false
        case .body: break
        }
        context.write(data, promise: promise)
    }
}

/// Closes a connection whose request has not arrived whole within `timeout` of the connection opening (or of the
/// last answer, for the next request on a kept-alive connection): a client that opens a connection and sends
/// nothing, or a header a byte at a time, cannot hold it.
final class RequestDeadline: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    let timeout: TimeAmount
    private var deadline: Scheduled<Void>? = nil

    init(timeout: TimeAmount) { self.timeout = timeout }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { self.arm(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        self.arm(context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .end = self.unwrapInboundIn(data) {
            self.deadline?.cancel()
            self.deadline = nil
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = self.unwrapOutboundIn(data) { self.arm(context) }
        context.write(data, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.deadline?.cancel()
        self.deadline = nil
        context.fireChannelInactive()
    }

    private func arm(_ context: ChannelHandlerContext) {
        self.deadline?.cancel()
        let channel = context.channel
        self.deadline = context.eventLoop.scheduleTask(in: self.timeout) { channel.close(promise: nil) }
    }
}
