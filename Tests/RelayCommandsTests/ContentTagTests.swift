import ArgumentParser
import Foundation
@testable import RelayCommands
import RelayAPI
import RelayFormat
import Testing

/// The tag a gateway sends with content it sealed stands for that content on a retry. The relay sees the request's
/// idempotency key, so a tag keyed by it alone would let a compromised relay test guesses of the content.
@Suite struct ContentTagTests {
    let plaintext = Data(#"{"narrative":"il revient ce soir"}"#.utf8)
    let key = "tag-test-\(UUID().uuidString)"

    func profile() throws -> Profile {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("amane-tag-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return try Profile.load(directory)
    }

    @Test func aRetryFromTheSameProfileSendsTheSameTag() throws {
        let gateway = try profile()
        let first = try SendingOptions.contentTag(plaintext, key: key, profile: gateway)
        #expect(try SendingOptions.contentTag(plaintext, key: key, profile: gateway) == first)
        #expect(try SendingOptions.contentTag(Data("other".utf8), key: key, profile: gateway) != first)
        #expect(try SendingOptions.contentTag(plaintext, key: key + "x", profile: gateway) != first, "the same content under two keys is not linked")
        let secret = (gateway.directory as NSString).appendingPathComponent(ContentTagSecret.fileName)
        #expect(SecretFile.openToOthers(secret) == nil && FileManager.default.contents(atPath: secret)?.count == ContentTagSecret.size)
        #expect(try FileManager.default.contentsOfDirectory(atPath: gateway.directory) == [ContentTagSecret.fileName], "no draft is left")
    }

    @Test func theContentAndKeyAloneDoNotMakeTheTag() throws {
        let (one, other) = (try profile(), try profile())
        let tag = try SendingOptions.contentTag(plaintext, key: key, profile: one)
        #expect(try SendingOptions.contentTag(plaintext, key: key, profile: other) != tag, "a secret the relay never sees keys it")
        #expect(tag != Base64.encode(KeyedBox.tag(plaintext, secret: Array(key.utf8), context: Array("sealed content".utf8))))
    }

    /// A key an earlier amane made and saved, before the profile's secret keyed the tag, is retried with the tag of its first try.
    @Test func aKeySavedBeforeTheUpgradeRetriesWithItsFormerTag() throws {
        let gateway = try profile()
        let former = "amane-cli-\(UUID().uuidString.lowercased())"
        #expect(try SendingOptions.contentTag(plaintext, key: former, profile: gateway)
                == Base64.encode(KeyedBox.tag(plaintext, secret: Array(former.utf8), context: Array("sealed content".utf8))))
        #expect(try FileManager.default.contentsOfDirectory(atPath: gateway.directory).isEmpty)
        #expect(try SendingOptions.parse([]).key().hasPrefix(SendingOptions.madeKeyPrefix) && SendingOptions.madeKeyPrefix != SendingOptions.formerMadeKeyPrefix)
    }

    @Test func aSecretOthersCanReadOrOfTheWrongSizeIsRefused() throws {
        let gateway = try profile()
        _ = try SendingOptions.contentTag(plaintext, key: key, profile: gateway)
        let secret = (gateway.directory as NSString).appendingPathComponent(ContentTagSecret.fileName)
        chmod(secret, 0o644)
        #expect { try SendingOptions.contentTag(plaintext, key: key, profile: gateway) } throws: { ($0 as? CLIError)?.message.contains("open to other users") == true }
        chmod(secret, 0o600)
        try Data("short".utf8).write(to: URL(fileURLWithPath: secret))
        #expect { try SendingOptions.contentTag(plaintext, key: key, profile: gateway) } throws: { ($0 as? CLIError)?.message.contains("is damaged") == true }
    }

    @Test func firstRunsAtOnceAgreeOnOneSecret() async throws {
        let gateway = try profile()
        let tags = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<8 { group.addTask { try SendingOptions.contentTag(plaintext, key: key, profile: gateway) } }
            return try await group.reduce(into: Set<String>()) { $0.insert($1) }
        }
        #expect(tags.count == 1)
    }
}
