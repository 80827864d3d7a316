import Foundation
@testable import RelayFormat
import Testing

@Suite struct KeyTextTests {
    @Test(arguments: SealingSuite.allCases)
    func publicKeyTextRoundTripsAndNamesItsSuite(suite: SealingSuite) throws {
        let key = SealingPrivateKey.generate(suite: suite).publicKey
        let parsed = try SealingPublicKey(text: key.text)
        #expect(parsed == key)
        #expect(key.text.hasPrefix("amanepk1"))
    }

    @Test func aTypoInTheKeyTextIsCaught() throws {
        let text = SealingPrivateKey.generate().publicKey.text
        var chars = Array(text)
        let index = chars.count / 2
        chars[index] = chars[index] == "A" ? "B" : "A"
        // The checksum catches a typo, rather than a key that happens not to parse; a cut one is told apart.
        for (typo, reason) in [(String(chars), "checksum does not match"), (String(text.dropLast(3)), "is cut short")] {
            let error = #expect(throws: FormatError.self) { try SealingPublicKey(text: typo) }
            #expect(error?.code == .malformed && error?.description.contains(reason) == true, "\(String(describing: error))")
        }
    }

    @Test func fingerprintIsShortGroupedAndStable() throws {
        let key = SealingPrivateKey.generate().publicKey
        let fingerprint = key.fingerprint
        #expect(fingerprint.wholeMatch(of: /amane1(-[a-z2-7]{4}){6}/) != nil)
        #expect(try SealingPublicKey(text: key.text).fingerprint == fingerprint)
        #expect(SealingPrivateKey.generate().publicKey.fingerprint != fingerprint)
    }

    /// The formula Envelope.md gives, computed apart (Python's hashlib and base64) for RFC 7748's X25519 public key of Alice.
    @Test func fingerprintAndKeyIDFollowTheSpecification() throws {
        let hex = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        let alice = try SealingPublicKey(suite: .x25519ChaChaPoly, rawRepresentation: stride(from: 0, to: hex.count, by: 2).map { UInt8(hex.dropFirst($0).prefix(2), radix: 16)! })
        #expect(alice.fingerprint == "amane1-o55k-6yuc-fdom-mzij-txjy-puqs")
        #expect(alice.id.uuidString.lowercased() == "777aaf62-8228-dcc6-6509-9dd387d21215")
    }

    @Test func base32MatchesRFC4648() {
        #expect(Base32.encode(Array("foobar".utf8)) == "mzxw6ytboi")
        #expect(Base32.encode(Array("f".utf8)) == "my")
    }
}

@Suite struct GrantTests {
    @Test(arguments: SealingSuite.allCases)
    func aMemberOpensTheEpochKeyGrantedToThem(suite: SealingSuite) throws {
        let epoch = SealingPrivateKey.generate(suite: suite)
        let member = SealingPrivateKey.generate()
        let grant = try Grant.seal(epoch, to: member.publicKey)
        let opened = try Grant.open(grant, epochID: epoch.id, with: member)
        #expect(opened.publicKey == epoch.publicKey)

        let note = try Envelope.seal(Array("note".utf8), to: epoch.publicKey, kind: .note, objectID: UUID(0), caseID: UUID(1))
        #expect(try Envelope.open(note, with: opened, kind: .note, objectID: UUID(0), caseID: UUID(1)) == Array("note".utf8))
    }

    @Test func aGrantOpensForNoOtherMemberOrEpoch() throws {
        let epoch = SealingPrivateKey.generate()
        let member = SealingPrivateKey.generate()
        let grant = try Grant.seal(epoch, to: member.publicKey)
        #expect(throws: FormatError(.openFailed)) { try Grant.open(grant, epochID: epoch.id, with: SealingPrivateKey.generate()) }
        #expect(throws: FormatError(.openFailed)) { try Grant.open(grant, epochID: SealingPrivateKey.generate().id, with: member) }
    }
}

extension UUID {
    init(_ small: UInt8) { self.init(bytes: [UInt8](repeating: 0, count: 15) + [small]) }
}

@Suite struct IdentityFileTests {
    static let cheap = ScryptParameters(logN: 10, r: 8, p: 1)
    let passphrase = Array("correct horse battery staple".utf8)

    func temporaryPath() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("amane-id-\(UUID().uuidString)").path
    }

    @Test func createThenLoadGivesTheSameKeyWithMode0600() throws {
        let key = SealingPrivateKey.generate()
        let path = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        try IdentityFile.create(at: path, key: key, passphrase: passphrase, parameters: Self.cheap)

        let loaded = try IdentityFile.load(from: path, passphrase: passphrase)
        #expect(loaded.publicKey == key.publicKey)
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        #expect(try IdentityFile.publicKey(in: IdentityFile.read(path)) == key.publicKey)
    }

    @Test func aFileOpenToOthersIsToldByItsOwnModeThroughASymbolicLink() throws {
        let path = temporaryPath(), link = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: path); try? FileManager.default.removeItem(atPath: link) }
        #expect(FileManager.default.createFile(atPath: path, contents: Data("secret".utf8), attributes: [.posixPermissions: 0o600]))
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: path)
        #expect(SecretFile.openToOthers(path) == nil && SecretFile.openToOthers(link) == nil, "a link to a private file is private")
        #expect(chmod(path, 0o640) == 0)
        #expect(SecretFile.openToOthers(path) == 0o640 && SecretFile.openToOthers(link) == 0o640)
        #expect(SecretFile.openToOthers(path + "-missing") == nil)
    }

    @Test func theFileIsNeverSilentlyOverwritten() throws {
        let path = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let first = SealingPrivateKey.generate()
        try IdentityFile.create(at: path, key: first, passphrase: passphrase, parameters: Self.cheap)
        #expect(throws: FormatError(.fileExists)) {
            try IdentityFile.create(at: path, key: SealingPrivateKey.generate(), passphrase: passphrase, parameters: Self.cheap)
        }
        #expect(try IdentityFile.load(from: path, passphrase: passphrase).publicKey == first.publicKey)
    }

    @Test func aWrongPassphraseIsAClearError() throws {
        let text = try IdentityFile.encode(SealingPrivateKey.generate(), passphrase: passphrase, parameters: Self.cheap)
        do {
            _ = try IdentityFile.decode(text, passphrase: Array("wrong".utf8))
            Issue.record("opened with a wrong passphrase")
        } catch {
            #expect(error.code == .wrongPassphrase)
            #expect("\(error)".contains("passphrase"))
        }
    }

    @Test func theFileRecordsTheDefaultCostAndHoldsNoClearKey() throws {
        let key = SealingPrivateKey.generate(suite: .x25519ChaChaPoly)
        let text = try IdentityFile.encode(key, passphrase: passphrase)
        #expect(text.contains("kdf: scrypt N=131072 r=8 p=1\n"))
        #expect(!text.contains(Data(key.rawRepresentation).base64EncodedString()))
        #expect(!text.contains(Base64URL.encode(key.rawRepresentation)))
        #expect(try IdentityFile.decode(text, passphrase: passphrase).publicKey == key.publicKey)
    }

    @Test func alteredOrStrangeFilesAreRefused() throws {
        let text = try IdentityFile.encode(SealingPrivateKey.generate(), passphrase: passphrase, parameters: Self.cheap)
        let otherPublic = SealingPrivateKey.generate().publicKey.text
        let lines = text.split(separator: "\n").map(String.init)
        let swappedPublic = (lines[0..<4] + ["public: \(otherPublic)"] + lines[5...]).joined(separator: "\n") + "\n"
        #expect(throws: FormatError(.wrongPassphrase)) { try IdentityFile.decode(swappedPublic, passphrase: passphrase) }
        #expect(throws: FormatError(.damagedKeyFile)) { try IdentityFile.decode(text + "extra: 1\n", passphrase: passphrase) }
        #expect(throws: FormatError(.damagedKeyFile)) { try IdentityFile.decode(String(text.dropLast()), passphrase: passphrase) }
        #expect(throws: FormatError(.unsupportedVersion)) {
            try IdentityFile.decode(text.replacingOccurrences(of: "amane-identity v1", with: "amane-identity v9"), passphrase: passphrase)
        }
        let costly = text.replacingOccurrences(of: "N=1024", with: "N=4194304")
        #expect(throws: FormatError(.damagedKeyFile)) { try IdentityFile.decode(costly, passphrase: passphrase) }
        // Within each parameter's range, but 2 GiB together (found by fuzzing): refused before any work.
        let greedy = text.replacingOccurrences(of: "N=1024 r=8 p=1", with: "N=1048576 r=16 p=4")
        #expect(greedy != text)
        #expect(throws: FormatError(.damagedKeyFile)) { try IdentityFile.decode(greedy, passphrase: passphrase) }
        let stillFine = ScryptParameters(logN: 18, r: 8, p: 1)
        #expect(stillFine.isWithinBounds && ScryptParameters.default.isWithinBounds)
    }
}

@Suite struct KeyedBoxTests {
    @Test func aSealedValueOpensOnlyWithTheSameSecretAndContext() throws {
        let sealed = KeyedBox.seal(Array("1234567890123452".utf8), secret: Array("key-1".utf8), context: Array("gw".utf8))
        #expect(try KeyedBox.open(sealed, secret: Array("key-1".utf8), context: Array("gw".utf8)) == Array("1234567890123452".utf8))
        #expect(throws: FormatError(.openFailed)) { try KeyedBox.open(sealed, secret: Array("key-2".utf8), context: Array("gw".utf8)) }
        #expect(throws: FormatError(.openFailed)) { try KeyedBox.open(sealed, secret: Array("key-1".utf8), context: Array("other".utf8)) }
    }

    /// The stored request tag must not let anyone test a guessed plaintext without the idempotency key.
    @Test func aRequestTagIsNoPlainHashAndDependsOnTheSecret() {
        let body = Array(#"{"content":{"narrative":"guess me"}}"#.utf8)
        let tag = KeyedBox.tag(body, secret: Array("key-1".utf8), context: Array("gw".utf8))
        // HMAC-SHA256 under HKDF-SHA256(the key, salt: the gateway, info: "amane-relay/v1 request tag"), computed apart
        // with Python's hmac and hashlib: a retry under a saved key matches only while this stays the same.
        #expect(Digest.hex(tag) == "69e8ef5b0224c180448a49f636344e35aa80090ef912b0ce2edc1a1bd99e4ef3")
        #expect(tag != Digest.sha256(body))
        #expect(tag != KeyedBox.tag(body, secret: Array("key-2".utf8), context: Array("gw".utf8)))
        #expect(tag != KeyedBox.tag(body, secret: Array("key-1".utf8), context: Array("gw2".utf8)))
    }
}
