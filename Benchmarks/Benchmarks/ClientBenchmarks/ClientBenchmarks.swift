//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Benchmark
import CoreMetrics
import Glibc
import SidestatClient

/// `SIDESTAT_BENCHMARK_SMOKE=1` (CI): every benchmark runs a few iterations, only to show it builds and runs.
let smoke = getenv("SIDESTAT_BENCHMARK_SMOKE") != nil

/// A UDP port on 127.0.0.1 that takes datagrams and never reads them (loopback drops what its buffer cannot hold,
/// after the client's send(2) has succeeded): the client's own cost, not a server's.
func sinkPort() -> (socket: Int32, port: Int) {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
            bind(fd, pointer, length)
            return getsockname(fd, pointer, &length)
        }
    }
    return (fd, Int(UInt16(bigEndian: address.sin_port)))
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .mallocCountTotal, .throughput], timeUnits: .nanoseconds, scalingFactor: .mega,
        maxDuration: smoke ? .milliseconds(200) : .seconds(2), maxIterations: smoke ? 2 : 20)
    let sink = sinkPort()

    // One iteration = 1M increments (scalingFactor .mega): throughput is in M increments/s, mallocs per 1M calls.
    Benchmark("client: Counter.increment(), aggregated in the client") { benchmark in
        let client = SidestatClient(.init(transport: .udp(host: "127.0.0.1", port: sink.port), aggregates: true))
        let counter = Counter(label: "bench.hits", dimensions: [("route", "home")], factory: client)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { counter.increment() }
        benchmark.stopMeasurement()
        client.shutdown()
    }

    Benchmark("client: Counter.increment(), one line each, batched into 1,432-byte datagrams") { benchmark in
        let client = SidestatClient(.init(transport: .udp(host: "127.0.0.1", port: sink.port), aggregates: false))
        let counter = Counter(label: "bench.hits", dimensions: [("route", "home")], factory: client)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { counter.increment() }
        benchmark.stopMeasurement()
        client.shutdown()
    }

    Benchmark("client: Timer.recordNanoseconds(), one line each, batched") { benchmark in
        let client = SidestatClient(.init(transport: .udp(host: "127.0.0.1", port: sink.port)))
        let timer = Timer(label: "bench.latency", factory: client)
        benchmark.startMeasurement()
        var nanoseconds: Int64 = 1_234_567
        for _ in benchmark.scaledIterations {
            timer.recordNanoseconds(nanoseconds)
            nanoseconds &+= 1
        }
        benchmark.stopMeasurement()
        client.shutdown()
    }

    // What a client that sends one datagram per metric pays (apple/swift-statsd-client's design; that package is not
    // in this machine's offline set, so it cannot be measured here): one send(2) per line, for scale.
    Benchmark(
        "baseline: one datagram per increment (send(2) per line)",
        configuration: .init(scalingFactor: .kilo, maxDuration: smoke ? .milliseconds(200) : .seconds(2))
    ) { benchmark in
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(sink.port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        let line = Array("bench.hits:1|c|#route:home".utf8)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            _ = line.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        }
        benchmark.stopMeasurement()
        close(fd)
    }
}
