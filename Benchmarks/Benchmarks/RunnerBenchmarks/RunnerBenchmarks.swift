//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

// What `sidestat start` adds for the dyno's metrics: one sample of 20 process trees from /proc, and the l2met scan
// of each output line next to printing it.

import Benchmark
import BenchmarkSupport
import SidestatRunner

#if canImport(Glibc)
import Glibc
#endif

let smoke = getenv("SIDESTAT_BENCHMARK_SMOKE") != nil

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.cpuTotal, .wallClock, .mallocCountTotal], timeUnits: .microseconds,
        maxDuration: smoke ? .milliseconds(200) : .seconds(2), maxIterations: smoke ? 10 : 10_000)

    Benchmark("process metrics: one sample of 20 process trees (sh and its sleep) and the dyno") { benchmark in
        let pids = (0..<20).map { _ in spawnSleeper() }
        defer { for pid in pids { stopSleeper(pid) } }
        let processes = pids.enumerated().map { (name: "web.\($0.offset + 1)", pid: $0.element) }
        let metrics = ProcessMetrics { _ in }
        _ = metrics.sample(processes)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { blackHole(metrics.sample(processes)) }
    }

    // The output path a line takes: printed (one write(2) to /dev/null under the printer's lock), with and without
    // the l2met scan before it. One iteration is 1,000 lines.
    let printer = LinePrinter(names: ["web.1", "system"], fd: open("/dev/null", O_WRONLY))
    let plain = "at=info method=GET path=\"/products/42\" host=shop.example.com status=200 bytes=5123 service=12ms"
    let tokens = "at=info count#app.signups=2 measure#db.query=12ms sample#queue.depth=4 unique#user=alice"
    for (name, line, scan) in [
        ("a line printed", plain, false), ("a line printed, after its l2met scan (no #)", plain, true),
        ("a line with 4 l2met tokens printed, after its scan", tokens, true),
    ] {
        Benchmark("runner output: 1,000 × \(name)", configuration: .init(timeUnits: .microseconds)) { benchmark in
            for _ in benchmark.scaledIterations {
                for _ in 0..<1000 {
                    if scan { blackHole(L2met.scan(line)) }
                    printer.write(line, name: "web.1", colourIndex: 0)
                }
            }
        }
    }
}
