// swift-tools-version:6.1
// Micro-benchmarks (ordo-one/benchmark): parse, aggregate, drain and encode, and SidestatClient's calls, each with
// malloc counts.
// A nested package, so that the benchmark library and its malloc interposer stay out of Sidestat's own graph.
//
//   cd Benchmarks && swift package --disable-sandbox benchmark
import PackageDescription

let package = Package(
    name: "SidestatBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "sidestat", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
    ],
    targets: [
        // Fixtures shared by the benchmarks and the probe.
        .target(
            name: "BenchmarkSupport",
            dependencies: [
                .product(name: "SidestatProtocol", package: "sidestat"),
                .product(name: "SidestatAggregation", package: "sidestat"),
                .product(name: "SidestatBackends", package: "sidestat"),
                .product(name: "SidestatConfiguration", package: "sidestat"),
            ],
            path: "Support/BenchmarkSupport"
        ),
        .executableTarget(
            name: "IngestBenchmarks",
            dependencies: [
                "BenchmarkSupport",
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "SidestatProtocol", package: "sidestat"),
                .product(name: "SidestatAggregation", package: "sidestat"),
                .product(name: "SidestatBackends", package: "sidestat"),
                .product(name: "SidestatConfiguration", package: "sidestat"),
            ],
            path: "Benchmarks/IngestBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // SidestatClient: increments per second and mallocs per increment.
        .executableTarget(
            name: "ClientBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "SidestatClient", package: "sidestat"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            path: "Benchmarks/ClientBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // sidestat start's dyno metrics: a sample of 20 process trees, and the l2met scan on the output path.
        .executableTarget(
            name: "RunnerBenchmarks",
            dependencies: [
                "BenchmarkSupport",
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "SidestatRunner", package: "sidestat"),
            ],
            path: "Benchmarks/RunnerBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // A fixed amount of ingest or encode work for `valgrind --tool=callgrind` (instruction counts on a noisy machine).
        .executableTarget(
            name: "IngestProbe",
            dependencies: [
                "BenchmarkSupport",
                .product(name: "SidestatRunner", package: "sidestat"),
                .product(name: "SidestatProtocol", package: "sidestat"),
                .product(name: "SidestatAggregation", package: "sidestat"),
            ],
            path: "Probes/IngestProbe"
        ),
    ]
)
