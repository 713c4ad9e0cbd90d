//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOHTTP1
import SidestatBackends
import Synchronization

/// What the HTTP port answers: the health endpoints and the pages backends serve. It is made before the backends
/// (the port is bound first, so that they can name its real port) and given them once they exist.
final class PageRouter: Sendable {
    private let backends = Mutex<[any MetricsBackend]>([])

    func set(_ backends: [any MetricsBackend]) { self.backends.withLock { $0 = backends } }

    func route(_ path: String, state: DaemonState) -> HTTPEndpoint.Response {
        Self.route(path, state: state, backends: self.backends.withLock { $0 })
    }

    /// `/healthz`: alive (and `health up` on the management port). `/readyz`: listeners bound, and every backend's
    /// last flush delivered or held whole for retry. Any other path: the page a backend serves there, if any.
    static func route(_ path: String, state: DaemonState, backends: [any MetricsBackend]) -> HTTPEndpoint.Response {
        switch path {
        case "/healthz":
            return state.isHealthy
                ? .init(status: .ok, contentType: "text/plain", body: "ok\n")
                : .init(status: .serviceUnavailable, contentType: "text/plain", body: "health: down\n")
        case "/readyz":
            let failing = backends.filter { !$0.isHealthy }.map(\.name)
            if failing.isEmpty { return .init(status: .ok, contentType: "text/plain", body: "ready\n") }
            return .init(
                status: .serviceUnavailable, contentType: "text/plain",
                body: "not ready: dropping datapoints for " + failing.joined(separator: ", ") + "\n")
        default:
            for backend in backends {
                if let page = backend.page(path) { return .init(status: .ok, contentType: page.contentType, body: page.body) }
            }
            return .init(status: .notFound, contentType: "text/plain", body: "not found\n")
        }
    }
}
