//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

// A fixed amount of ingest work, for instruction counts that do not depend on a noisy machine:
//   valgrind --tool=callgrind .build/release/IngestProbe parse|aggregate|timers 2000
//   valgrind --tool=callgrind .build/release/IngestProbe encode 100000   (N timer keys x 1 sample, Graphite plaintext)
//   .build/release/IngestProbe counters 1000000   (N counter keys: RSS after ingest, after the take, peak at encode)
//   .build/release/IngestProbe remotewrite 10   (N flushes of 100k series to remote write, the first new)
//   .build/release/IngestProbe processes 1000   (N samples of 20 process trees, `sh -c "sleep 120"` each)
import BenchmarkSupport
import SidestatAggregation
import SidestatProtocol
import SidestatRunner
#if canImport(Glibc)
import Glibc
#endif

/// A line of /proc/self/status, in MiB (`VmRSS`, `VmHWM`).
func memory(_ field: String) -> Double {
    var bytes = [UInt8](repeating: 0, count: 8192)
    let fd = open("/proc/self/status", O_RDONLY)
    let count = read(fd, &bytes, bytes.count)
    close(fd)
    let status = String(decoding: bytes.prefix(max(0, count)), as: UTF8.self)
    let line = status.split(separator: "\n").first { $0.hasPrefix(field + ":") } ?? ""
    return (Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) / 1024
}

func datagrams(prefix: String, type: String) -> [[UInt8]] {
    var result: [[UInt8]] = []
    var key = 0
    for _ in 0..<64 {
        var datagram: [UInt8] = []
        while true {
            let line = Array("\(prefix)\(key % 100):1|\(type)\n".utf8)
            if datagram.count + line.count > 1400 { break }
            datagram += line
            key += 1
        }
        result.append(datagram)
    }
    return result
}

let mode = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "aggregate"
let rounds = CommandLine.arguments.count > 2 ? Int(CommandLine.arguments[2])! : 2000
let packed = datagrams(prefix: "perf.c.k", type: mode == "timers" ? "ms" : "c")
let lines = packed.reduce(0) { $0 + $1.filter { $0 == 10 }.count }
switch mode {
case "split":
    var total = 0
    for _ in 0..<rounds {
        for datagram in packed {
            datagram.withUnsafeBytes { bytes in
                var start = 0
                while start < bytes.count {
                    let end = ByteScan.firstIndex(of: 10, in: bytes, from: start, to: bytes.count)
                    total &+= end - start
                    start = end + 1
                }
            }
        }
    }
    print("lines:", lines * rounds, total)
case "parse":
    let parser = StatsdLineParser()
    var sink = CountingSink()
    for _ in 0..<rounds {
        for datagram in packed { datagram.withUnsafeBytes { parser.parse($0, into: &sink) } }
    }
    print("lines:", lines * rounds, sink.count)
case "remotewrite":
    let data = remoteWriteFlush()
    print("RSS with the flush's data:", memory("VmRSS"), "MiB, peak so far", memory("VmHWM"), "MiB")
    let backend = remoteWriteBackend()
    var bytes = (protobuf: 0, snappy: 0)
    let clock = ContinuousClock()
    for round in 0..<rounds {
        let start = clock.now
        let requests = backend.encode(data)
        bytes = (requests.reduce(0) { $0 + $1.uncompressedBytes }, requests.reduce(0) { $0 + $1.body.count })
        print("flush", round, "took", clock.now - start)
    }
    print("flushes:", rounds, "protobuf bytes:", bytes.protobuf, "snappy bytes:", bytes.snappy)
    print("RSS after:", memory("VmRSS"), "MiB, peak", memory("VmHWM"), "MiB")
case "processes":
    let pids = (0..<20).map { _ in spawnSleeper() }
    usleep(300_000)
    let metrics = ProcessMetrics { _ in }
    let processes = pids.enumerated().map { (name: "web.\($0.offset + 1)", pid: $0.element) }
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    let cpuBefore = Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    let clock = ContinuousClock()
    let start = clock.now
    var bytes = 0
    for _ in 0..<rounds { bytes &+= metrics.sample(processes).utf8.count }
    let wall = clock.now - start
    getrusage(RUSAGE_SELF.rawValue, &usage)
    let cpuAfter = Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    print("samples:", rounds, "wall per sample:", wall / rounds, "CPU per sample (ms):", (cpuAfter - cpuBefore) * 1000 / Double(rounds), bytes)
    for pid in pids { stopSleeper(pid) }
case "encode", "counters":
    // N timer keys x 1 sample (encode), or N counter keys (counters): the flush's phases, with RSS between them.
    let aggregator = Aggregator(shardCount: 1, seriesBudget: 2_000_000)
    let clock = ContinuousClock()
    var start = clock.now
    var key = 0
    while key < rounds {
        var datagram: [UInt8] = []
        while key < rounds, datagram.count < 1300 {
            datagram += Array((mode == "encode" ? "perf.ms.k\(key):\(key % 1000)|ms\n" : "mem.c.k\(key):1|c\n").utf8)
            key += 1
        }
        datagram.withUnsafeBytes { _ = aggregator.ingest($0, shard: 0) }
    }
    print("ingest:", clock.now - start, "RSS", memory("VmRSS"), "MiB")
    start = clock.now
    let data = flushData(of: aggregator)
    print("take and sort:", clock.now - start, "RSS", memory("VmRSS"), "MiB")
    start = clock.now
    let (points, bytes) = encodeGraphite(data)
    print("encode:", clock.now - start, "lines:", points, "bytes:", bytes, "peak", memory("VmHWM"), "MiB")
default:
    let aggregator = Aggregator(shardCount: 1)
    for _ in 0..<rounds {
        for datagram in packed { datagram.withUnsafeBytes { _ = aggregator.ingest($0, shard: 0) } }
    }
    print("lines:", lines * rounds)
}
