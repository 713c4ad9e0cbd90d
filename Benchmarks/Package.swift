// swift-tools-version:6.1
// Micro-benchmarks (ordo-one/benchmark): parse, aggregate, drain and encode, each with malloc counts.
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
        // A fixed amount of ingest or encode work for `valgrind --tool=callgrind` (instruction counts on a noisy machine).
        .executableTarget(
            name: "IngestProbe",
            dependencies: [
                "BenchmarkSupport",
                .product(name: "SidestatProtocol", package: "sidestat"),
                .product(name: "SidestatAggregation", package: "sidestat"),
            ],
            path: "Probes/IngestProbe"
        ),
    ]
)
