//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatSupport
import CSidestat

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One HTTP request of a flush.
public struct HTTPRequest: Sendable {
    public var method = "POST"
    public var url: String
    public var headers: [String]
    public var body: [UInt8]
    /// `user:password` for basic authentication.
    public var basicAuth: String?
    /// The datapoints the request carries (for drop counts).
    public var points: Int

    public init(url: String, headers: [String], body: [UInt8], basicAuth: String? = nil, points: Int) {
        self.url = url
        self.headers = headers
        self.body = body
        self.basicAuth = basicAuth
        self.points = points
    }
}

/// HTTP and HTTPS through the system's libcurl, loaded on first use.
///
/// Why libcurl rather than a Swift client: async-http-client adds BoringSSL and minutes to every build, and
/// FoundationNetworking (which is itself built on libcurl) links Foundation and ICU, about 15 MiB of resident memory
/// in a daemon whose idle budget is 12 MiB. libcurl is on every machine that has FoundationNetworking (and on every
/// Heroku stack); dlopen means Sidestat costs nothing until an HTTP upstream is configured. Requests block, so each
/// runs on a thread of its own, never on the cooperative pool.
public enum HTTPClient {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        /// The HTTP status, when there was a response; 0 for a connection or TLS failure.
        public var status: Int
        /// Whether a connection was made (false when it was refused or could not be made).
        public var connected = true
        /// The start of the response body (at most 512 bytes), for messages: what the upstream says is wrong.
        public var body = ""
        /// The seconds a `Retry-After` header asked for (a 429 or 503 answer), when there was one.
        public var retryAfter: Int? = nil
        /// Whether sending the same request again may succeed (no response, 408, 429, 5xx); any other status is the
        /// upstream refusing the request for good.
        public var retryable: Bool { self.status == 0 || self.status == 408 || self.status == 429 || self.status >= 500 }
    }

    /// Sends `request`; returns the 2xx status or throws a `Failure`.
    public static func send(
        _ request: HTTPRequest, timeoutMilliseconds: Int, connectTimeoutMilliseconds: Int? = nil
    ) async throws(Failure) -> Int {
        let connectTimeout = min(connectTimeoutMilliseconds ?? timeoutMilliseconds, timeoutMilliseconds)
        let outcome = await ReaderThread.run(name: "sidestat-http") {
            Self.perform(request, timeoutMilliseconds: timeoutMilliseconds, connectTimeoutMilliseconds: connectTimeout)
        }
        // Where the request went, for messages: `https://metrics-api.librato.com`.
        let origin = request.url.split(separator: "/", maxSplits: 3, omittingEmptySubsequences: false).prefix(3)
            .joined(separator: "/")
        if let error = outcome.error {
            // One short sentence for the usual failures; libcurl's own text for the rare ones (TLS, say).
            let reason: String
            switch outcome.code {
            case 6: reason = "cannot resolve the host name"
            case 7: reason = "cannot connect (connection refused or no route)"
            case 28: reason = "timed out"
            default: reason = error
            }
            // libcurl's 6 and 7: the host could not be resolved or connected to (-1: libcurl is missing).
            throw Failure(
                description: "\(origin): \(reason)", status: outcome.status, connected: ![-1, 6, 7].contains(outcome.code))
        }
        guard (200..<300).contains(outcome.status) else {
            // The first line of what the upstream said, when it said something: "HTTP 400: out of order sample".
            let said = outcome.body.split(whereSeparator: \.isNewline).first.map {
                String($0.drop { $0 == " " || $0 == "\t" }.prefix(200))
            } ?? ""
            throw Failure(
                description: "\(origin): HTTP \(outcome.status)" + (said.isEmpty ? "" : ": \(said)"),
                status: outcome.status, body: outcome.body, retryAfter: outcome.retryAfter)
        }
        return outcome.status
    }

    /// Returns the status, curl's result code and its error message (nil when a response came).
    static func perform(
        _ request: HTTPRequest, timeoutMilliseconds: Int, connectTimeoutMilliseconds: Int
    ) -> (status: Int, code: Int32, error: String?, body: String, retryAfter: Int?) {
        var status = 0
        var error = [CChar](repeating: 0, count: 512)
        var response = [CChar](repeating: 0, count: 513)
        var retryAfter: Int64 = -1
        let headers: [UnsafeMutablePointer<CChar>?] = request.headers.map { strdup($0) }
        defer { for header in headers { free(header) } }
        let constant: [UnsafePointer<CChar>?] = headers.map { $0.map { UnsafePointer($0) } }
        let result: Int32 = constant.withUnsafeBufferPointer { headerPointers in
            request.body.withUnsafeBytes { body in
                sidestat_http_request(
                    request.method, request.url, headerPointers.baseAddress, Int32(headerPointers.count),
                    body.baseAddress, body.count, request.basicAuth, timeoutMilliseconds, connectTimeoutMilliseconds, &status,
                    &error, error.count, &response, response.count, &retryAfter)
            }
        }
        func text(_ characters: [CChar]) -> String {
            String(decoding: characters.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        if result != 0 {
            return (0, result, text(error), "", nil)
        }
        return (status, 0, nil, text(response), retryAfter > 0 ? Int(retryAfter) : nil)
    }
}
