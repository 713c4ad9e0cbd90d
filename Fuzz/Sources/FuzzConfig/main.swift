//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

// A config file: evaluated (the config.js subset), then checked into a DaemonConfiguration with every backend's
// section, as `check-config` does.
// Errors are expected; a crash, a hang or runaway memory is a finding.

import SidestatBackends
import SidestatConfiguration

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let source = String(decoding: UnsafeBufferPointer(start: start, count: count), as: UTF8.self)
    let environment = ["PORT": "5000", "GRAPHITE_HOST": "127.0.0.1", "EMPTY": ""]
    guard let (value, _) = try? ConfigScript.evaluateReportingUnset(source, environment: environment) else {
        return 0
    }
    if case .object(let object) = value,
        let (configuration, _) = try? DaemonConfiguration.from(
            object, environment: environment, upstreams: BackendRegistry.sections.map { $0 })
    {
        _ = configuration.effectiveDescription(showingSecrets: false)
    }
    return 0
}
