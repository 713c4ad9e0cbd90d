//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation

/// A Sidestat config for tests: free ports, a 1 s flush, Graphite to `graphitePort`, plus `extra` keys.
func testConfig(graphitePort: Int?, flushInterval: Int = 1000, extra: String = "") -> String {
    var keys = [
        "port: \(freePort())", "mgmt_port: \(freePort())", "flushInterval: \(flushInterval)",
    ]
    if let graphitePort { keys += ["graphiteHost: '127.0.0.1'", "graphitePort: \(graphitePort)"] }
    if !extra.isEmpty { keys.append(extra) }
    return "{\n  " + keys.joined(separator: ",\n  ") + "\n}\n"
}

extension Array where Element == LineSink.Line {
    func value(_ name: String) -> String? { self.first { $0.name == name }?.value }
    func has(_ name: String) -> Bool { self.contains { $0.name == name } }
}
