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
        var text = text
        self.lock.withLock { _ in
            text.withUTF8 { buffer in
                var offset = 0
                while offset < buffer.count {
                    let written = Glibc.write(1, buffer.baseAddress! + offset, buffer.count - offset)
                    if written <= 0 {
                        if written < 0 && errno == EINTR { continue }
                        return
                    }
                    offset += written
                }
            }
        }
    }
}
