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
}
