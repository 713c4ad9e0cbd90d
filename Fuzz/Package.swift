// swift-tools-version:5.4
// libFuzzer targets for every parser that reads outside input: the statsd line parser (its hot path compared with
// its general path), the config.js evaluator with the configuration checks, the Procfile and .env readers, and the
// management port's command reader. Built and run by `scripts/fuzz` (see docs/reliability.md):
//
//   swift build -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
//
// A nested package, so that the fuzzing flags never reach Sidestat's own build. Tools version 5.4: later ones rename
// an executable's `main` (`--defsym main=<target>_main`), which would hide libFuzzer's own `main`.
import PackageDescription

let package = Package(
    name: "SidestatFuzz",
    dependencies: [
        .package(name: "sidestat", path: ".."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        .target(
            name: "FuzzLineParser",
            dependencies: [
                .product(name: "SidestatProtocol", package: "sidestat"),
                .product(name: "SidestatAggregation", package: "sidestat"),
            ]
        ),
        .target(
            name: "FuzzConfig",
            dependencies: [
                .product(name: "SidestatConfiguration", package: "sidestat"),
                .product(name: "SidestatBackends", package: "sidestat"),
            ]),
        .target(name: "FuzzProcfile", dependencies: [.product(name: "SidestatRunner", package: "sidestat")]),
        .target(
            name: "FuzzManagement",
            dependencies: [
                .product(name: "SidestatServer", package: "sidestat"),
                .product(name: "SidestatAggregation", package: "sidestat"),
                .product(name: "SidestatConfiguration", package: "sidestat"),
            ]
        ),
        .target(
            name: "FuzzHTTP",
            dependencies: [
                .product(name: "SidestatServer", package: "sidestat"),
                .product(name: "SidestatAggregation", package: "sidestat"),
                .product(name: "SidestatBackends", package: "sidestat"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
    ]
)
