// swift-tools-version:6.0
import PackageDescription

/// The gRPC replay service for Loom's ReplayStorage, kept out of the root package so the
/// core modules build without gRPC.
let package = Package(
    name: "ReplayService",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "ReplayServiceProto", targets: ["ReplayServiceProto"]),
        .library(name: "ReplayService", targets: ["ReplayService"]),
        .library(name: "ReplayClient", targets: ["ReplayClient"]),
        .executable(name: "loom-replay", targets: ["loom-replay"]),
    ],
    dependencies: [
        // The root Loom package; `name:` keeps the identity independent of the clone's folder name.
        .package(name: "Loom", path: "../.."),
        .package(url: "https://github.com/grpc/grpc-swift-2", exact: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", exact: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", exact: "2.4.1"),
        .package(url: "https://github.com/apple/swift-protobuf", exact: "1.39.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio", exact: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl", exact: "2.37.6"),
        .package(url: "https://github.com/apple/swift-metrics", exact: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", exact: "2.4.1"),
        .package(url: "https://github.com/jpsim/Yams", exact: "6.2.2"),
    ],
    targets: [
        // Generated code only (scripts/generate.sh); never edited by hand.
        .target(
            name: "ReplayServiceProto",
            dependencies: [
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        // Shared conversions between ReplayStorage values and protobuf messages.
        .target(
            name: "ReplayService",
            dependencies: [
                "ReplayServiceProto",
                .product(name: "ReplayStorage", package: "Loom"),
                .product(name: "TensorCore", package: "Loom"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .target(
            name: "ReplayClient",
            dependencies: [
                "ReplayServiceProto",
                "ReplayService",
                .product(name: "ReplayStorage", package: "Loom"),
                .product(name: "TensorCore", package: "Loom"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        .executableTarget(
            name: "loom-replay",
            dependencies: [
                "ReplayService",
                "ReplayClient",
                .product(name: "TensorCore", package: "Loom"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ReplayStorage", package: "Loom"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "ReplayServiceTests",
            dependencies: [
                "ReplayService", "ReplayClient", "ReplayServiceProto",
                .product(name: "ReplayStorage", package: "Loom"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "TensorCore", package: "Loom"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
            ],
            // Read through #filePath (TLS test pair, JSON/YAML configs); see Fixtures/README.md.
            exclude: ["Fixtures"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
