// swift-tools-version:6.1
// A Hummingbird app that counts its homepage hits through swift-metrics and SidestatClient. Its own package, so
// that Hummingbird stays out of Sidestat's build.
import PackageDescription

let package = Package(
    name: "hello-swift",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "sidestat", path: "../.."),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
    ],
    targets: [
        .executableTarget(
            name: "HelloSwift",
            dependencies: [
                .product(name: "SidestatClient", package: "sidestat"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        )
    ]
)
