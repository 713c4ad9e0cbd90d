//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import SidestatAggregation
import SidestatBackends
import SidestatSupport
import Synchronization
import Testing

/// The console backend in process: what it prints for a flush, against node's `console.log` of statsd's object.
struct ConsoleBackendTests {
    final class Capture: TextOutput {
        let text = Mutex("")
        func write(_ text: String) { self.text.withLock { $0 += text } }
    }

    @Test("a flush prints statsd's metrics object as node's console.log does: quoted keys, rates, statistics")
    func flushText() async {
        let capture = Capture()
        let backend = ConsoleBackend(output: capture, prettyPrint: false, startupTime: 0)
        let data = UpstreamEncoderTests().flush(
            counters: [("my.hits", 3), ("plain", 0.5)], gauges: [("temp", -2.5)], timers: [("db query", [3, 1, 2])])
        await backend.flush(data, deadline: .now, logger: Logger(label: "test"))
        let text = capture.text.withLock { $0 }
        #expect(text.hasPrefix("Flushing stats at  "), "\(text)")
        #expect(text.contains("  counters: { 'my.hits': 3, plain: 0.5 },\n"), "\(text)")
        #expect(text.contains("  timers: { 'db query': [ 1, 2, 3 ] },\n"), "\(text)")
        #expect(text.contains("  gauges: { temp: -2.5 },\n"), "\(text)")
        #expect(text.contains("  counter_rates: { 'my.hits': 0.3, plain: 0.05 },\n"), "\(text)")
        // statsd's timer statistics, in its order; an object too long for one line is broken over several.
        #expect(
            text.contains(
                "  timer_data: {\n    'db query': {\n      count_90: 3,\n      mean_90: 2,\n      upper_90: 3,\n"
                    + "      sum_90: 6,\n      sum_squares_90: 14,\n      std: 0.816496580927726,\n"), "\(text)")
        #expect(text.contains("      mean: 2,\n      median: 2\n    }\n  },\n"), "\(text)")
        #expect(text.hasSuffix("  pctThreshold: [ 90 ]\n}\n"), "\(text)")
        #expect(!backend.statusAsGauges && !backend.deliversUpstream)
    }

    @Test("DogStatsD events and service checks are printed after statsd's object's keys, only when there are some")
    func events() async {
        let capture = Capture()
        let backend = ConsoleBackend(output: capture, prettyPrint: false, startupTime: 0)
        var data = UpstreamEncoderTests().flush(counters: [("hits", 1)], gauges: [], timers: [])
        data.snapshot.events = ["_e{6,2}:Deploy|v1|#env:prod", "_sc|db.up|0"]
        await backend.flush(data, deadline: .now, logger: Logger(label: "test"))
        let text = capture.text.withLock { $0 }
        #expect(text.hasSuffix("  pctThreshold: [ 90 ],\n  events: [ '_e{6,2}:Deploy|v1|#env:prod', '_sc|db.up|0' ]\n}\n"), "\(text)")
    }
}
