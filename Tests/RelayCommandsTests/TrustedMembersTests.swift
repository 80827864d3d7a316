import Foundation
@testable import RelayCommands
import Testing

/// The pins of `amane grant NAME --fingerprint`, written by separate `amane` runs that may overlap.
@Suite struct TrustedMembersTests {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("amane-members-\(UUID().uuidString)").path

    func load() throws -> TrustedMembers {
        try TrustedMembers(profile: Profile(directory: directory, identity: (directory as NSString).appendingPathComponent("identity.amane")))
    }

    static func fingerprint(_ index: Int) -> String { String(repeating: String(format: "%02x", index), count: 32) }

    @Test func pinsTakenAtTheSameMomentAreAllKept() async throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // Each run read the file before any of them pinned, as eight overlapping `amane grant` runs would.
        let runs = try (0..<8).map { _ in try load() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, run) in runs.enumerated() {
                group.addTask {
                    var run = run
                    try run.pin("colleague-\(index)", fingerprint: Self.fingerprint(index))
                }
            }
            try await group.waitForAll()
        }
        let pinned = try load().fingerprints
        #expect(pinned == Dictionary(uniqueKeysWithValues: (0..<8).map { ("colleague-\($0)", Self.fingerprint($0)) }))
        let mode = try FileManager.default.attributesOfItem(atPath: (directory as NSString).appendingPathComponent("members"))[.posixPermissions] as? Int
        #expect(mode == 0o600)
    }

    @Test func aNamePinnedMeanwhileToAnotherKeyIsRefused() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var late = try load()
        var early = try load()
        try early.pin("supervisor", fingerprint: Self.fingerprint(1))
        let refusal = #expect(throws: CLIError.self) { try late.pin("supervisor", fingerprint: Self.fingerprint(2)) }
        #expect(refusal?.code == .verification)
        #expect(try load().fingerprints == ["supervisor": Self.fingerprint(1)])
    }
}
