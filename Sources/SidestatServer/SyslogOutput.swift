//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// statsd's `log: {backend: "syslog"}`: each line goes to syslog(3) under the configured application name.
///
/// `@unchecked Sendable`: `identity` is written once in `init` and only read by syslog(3) afterwards.
public final class SyslogOutput: TextOutput, @unchecked Sendable {
    private let identity: UnsafeMutablePointer<CChar>

    public init(application: String) {
        self.identity = strdup(application)
        openlog(self.identity, LOG_PID | LOG_ODELAY, LOG_LOCAL0)
    }

    deinit {
        closelog()
        free(self.identity)
    }

    public func write(_ text: String) {
        for line in text.split(separator: "\n") {
            String(line).withCString { message in
                withVaList([message]) { vsyslog(LOG_INFO, "%s", $0) }
            }
        }
    }
}
