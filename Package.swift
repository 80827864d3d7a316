// swift-tools-version: 6.1
import PackageDescription

let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "amane-relay",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "amane-relay-bench", targets: ["RelayBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-crypto.git", "4.0.0"..<"5.0.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", exact: "7.10.0"),
        .package(url: "https://github.com/jpsim/Yams.git", "6.0.0"..<"7.0.0"),
    ],
    targets: [
        .target(
            name: "RelayFormat",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
            ],
            swiftSettings: strictSettings
        ),
        .target(name: "RelayCore", dependencies: ["RelayFormat"], swiftSettings: strictSettings),
        .target(
            name: "RelayStore",
            dependencies: ["RelayCore", "RelayFormat", .product(name: "GRDB", package: "GRDB.swift"), "Yams"],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "RelayBench",
            dependencies: ["RelayFormat", "RelayCore", "RelayStore", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "RelayFormatTests",
            dependencies: ["RelayFormat", .product(name: "Crypto", package: "swift-crypto")],
            resources: [.copy("Vectors")],
            swiftSettings: strictSettings
        ),
        .testTarget(name: "RelayCoreTests", dependencies: ["RelayCore"], swiftSettings: strictSettings),
        .testTarget(name: "RelayStoreTests", dependencies: ["RelayStore", "RelayCore", "RelayFormat"], swiftSettings: strictSettings),
    ]
)
