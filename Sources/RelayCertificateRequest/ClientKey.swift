import Crypto
import Foundation
import RelayFormat
import SwiftASN1
import X509

/// The key of a client certificate, made and kept on its owner's machine, and the signing request that asks the
/// relay's CA for a certificate without the key ever leaving. Only ECDSA P-256 and P-384 keys are taken, as the relay does.
public struct ClientKey: Sendable {
    private let key: Certificate.PrivateKey

    public enum Failure: Error, Equatable {
        case notAKey
        /// An RSA, Ed25519 or other key: the relay signs only P-256 and P-384 ones.
        case unsupported
    }

    /// A new P-256 key.
    public static func generate() -> ClientKey {
        ClientKey(key: Certificate.PrivateKey(P256.Signing.PrivateKey()))
    }

    /// A key from its PEM text.
    public init(pem: String) throws(Failure) {
        guard let key = try? Certificate.PrivateKey(pemEncoded: pem) else { throw .notAKey }
        guard P256.Signing.PublicKey(key.publicKey) != nil || P384.Signing.PublicKey(key.publicKey) != nil else { throw .unsupported }
        self.key = key
    }

    private init(key: Certificate.PrivateKey) {
        self.key = key
    }

    public var pem: String {
        get throws { try key.serializeAsPEM().pemString + "\n" }
    }

    /// SHA-256 of the public key's SubjectPublicKeyInfo, hex: what the relay prints when it signs the request.
    public var fingerprint: String {
        get throws {
            var serializer = DER.Serializer()
            try serializer.serialize(key.publicKey)
            return SPKIFingerprint.of(spki: serializer.serializedBytes)
        }
    }

    /// Whether a PEM certificate is for the key in `keyPEM` (any kind of key); nil when either does not parse.
    public static func certificate(_ certificatePEM: String, isForKey keyPEM: String) -> Bool? {
        guard let certificate = try? Certificate(pemEncoded: certificatePEM), let key = try? Certificate.PrivateKey(pemEncoded: keyPEM) else {
            return nil
        }
        return certificate.publicKey == key.publicKey
    }

    /// A PEM signing request for a certificate naming `name` (its CN), signed with this key.
    public func signingRequest(name: String) throws -> String {
        let request = try CertificateSigningRequest(version: .v1, subject: DistinguishedName { CommonName(name) }, privateKey: key,
                                                    attributes: CertificateSigningRequest.Attributes())
        return try request.serializeAsPEM().pemString + "\n"
    }
}
