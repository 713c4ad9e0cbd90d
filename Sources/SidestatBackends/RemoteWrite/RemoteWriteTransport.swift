//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatSupport
import Synchronization

/// How remote write retries, as the spec asks: 5xx and 429 again after a backoff (or the `Retry-After` the receiver
/// gave), any other 4xx never.
public struct RemoteWriteRetryPolicy: Sendable {
    /// The first wait after a failure; each failure in a row doubles it, up to `maximumDelay` (Prometheus's own
    /// sender waits from 30 ms to 5 s).
    public var firstDelay: Duration = .milliseconds(100)
    public var maximumDelay: Duration = .seconds(5)
    /// The longest `Retry-After` honoured.
    public var maximumRetryAfter: Duration = .seconds(300)
    /// How many 5xx answers one request gets before it is given up: 10, about 20 s of retries with the delays above.
    public var maximumRefusals = 10

    public init() {}
}

/// Sends `WriteRequest`s one at a time, retrying within the attempt while its deadline allows; what is still
/// unsent then goes back to the delivery engine's retry buffer, in order, for the next flush.
final class RemoteWriteTransport: DeliveryTransport {
    let url: String
    let headers: [String]
    let basicAuth: String?
    let policy: RemoteWriteRetryPolicy

    struct Backoff {
        /// No request before this (a backoff, or the receiver's `Retry-After`).
        var notBefore: ContinuousClock.Instant? = nil
        var delay: Duration = .zero
        /// Whether the last failure reached the receiver (false: refused, unreachable).
        var connected = true
        /// The request at the head, and the 5xx answers it has had.
        var head: UInt64 = 0
        var refusals = 0
    }

    let backoff = Mutex(Backoff())

    init(_ configuration: RemoteWriteConfiguration, policy: RemoteWriteRetryPolicy) {
        self.url = configuration.url
        var headers = [
            "Content-Encoding: snappy", "Content-Type: application/x-protobuf",
            "X-Prometheus-Remote-Write-Version: 0.1.0", "User-Agent: Sidestat/\(sidestatVersion)",
        ]
        if let token = configuration.bearerToken { headers.append("Authorization: Bearer \(token)") }
        self.headers = headers + configuration.headers
        self.basicAuth = configuration.username.map { "\($0):\(configuration.password ?? "")" }
        self.policy = policy
    }

    /// What the receiver says when native histograms are off (Prometheus: "native histograms are disabled").
    static func refusesNativeHistograms(_ body: String) -> Bool {
        let text = body.lowercased()
        return text.contains("native histogram")
            && (text.contains("disabled") || text.contains("not enabled") || text.contains("not supported"))
    }

    func send(_ source: DeliverySource<RemoteWriteRequest>, _ attempt: DeliveryAttempt) async -> DeliveryFailure? {
        let clock = ContinuousClock()
        while let request = source.next() {
            while true {
                let deadline = attempt.deadline()
                let (waitUntil, connected) = self.backoff.withLock { ($0.notBefore, $0.connected) }
                if let notBefore = waitUntil, notBefore > clock.now {
                    // An unreachable receiver is not waited for past the connect window (the final flush's 1.5 s).
                    guard notBefore < deadline - .milliseconds(100), connected || notBefore < attempt.connectDeadline
                    else {
                        return DeliveryFailure("remotewrite: waiting before the next try (backoff)", connected: connected)
                    }
                    try? await Task.sleep(until: notBefore, clock: clock)
                }
                let remaining = (deadline - clock.now).inMilliseconds
                guard remaining > 0 else {
                    return DeliveryFailure("remotewrite: the flush deadline passed", connected: true)
                }
                let http = HTTPRequest(
                    url: self.url, headers: self.headers, body: request.body, basicAuth: self.basicAuth,
                    points: request.points)
                do throws(HTTPClient.Failure) {
                    _ = try await HTTPClient.send(
                        http, timeoutMilliseconds: min(remaining, 30_000),
                        connectTimeoutMilliseconds: max(200, (attempt.connectDeadline - clock.now).inMilliseconds))
                    source.confirm()
                    self.backoff.withLock { $0 = Backoff() }
                    break
                } catch {
                    if let outcome = self.handle(error, request, source) {
                        if case .giveUp = outcome { break }
                        // Retry: the top of the loop waits, or hands the rest back when the wait passes the deadline.
                        if !error.connected, clock.now >= attempt.connectDeadline {
                            return DeliveryFailure("remotewrite: \(error)", connected: false)
                        }
                        continue
                    }
                    break
                }
            }
        }
        return nil
    }

    enum Outcome {
        case retry
        case giveUp
    }

    /// Decides what a failed request becomes: refused for good (nil or `.giveUp`: rejected and counted), or retried
    /// after a backoff.
    private func handle(
        _ error: HTTPClient.Failure, _ request: RemoteWriteRequest, _ source: DeliverySource<RemoteWriteRequest>
    ) -> Outcome? {
        if request.hasHistograms, error.status >= 400, Self.refusesNativeHistograms(error.body) {
            source.reject(
                because:
                    "the receiver does not accept native histograms: set `histograms: \"classic\"` in remoteWrite (or enable them there: Prometheus's --enable-feature=native-histograms); it answered \(error)",
                key: "native histograms")
            self.backoff.withLock { $0 = Backoff() }
            return .giveUp
        }
        guard error.retryable else {
            source.reject(because: "remotewrite: \(error)", key: "HTTP \(error.status)")
            self.backoff.withLock { $0 = Backoff() }
            return nil
        }
        let now = ContinuousClock.now
        let giveUp = self.backoff.withLock { backoff -> Bool in
            if error.status >= 500 {
                if backoff.head != request.sequence {
                    backoff.head = request.sequence
                    backoff.refusals = 0
                }
                backoff.refusals += 1
                if backoff.refusals >= self.policy.maximumRefusals {
                    backoff = Backoff()
                    return true
                }
            }
            backoff.connected = error.connected
            backoff.delay = backoff.delay == .zero ? self.policy.firstDelay : min(backoff.delay * 2, self.policy.maximumDelay)
            let wait = error.retryAfter.map { min(.seconds($0), self.policy.maximumRetryAfter) } ?? backoff.delay
            backoff.notBefore = now + wait
            return false
        }
        if giveUp {
            source.reject(
                because: "remotewrite: the receiver refused a request \(self.policy.maximumRefusals) times; it is given up (last answer: \(error))",
                key: "given up")
            return .giveUp
        }
        return .retry
    }
}
