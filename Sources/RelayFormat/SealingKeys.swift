public import Foundation
import Crypto

/// The 16-byte id of a public sealing key: the start of its SHA-256 fingerprint.
/// An epoch's id is the id of its key, so an envelope names the key it was sealed to.
public typealias KeyID = UUID

/// A public HPKE key that objects can be sealed to: an epoch key, a responder's or a gateway's.
public struct SealingPublicKey: Sendable, Hashable {
    public let suite: SealingSuite
    public let rawRepresentation: [UInt8]

    /// - Throws: `malformed` when the bytes are not a key of that suite.
    public init(suite: SealingSuite, rawRepresentation: some Collection<UInt8>) throws(FormatError) {
        let bytes = Array(rawRepresentation)
        guard bytes.count == suite.publicKeyLength else { throw FormatError(.malformed, "wrong public key length") }
        do {
            switch suite {
            case .xwingAESGCM: _ = try XWingMLKEM768X25519.PublicKey(rawRepresentation: bytes)
            case .x25519ChaChaPoly: _ = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: bytes)
            }
        } catch {
            throw FormatError(.malformed, "not a valid public key")
        }
        self.suite = suite
        self.rawRepresentation = bytes
    }

    /// SHA-256 over the suite name and the key: the basis of the id and the fingerprint.
    var digest: [UInt8] {
        var hasher = SHA256()
        hasher.update(data: Array(suite.description.utf8) + [0])
        hasher.update(data: rawRepresentation)
        return Array(hasher.finalize())
    }

    public var id: KeyID {
        let d = digest
        return UUID(uuid: (d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7],
                           d[8], d[9], d[10], d[11], d[12], d[13], d[14], d[15]))
    }

    func makeSender(info: [UInt8]) throws -> HPKE.Sender {
        switch suite {
        case .xwingAESGCM:
            let key = try XWingMLKEM768X25519.PublicKey(rawRepresentation: rawRepresentation)
            return try HPKE.Sender(recipientKey: key, ciphersuite: suite.hpke, info: Data(info))
        case .x25519ChaChaPoly:
            let key = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: rawRepresentation)
            return try HPKE.Sender(recipientKey: key, ciphersuite: suite.hpke, info: Data(info))
        }
    }
}

/// A private HPKE key. Its bytes never reach a log or a description.
public struct SealingPrivateKey: Sendable {
    public let suite: SealingSuite
    public let publicKey: SealingPublicKey
    private let secret: SymmetricKey

    /// Creates a fresh key pair from the system's random generator.
    public static func generate(suite: SealingSuite = .default) -> SealingPrivateKey {
        let seed = SymmetricKey(size: .bits256)
        // A fresh 32-byte seed is always a valid key for both suites.
        return try! SealingPrivateKey(suite: suite, seed: seed)
    }

    /// Restores a key from its 32-byte seed.
    public init(suite: SealingSuite, rawRepresentation: some Collection<UInt8>) throws(FormatError) {
        let bytes = Array(rawRepresentation)
        guard bytes.count == suite.privateKeyLength else { throw FormatError(.malformed, "wrong private key length") }
        try self.init(suite: suite, seed: SymmetricKey(data: bytes))
    }

    private init(suite: SealingSuite, seed: SymmetricKey) throws(FormatError) {
        let publicBytes: [UInt8]
        do {
            publicBytes = try seed.withUnsafeBytes { raw in
                switch suite {
                case .xwingAESGCM:
                    Array(try XWingMLKEM768X25519.PrivateKey(seedRepresentation: Array(raw), publicKey: nil).publicKey.rawRepresentation)
                case .x25519ChaChaPoly:
                    Array(try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: raw).publicKey.rawRepresentation)
                }
            }
        } catch {
            throw FormatError(.malformed, "not a valid private key")
        }
        self.suite = suite
        self.secret = seed
        self.publicKey = try SealingPublicKey(suite: suite, rawRepresentation: publicBytes)
    }

    public var id: KeyID { publicKey.id }

    /// The seed, for sealing into a grant or an identity file only.
    package var rawRepresentation: [UInt8] { secret.withUnsafeBytes { Array($0) } }

    func makeRecipient(info: [UInt8], encapsulatedKey: [UInt8]) throws -> HPKE.Recipient {
        try secret.withUnsafeBytes { raw in
            switch suite {
            case .xwingAESGCM:
                let key = try XWingMLKEM768X25519.PrivateKey(seedRepresentation: Array(raw), publicKey: nil)
                return try HPKE.Recipient(privateKey: key, ciphersuite: suite.hpke, info: Data(info), encapsulatedKey: Data(encapsulatedKey))
            case .x25519ChaChaPoly:
                let key = try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: raw)
                return try HPKE.Recipient(privateKey: key, ciphersuite: suite.hpke, info: Data(info), encapsulatedKey: Data(encapsulatedKey))
            }
        }
    }
}

extension SealingPrivateKey: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String { "SealingPrivateKey(\(suite), id: \(id))" }
    public var debugDescription: String { description }
    /// `dump` and `Mirror` see its suite and id, never the field that holds the secret.
    public var customMirror: Mirror { Mirror(self, children: ["suite": suite, "id": id]) }
}
