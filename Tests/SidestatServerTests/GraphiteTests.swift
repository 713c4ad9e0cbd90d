//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import Testing

extension EndToEnd {
    /// Against a real carbon-cache: what Sidestat sends is stored, read back with whisper-fetch.
    struct GraphiteTests {
        @Test("plaintext and pickle flushes are stored by carbon-cache", arguments: ["text", "pickle"])
        func stored(wireProtocol: String) throws {
            let carbon = try CarbonCache()
            defer { carbon.stop() }
            let daemon = try SidestatProcess(
                config: testConfig(
                    graphitePort: carbon.linePort,
                    extra: "graphitePicklePort: \(carbon.picklePort), graphiteProtocol: '\(wireProtocol)'"))
            Send.udp(["hits:3|c\nhits:4|c\nlatency:10|ms\nlatency:30|ms\ntemp:21.5|g\nusers:a|s\nusers:b|s"], port: daemon.udpPort)
            #expect(carbon.waitFor("stats_counts.hits") { $0 == 7 }.contains { $0.1 == 7 })
            #expect(carbon.waitFor("stats.hits") { $0 == 7 }.contains { $0.1 == 7 })  // rate per second, 1 s flushes
            #expect(carbon.waitFor("stats.timers.latency.mean") { $0 == 20 }.contains { $0.1 == 20 })
            #expect(carbon.waitFor("stats.timers.latency.upper_90") { $0 == 30 }.contains { $0.1 == 30 })
            #expect(carbon.waitFor("stats.gauges.temp") { $0 == 21.5 }.contains { $0.1 == 21.5 })
            #expect(carbon.waitFor("stats.sets.users.count") { $0 == 2 }.contains { $0.1 == 2 })
            #expect(carbon.waitFor("statsd.numStats") { $0 > 0 }.count > 0)
            #expect(daemon.terminate() == 0)
        }

        @Test("the final flush on SIGTERM is stored by carbon-cache")
        func finalFlush() throws {
            let carbon = try CarbonCache()
            defer { carbon.stop() }
            let daemon = try SidestatProcess(config: testConfig(graphitePort: carbon.linePort, flushInterval: 60_000))
            Send.udp(["last.words:42|c"], port: daemon.udpPort)
            // No wait: on SIGTERM the UDP reader drains what the kernel holds before the final flush.
            #expect(daemon.terminate() == 0)
            #expect(carbon.waitFor("stats_counts.last.words") { $0 == 42 }.contains { $0.1 == 42 })
        }
    }
}
