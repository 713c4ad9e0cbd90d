//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Synchronization

/// Says whether a warning about `key` is due: at most once per `interval` for each key (a refused host, a listener,
/// a process), so that a condition that lasts, or an attacker that repeats it, cannot flood the log. At most
/// `maximumKeys` keys are remembered; past that the memory is cleared.
public final class ReportThrottle<Key: Hashable & Sendable>: Sendable {
    private let last = Mutex<[Key: ContinuousClock.Instant]>([:])
    let interval: Duration
    let maximumKeys: Int

    public init(interval: Duration = .seconds(60), maximumKeys: Int = 1000) {
        self.interval = interval
        self.maximumKeys = maximumKeys
    }

    /// True when nothing about `key` was reported within the interval (and records this report).
    public func shouldReport(_ key: Key) -> Bool {
        self.last.withLock { last in
            let now = ContinuousClock.now
            if let previous = last[key], now - previous < self.interval { return false }
            if last.count >= self.maximumKeys { last = [:] }
            last[key] = now
            return true
        }
    }
}

extension ReportThrottle where Key == Bool {
    /// For a warning with one subject: true at most once per interval.
    public func shouldReport() -> Bool { self.shouldReport(true) }
}
