//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the daemon's human-readable output goes (console flushes, statsd-style log lines).
/// Writes are whole lines, never interleaved with another writer's.
public protocol TextOutput: Sendable {
    /// Writes `text`, which ends with a newline.
    func write(_ text: String)
}

/// Standard output, one `write(2)` per call under a lock.
public final class StandardOutput: TextOutput {
    public static let shared = StandardOutput()

    private let lock = Mutex<Void>(())

    public init() {}

    public func write(_ text: String) {
        self.lock.withLock { _ in writeAll(1, text) }
    }
}
