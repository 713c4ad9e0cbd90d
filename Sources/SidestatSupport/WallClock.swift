//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The wall clock, as statsd reads it (`Date.now()`), in one place.
public enum WallClock {
    public static func unixMilliseconds() -> Int {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int(now.tv_sec) * 1000 + Int(now.tv_nsec) / 1_000_000
    }

    /// `Math.round(Date.now() / 1000)`.
    public static func unixSeconds() -> Int {
        Int((Double(unixMilliseconds()) / 1000).rounded(.toNearestOrAwayFromZero))
    }

    /// JavaScript's `Date.prototype.toString()`: `Thu Nov 26 2026 08:43:22 GMT+0000 (Coordinated Universal Time)`.
    public static func nodeDateString(unixSeconds: Int) -> String {
        var time = time_t(unixSeconds)
        var parts = tm()
        localtime_r(&time, &parts)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let offset = parts.tm_gmtoff / 60
        let sign = offset < 0 ? "-" : "+"
        let hours = abs(offset) / 60
        let minutes = abs(offset) % 60
        let zoneName = parts.tm_zone.map { String(cString: $0) } ?? "UTC"
        let longName = (zoneName == "UTC" || zoneName == "GMT") ? "Coordinated Universal Time" : zoneName
        return "\(days[Int(parts.tm_wday)]) \(months[Int(parts.tm_mon)]) \(two(parts.tm_mday)) \(parts.tm_year + 1900) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT\(sign)\(two(Int32(hours)))\(two(Int32(minutes))) (\(longName))"
    }
}

/// The time the flusher reads and waits on: the wall clock in the daemon (`SystemTime`), a clock the test moves in
/// tests, so that a flush tick, the final flush and a deadline are checked without waiting for them.
public protocol TimeSource: Sendable {
    /// Unix time in milliseconds.
    func unixMilliseconds() -> Int

    /// Returns once `duration` has passed on this clock; throws `CancellationError` when the task is cancelled.
    func sleep(for duration: Duration) async throws
}

extension TimeSource {
    /// `Math.round(Date.now() / 1000)`.
    public func unixSeconds() -> Int {
        Int((Double(self.unixMilliseconds()) / 1000).rounded(.toNearestOrAwayFromZero))
    }
}

/// The wall clock, and `Task.sleep` on the continuous clock.
public struct SystemTime: TimeSource {
    public init() {}

    public func unixMilliseconds() -> Int { WallClock.unixMilliseconds() }

    public func sleep(for duration: Duration) async throws { try await Task.sleep(for: duration) }
}

extension Duration {
    /// Whole milliseconds (statsd's unit for `flushInterval` and friends), rounded down.
    public var inMilliseconds: Int {
        Int(self.components.seconds) * 1000 + Int(self.components.attoseconds / 1_000_000_000_000_000)
    }

    /// Seconds, with their fraction.
    public var inSeconds: Double {
        Double(self.components.seconds) + Double(self.components.attoseconds) / 1e18
    }
}
