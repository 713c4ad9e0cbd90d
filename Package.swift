// swift-tools-version:6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

/// The ingest path (parser and metric tables) is built without overflow and exclusivity checks in release:
/// its indices are bounded by construction, and the benchmarks measure the difference.
let hotPathSettings: [SwiftSetting] =
    swiftSettings + [.unsafeFlags(["-Ounchecked", "-enforce-exclusivity=unchecked"], .when(configuration: .release))]

let package = Package(
    name: "sidestat",
    // Sidestat runs on Linux only (Debian 12, Ubuntu 22.04/24.04; x86-64 and arm64): the C shim uses Linux calls
    // (recvmmsg, prctl, close_range), and stops a build elsewhere with one clear error. The macOS entry only states
    // the Swift runtime the code needs (Synchronization), for editors on a Mac.
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "sidestat", targets: ["sidestat"]),
        .library(name: "SidestatServer", targets: ["SidestatServer"]),
        .library(name: "SidestatProtocol", targets: ["SidestatProtocol"]),
        .library(name: "SidestatAggregation", targets: ["SidestatAggregation"]),
        .library(name: "SidestatBackends", targets: ["SidestatBackends"]),
        .library(name: "SidestatConfiguration", targets: ["SidestatConfiguration"]),
        .library(name: "SidestatRunner", targets: ["SidestatRunner"]),
        // The client for Swift apps: a swift-metrics backend and a plain statsd/DogStatsD API, without NIO.
        .library(name: "SidestatClient", targets: ["SidestatClient"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
    ],
    targets: [
        // recvmmsg/sendmmsg are not exposed by the Glibc module, nor vector byte compares by Swift: a tiny C shim.
        .target(name: "CSidestat"),
        // Plumbing every long-lived part uses: threads for blocking work, text output, the environment, the wall clock.
        .target(name: "SidestatSupport", dependencies: ["CSidestat"], swiftSettings: swiftSettings),
        // Wire format only: the zero-copy statsd/DogStatsD line parser and JS-compatible numbers.
        .target(name: "SidestatProtocol", dependencies: ["CSidestat"], swiftSettings: hotPathSettings),
        // Per-shard metric tables, flush snapshots and timer statistics. No I/O.
        .target(name: "SidestatAggregation", dependencies: ["SidestatProtocol"], swiftSettings: hotPathSettings),
        // The config.js evaluator (a safe JavaScript subset) and the typed, validated configuration.
        .target(
            name: "SidestatConfiguration", dependencies: ["SidestatProtocol", "SidestatSupport"],
            swiftSettings: swiftSettings),
        // The backend protocol, the registry, and one folder per upstream (its settings, encoder and backend).
        .target(
            name: "SidestatBackends",
            dependencies: [
                "CSidestat", "SidestatSupport", "SidestatProtocol", "SidestatAggregation", "SidestatConfiguration",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // Listeners, management port, flush service and the composition root.
        .target(
            name: "SidestatServer",
            dependencies: [
                "CSidestat", "SidestatSupport", "SidestatProtocol", "SidestatAggregation", "SidestatConfiguration",
                "SidestatBackends",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // Procfile and .env parsing, and supervised child processes (`sidestat start`).
        .target(
            name: "SidestatRunner",
            dependencies: [
                "CSidestat", "SidestatSupport",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // SidestatClient's socket set-up (getaddrinfo, sockaddr_un), apart from the server's shim.
        .target(name: "CSidestatClient"),
        .target(
            name: "SidestatClient",
            dependencies: ["CSidestatClient", .product(name: "CoreMetrics", package: "swift-metrics")],
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "sidestat",
            dependencies: [
                "SidestatServer", "SidestatBackends", "SidestatConfiguration", "SidestatRunner", "SidestatSupport",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // What several test targets read Sidestat's output with: Snappy and Remote-Write decoders, a log recorder.
        .target(
            name: "SidestatTestSupport", dependencies: [.product(name: "Logging", package: "swift-log")],
            path: "Tests/SidestatTestSupport", swiftSettings: swiftSettings),
        .testTarget(name: "SidestatProtocolTests", dependencies: ["SidestatProtocol"], swiftSettings: swiftSettings),
        .testTarget(
            name: "SidestatAggregationTests", dependencies: ["SidestatAggregation"], swiftSettings: swiftSettings),
        .testTarget(
            name: "SidestatConfigurationTests", dependencies: ["SidestatConfiguration", "SidestatBackends"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "SidestatClientTests",
            dependencies: ["SidestatClient", .product(name: "Metrics", package: "swift-metrics")],
            swiftSettings: swiftSettings),
        .testTarget(name: "SidestatRunnerTests", dependencies: ["SidestatRunner"], swiftSettings: swiftSettings),
        .testTarget(
            name: "SidestatBackendsTests",
            dependencies: [
                "SidestatBackends", "SidestatAggregation", "SidestatConfiguration", "SidestatSupport", "SidestatTestSupport",
            ],
            swiftSettings: swiftSettings
        ),
        // End-to-end: the built `sidestat` executable with real sockets, processes, carbon-cache and PyPI clients.
        .testTarget(
            name: "SidestatServerTests",
            dependencies: [
                "SidestatServer", "SidestatBackends", "SidestatClient", "SidestatTestSupport", "sidestat",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            exclude: ["Support/http_capture.py"],
            swiftSettings: swiftSettings
        ),
    ]
)
