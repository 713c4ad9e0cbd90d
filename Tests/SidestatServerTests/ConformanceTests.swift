//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import Testing

extension EndToEnd {
    /// Every case of the shared differential harness, against the built daemon, compared digit for digit with Etsy
    /// statsd's recorded output (Tests/Conformance/README.md lists the deliberate differences).
    struct ConformanceTests {
        @Test("every shared conformance case gives the reference daemon's output")
        func sharedCases() throws {
            let shared = TestPaths.shared.appendingPathComponent("conformance")
            let harness = shared.appendingPathComponent("refstatsd.py").path
            guard FileManager.default.fileExists(atPath: harness) else {
                throw TestFailure(
                    "the shared conformance harness is missing: expected \(harness) (../shared beside the repository)")
            }
            let cases = shared.appendingPathComponent("cases")
            let ours = TestPaths.packageRoot.appendingPathComponent("Tests/Conformance")
            let work = TestPaths.temporaryDirectory().appendingPathComponent("cases")
            let manager = FileManager.default
            try manager.createDirectory(at: work, withIntermediateDirectories: true)
            let sharedFiles = try manager.contentsOfDirectory(atPath: cases.path)
            #expect(sharedFiles.filter { $0.hasSuffix(".statsd") }.count >= 61)
            for file in sharedFiles {
                try manager.copyItem(at: cases.appendingPathComponent(file), to: work.appendingPathComponent(file))
            }
            // Sidestat's expected output where it deliberately differs, and its own extra cases.
            for directory in ["sidestat-expected", "cases"] {
                let source = ours.appendingPathComponent(directory)
                for file in try manager.contentsOfDirectory(atPath: source.path) {
                    let target = work.appendingPathComponent(file)
                    if directory == "sidestat-expected" {
                        #expect(manager.fileExists(atPath: target.path), "\(file) overrides no shared case")
                    }
                    try? manager.removeItem(at: target)
                    try manager.copyItem(at: source.appendingPathComponent(file), to: target)
                }
            }
            let caseFiles = try manager.contentsOfDirectory(atPath: work.path).filter { $0.hasSuffix(".statsd") }.sorted()
                .map { work.appendingPathComponent($0).path }
            // A case mostly waits for its flushes (1 s apart): 16 at once take a quarter of the time 4 do, and pass
            // with both cores busy.
            let (status, output) = runProcess(
                "/usr/bin/env",
                ["python3", harness, "--check", "-j", "16", "--server-cmd", "\(TestPaths.sidestat) --config {config}"]
                    + caseFiles)
            let failures = output.split(separator: "\n").filter { $0.hasPrefix("FAIL") }
            #expect(failures.isEmpty, "\(output)")
            #expect(output.contains("0/\(caseFiles.count) cases differ"), "\(output)")
            #expect(status == 0)
        }
    }
}
