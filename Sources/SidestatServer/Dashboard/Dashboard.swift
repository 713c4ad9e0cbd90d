//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import NIOHTTP1
import SidestatBackends

/// The live dashboard: a flush observer that keeps the history (`DashboardStore`), and the page and JSON answers
/// served on its own port. It sees only flush snapshots: ingest never waits on it.
final class DashboardBackend: MetricsBackend {
    let name = "dashboard"
    let destination = "the dashboard's history"
    let store: DashboardStore

    init(store: DashboardStore) { self.store = store }

    func flush(_ data: FlushData, deadline: ContinuousClock.Instant, logger: Logger) async {
        self.store.record(data)
    }

    func status() -> [(name: String, value: Double)] { [] }
    var deliversUpstream: Bool { false }
    var statusAsGauges: Bool { false }
}

enum DashboardRoutes {
    /// `/` (the page, with `/dashboard.css` and `/dashboard.js`), `/api/keys?q=&offset=&limit=&points=`,
    /// `/api/series?key=&kind=`, `/api/health`.
    /// - Parameter internalPrefix: statsd's own keys' prefix (`prefixStats` and a dot), shown as a group of their own.
    static func route(
        _ uri: String, store: DashboardStore, backends: [any MetricsBackend], internalPrefix: String = "statsd."
    ) -> HTTPEndpoint.Response {
        let (path, query) = Self.split(uri)
        func integer(_ name: String, _ fallback: Int, _ range: ClosedRange<Int>) -> Int {
            query[name].flatMap(Int.init).map { min(max($0, range.lowerBound), range.upperBound) } ?? fallback
        }
        let json = "application/json; charset=utf-8"
        switch path {
        case "/", "/index.html":
            return .init(status: .ok, contentType: "text/html; charset=utf-8", body: DashboardPage.html)
        case "/dashboard.css":
            return .init(status: .ok, contentType: "text/css; charset=utf-8", body: DashboardPage.css)
        case "/dashboard.js":
            return .init(status: .ok, contentType: "text/javascript; charset=utf-8", body: DashboardPage.javascript)
        case "/api/keys":
            let body = store.keysJSON(
                query: query["q"] ?? "", offset: integer("offset", 0, 0...Int.max), limit: integer("limit", 200, 0...2000),
                points: integer("points", 60, 1...store.slots), internalPrefix: internalPrefix)
            return .init(status: .ok, contentType: json, body: body)
        case "/api/series":
            let kind = query["kind"].flatMap(DashboardStore.Kind.init(rawValue:))
            guard let key = query["key"], let body = store.seriesJSON(key, kind: kind) else {
                return .init(status: .notFound, contentType: json, body: "{\"error\":\"no such key\"}")
            }
            return .init(status: .ok, contentType: json, body: body)
        case "/api/health":
            let statuses = backends.filter { !($0 is DashboardBackend) }.map { (name: $0.name, status: $0.status()) }
            return .init(status: .ok, contentType: json, body: store.healthJSON(backends: statuses))
        default:
            return .init(status: .notFound, contentType: "text/plain", body: "not found\n")
        }
    }

    /// The path and the decoded query parameters of `uri` (`+` and `%XX` as a form encodes them).
    static func split(_ uri: String) -> (path: String, query: [String: String]) {
        let parts = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        var query: [String: String] = [:]
        if parts.count == 2 {
            for pair in parts[1].split(separator: "&") {
                let item = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                query[Self.decode(item[0])] = item.count == 2 ? Self.decode(item[1]) : ""
            }
        }
        return (String(parts[0]), query)
    }

    static func decode(_ text: Substring) -> String {
        var bytes: [UInt8] = []
        var index = text.utf8.startIndex
        let utf8 = text.utf8
        while index < utf8.endIndex {
            let byte = utf8[index]
            if byte == UInt8(ascii: "+") {
                bytes.append(UInt8(ascii: " "))
            } else if byte == UInt8(ascii: "%"), utf8.distance(from: index, to: utf8.endIndex) >= 3,
                let value = UInt8(String(decoding: utf8[utf8.index(after: index)...utf8.index(index, offsetBy: 2)], as: UTF8.self), radix: 16)
            {
                bytes.append(value)
                index = utf8.index(index, offsetBy: 2)
            } else {
                bytes.append(byte)
            }
            index = utf8.index(after: index)
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// The dashboard's answers apart from its port (the fuzzer drives them with any request).
public struct DashboardPages: Sendable {
    let store: DashboardStore
    let internalPrefix: String

    public init(store: DashboardStore, internalPrefix: String = "statsd.") {
        self.store = store
        self.internalPrefix = internalPrefix
    }

    /// The answer to a GET of `uri` (path and query).
    public func route(_ uri: String) -> HTTPEndpoint.Response {
        DashboardRoutes.route(uri, store: self.store, backends: [], internalPrefix: self.internalPrefix)
    }
}
