import Foundation
import GRDB
import RelayCore
import RelayFormat
@testable import RelayStore
import Testing

/// A database written by the first shipped schema (v1) is kept as a fixture; every later version must open
/// it, migrate it, and keep its cases, principals and audit chain intact.
@Suite struct UpgradeTests {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/schema-v1.sqlite")

    @Test func theFirstShippedSchemaMigratesWithItsDataIntact() async throws {
        if ProcessInfo.processInfo.environment["AMANE_REGENERATE_FIXTURE"] == "1" { try await Self.writeFixture() }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("amane-upgrade-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.copyItem(atPath: Self.fixture.path, toPath: (directory as NSString).appendingPathComponent(RelayDatabase.fileName))

        let db = try RelayDatabase(directory: directory)
        #expect(try db.appliedMigrations() == RelayDatabase.knownMigrations)
        #expect(try db.integrityCheck() == "ok")
        // The fixture's six entries, written by the first shipped schema, still verify.
        #expect(try db.verifyAudit() == 6)
        let cases = try await db.listQueue(QueueFilter()).cases
        #expect(cases.count == 1 && cases[0].labels.category == "trafficking" && cases[0].labels.region == "oriental")
        #expect(try await db.principals().map(\.name.rawValue).sorted() == ["fixture-gateway", "fixture-responder"])
        #expect(db.taxonomy.contains("street_situation", in: .category))
        let writer = Task { await db.runWriter() }
        defer { writer.cancel() }
        try await db.transition(id: cases[0].id, action: .claim, actor: StoreActor(try #require(await db.principal(named: PrincipalName(rawValue: "fixture-responder")!))))
        #expect(try db.verifyAudit() == 7)
        let last = try await db.auditEntries(after: 6).map(\.entry)
        #expect(last.map(\.action) == ["claim"] && last.first?.subject == cases[0].id)
    }

    @Test func aDatabaseFromANewerBuildIsRefused() async throws {
        let fixture = try await StoreFixture()
        try await fixture.db.pool.write { db in try db.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v99')") }
        try fixture.db.checkpoint()
        let files = ["relay.sqlite", "relay.sqlite-wal"].map { fixture.directory + "/" + $0 }
        let before = files.map { FileManager.default.contents(atPath: $0) }
        let refusal = #expect(throws: NewerSchemaError.self) { try RelayDatabase(directory: fixture.directory) }
        #expect(files.map { FileManager.default.contents(atPath: $0) } == before, "a refused database is left byte for byte as it was")
        #expect(refusal?.unknownMigrations == ["v99"] && refusal?.description.contains("newer amane-relayd (schema v99)") == true,
                "\(String(describing: refusal))")
        #expect(throws: NewerSchemaError.self, "check-config's read-only check sees it too") { try RelayDatabase.checkSchema(directory: fixture.directory) }
    }

    /// Writes the fixture with the schema of this build. Only run it for the first shipped version.
    static func writeFixture() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("amane-fixture-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let taxonomy = try String(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("seeds/taxonomy.yaml"), encoding: .utf8)
        let db = try RelayDatabase(directory: directory, taxonomyYAML: taxonomy)
        let writer = Task { await db.runWriter() }
        try await db.ensureQueue(.national, actor: .admin("fixture"))
        let gatewayKey = SealingPrivateKey.generate(suite: .x25519ChaChaPoly)
        let memberKey = SealingPrivateKey.generate(suite: .x25519ChaChaPoly)
        let gateway = try await db.enroll(name: PrincipalName(rawValue: "fixture-gateway")!, role: .gateway, spkiFingerprint: "00",
                                          sealingKey: gatewayKey.publicKey.text, actor: .admin("fixture"))
        let member = try await db.enroll(name: PrincipalName(rawValue: "fixture-responder")!, role: .responder, spkiFingerprint: "01",
                                         sealingKey: memberKey.publicKey.text, actor: .admin("fixture"))
        let epoch = SealingPrivateKey.generate(suite: .x25519ChaChaPoly)
        _ = try await db.createEpoch(queue: .national, publicKey: epoch.publicKey.text,
                                     grants: [member.name.rawValue: try Grant.seal(epoch, to: memberKey.publicKey)], actor: StoreActor(member))
        let id = UUID.v7()
        _ = try await db.intake(IntakeRequest(
            gateway: gateway, labels: DisclosureLabels(urgency: .high, category: "trafficking", language: "fr", channel: "kiosk", region: "oriental"),
            id: id, envelope: try Envelope.seal(Array("fixture".utf8), to: epoch.publicKey, kind: .disclosure, objectID: id),
            idempotencyKey: "fixture-key-0000000001", requestHash: [1]))
        writer.cancel()
        await writer.value
        try db.checkpoint()
        try db.close()
        try? FileManager.default.removeItem(at: fixture)
        try FileManager.default.copyItem(atPath: (directory as NSString).appendingPathComponent(RelayDatabase.fileName), toPath: fixture.path)
    }
}
