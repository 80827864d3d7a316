// swift-tools-version: 6.1
// libFuzzer targets for Amane Relay's parsers; run them with `make fuzz` (Tests/Fuzz/run.sh).
//
// The main package exports only executables, so this package cannot depend on its library targets.
// It compiles RelayFormat, RelayCore and RelayAPI itself, from symlinks in Sources/ to the real sources
// (SwiftPM refuses target paths outside the package root), with the main package's dependencies and settings.
// Being a separate package keeps the sanitizer builds out of the main `swift build`.
import PackageDescription

let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "amane-relay-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(url: "https://github.com/apple/swift-crypto.git", "4.0.0"..<"5.0.0"),
    ],
    targets: [
        // Symlinks to ../../Sources; keep in step with ../../Package.swift.
        .target(
            name: "RelayFormat",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
            ],
            swiftSettings: strictSettings
        ),
        .target(name: "RelayCore", dependencies: ["RelayFormat"], swiftSettings: strictSettings),
        .target(name: "RelayAPI", dependencies: ["RelayCore", "RelayFormat"], swiftSettings: strictSettings),

        // One libFuzzer entry point (LLVMFuzzerTestOneInput) each; libFuzzer supplies main.
        .executableTarget(name: "FuzzEnvelope", dependencies: ["RelayFormat"], swiftSettings: strictSettings),
        .executableTarget(name: "FuzzIntake", dependencies: ["RelayAPI", "RelayCore", "RelayFormat"], swiftSettings: strictSettings),
        .executableTarget(name: "FuzzIdentityFile", dependencies: ["RelayFormat"], swiftSettings: strictSettings),
        .executableTarget(name: "FuzzReceipt", dependencies: ["RelayCore"], swiftSettings: strictSettings),
    ]
)
