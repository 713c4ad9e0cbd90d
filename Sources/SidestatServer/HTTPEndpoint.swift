//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// A small HTTP/1.1 server: `/healthz`, `/readyz`, and the pages backends serve (`/metrics`).
public final class HTTPEndpoint: Service, Sendable {
    public struct Response: Sendable {
        var status: HTTPResponseStatus
        var contentType: String
        var body: String
    }

    let server: NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>
    let route: @Sendable (String) -> Response
    let logger: Logger
    public let port: Int

    /// - Parameter route: the answer to a GET of a URI (its path and query, as the request line has it).
    static func bind(
        host: String, port: Int, name: String = "the HTTP port", logger: Logger,
        route: @escaping @Sendable (String) -> Response
    ) async throws -> HTTPEndpoint {
        let server: NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>
        do {
            // A client that half-closes after its request (`nc -q1`) still gets the whole response.
            server = try await ServerBootstrap.sidestat(backlog: 64)
                .childChannelOption(.allowRemoteHalfClosure, value: true)
                .bind(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                        return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(
                            wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw ListenError(name, address: host, port: port, error: error)
        }
        return HTTPEndpoint(server: server, route: route, logger: logger)
    }

    private init(
        server: NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>,
        route: @escaping @Sendable (String) -> Response, logger: Logger
    ) {
        self.server = server
        self.route = route
        self.logger = logger
        self.port = server.channel.localAddress?.port ?? 0
    }

    public func run() async throws {
        try await acceptConnections(on: self.server, logger: self.logger, kind: "HTTP", maximumConnections: 64) { inbound, writer in
            var path = "/"
            var keepAlive = true
            for try await part in inbound {
                switch part {
                case .head(let head):
                    path = head.uri
                    keepAlive = head.isKeepAlive
                case .body:
                    break
                case .end:
                    let response = self.route(path)
                    var headers = HTTPHeaders()
                    headers.add(name: "Content-Type", value: response.contentType)
                    headers.add(name: "Content-Length", value: String(response.body.utf8.count))
                    if !keepAlive { headers.add(name: "Connection", value: "close") }
                    try await writer.write(
                        .head(HTTPResponseHead(version: .http1_1, status: response.status, headers: headers)))
                    try await writer.write(.body(.byteBuffer(ByteBuffer(string: response.body))))
                    try await writer.write(.end(nil))
                    if !keepAlive { return }
                }
            }
        }
    }
}
