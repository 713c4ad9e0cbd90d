//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

// The same bytes read as a Procfile (then planned, as `start` does) and as a .env file.

import SidestatRunner

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzProcfile(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: start, count: count), as: UTF8.self)
    if let procfile = try? Procfile.parse(text) {
        let concurrency = Dictionary(procfile.processes.map { ($0.name, 2) }, uniquingKeysWith: { a, _ in a })
        _ = planProcesses(procfile.processes, concurrency: concurrency, basePort: 5000)
    }
    _ = DotEnv.parse(text)
    return 0
}
