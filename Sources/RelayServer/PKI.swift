import Crypto
public import Foundation
import RelayFormat
import RelayStore
import SwiftASN1
#if canImport(Glibc)
import Glibc
#endif
public import X509

/// The relay's own certificate authority: it issues the server certificate and every client certificate.
public struct CertificateAuthority: Sendable {
    public let certificate: Certificate
    let key: Certificate.PrivateKey

    static let validity: TimeInterval = 10 * 365 * 86_400
    public static let leafValidity: TimeInterval = 2 * 365 * 86_400

    /// A new CA with a P-256 key.
    public static func create(name: String, now: Date = Date()) throws -> CertificateAuthority {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let subject = try DistinguishedName {
            CommonName(name)
            OrganizationName("Amane Relay")
        }
        let certificate = try Certificate(
            version: .v3, serialNumber: Self.serialNumber(), publicKey: key.publicKey,
            notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(validity),
            issuer: subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(digitalSignature: true, keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: key.publicKey)
            },
            issuerPrivateKey: key)
        return CertificateAuthority(certificate: certificate, key: key)
    }

    /// A random 20-byte serial whose first byte keeps it positive, as RFC 5280 asks.
    static func serialNumber() -> Certificate.SerialNumber {
        var generator = SystemRandomNumberGenerator()
        var bytes = (0..<20).map { _ in UInt8.random(in: 0...255, using: &generator) }
        bytes[0] = (bytes[0] & 0x7f) | 0x01
        return Certificate.SerialNumber(bytes: bytes)
    }

    /// - Throws: when the key is not the certificate's: whatever it signed, no client or gateway would trust.
    public init(certificatePEM: String, keyPEM: String) throws {
        let certificate = try Certificate(pemEncoded: certificatePEM), key = try Certificate.PrivateKey(pemEncoded: keyPEM)
        guard key.publicKey == certificate.publicKey else {
            throw CommandFailure("the CA key is not the key of the CA certificate; bring back the key that `amane-relayd init` made with it")
        }
        self.init(certificate: certificate, key: key)
    }

    init(certificate: Certificate, key: Certificate.PrivateKey) {
        self.certificate = certificate
        self.key = key
    }

    public enum Usage: Sendable { case server(hostnames: [String]), client }

    /// Issues a leaf certificate with a fresh P-256 key; returns certificate and key as PEM.
    public func issue(commonName: String, usage: Usage, now: Date = Date(), validity: TimeInterval = leafValidity) throws -> (certificate: String, key: String) {
        let leafKey = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let certificate = try issue(commonName: commonName, usage: usage, for: leafKey.publicKey, now: now, validity: validity)
        return (certificate, try leafKey.serializeAsPEM().pemString)
    }

    /// Issues a leaf certificate for a key that already exists; returns it as PEM.
    public func issue(commonName: String, usage: Usage, for publicKey: Certificate.PublicKey, now: Date = Date(),
                      validity: TimeInterval = leafValidity) throws -> String {
        let certificate = try Certificate(
            version: .v3, serialNumber: Self.serialNumber(), publicKey: publicKey,
            notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(validity),
            issuer: self.certificate.subject, subject: try DistinguishedName { CommonName(commonName) },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                switch usage {
                case .server(let hostnames):
                    try ExtendedKeyUsage([.serverAuth])
                    SubjectAlternativeNames(hostnames.map(Self.generalName))
                case .client:
                    try ExtendedKeyUsage([.clientAuth])
                }
                AuthorityKeyIdentifier(keyIdentifier: SubjectKeyIdentifier(hash: key.publicKey).keyIdentifier)
            },
            issuerPrivateKey: key)
        return try certificate.serializeAsPEM().pemString
    }

    static func generalName(_ host: String) -> GeneralName {
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            return .ipAddress(ASN1OctetString(contentBytes: withUnsafeBytes(of: v4) { ArraySlice($0) }))
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            return .ipAddress(ASN1OctetString(contentBytes: withUnsafeBytes(of: v6) { ArraySlice($0) }))
        }
        return .dnsName(host)
    }

    public var certificatePEM: String { get throws { try certificate.serializeAsPEM().pemString } }
    public var keyPEM: String { get throws { try key.serializeAsPEM().pemString } }
}

/// A certificate signing request from the person's own machine: the key behind it never leaves there.
public enum SigningRequest {
    /// The request's public key, once its signature proves the sender holds the private key.
    /// - Throws: `CommandFailure` naming what is wrong: not a request, a forged one, a key TLS here does not take,
    ///   or a request made for someone else.
    public static func publicKey(pem: String, for name: String) throws -> Certificate.PublicKey {
        let request: CertificateSigningRequest
        do { request = try CertificateSigningRequest(pemEncoded: pem) } catch {
            throw CommandFailure("--csr: not a PEM certificate signing request (BEGIN CERTIFICATE REQUEST); make one with `amane request-certificate \(name)`")
        }
        guard request.publicKey.isValidSignature(request.signature, for: request) else {
            throw CommandFailure("--csr: the request's signature does not match its key; it was altered or made wrongly, so ask for a new one")
        }
        guard P256.Signing.PublicKey(request.publicKey) != nil || P384.Signing.PublicKey(request.publicKey) != nil else {
            throw CommandFailure("--csr: the request's key is not an ECDSA P-256 or P-384 key; `amane request-certificate \(name)` makes a P-256 one")
        }
        let named = request.subject.flatMap { $0 }.filter { $0.type == .RDNAttributeType.commonName }.map { String($0.value) ?? String(describing: $0.value) }
        if let other = named.first(where: { $0 != name }) {
            throw CommandFailure("--csr: the request is for '\(other)', not '\(name)'; check that this is the right person's request")
        }
        return request.publicKey
    }
}

/// SHA-256 of a certificate's SubjectPublicKeyInfo, hex: how principals are found.
public enum SPKIFingerprint {
    public static func of(certificatePEM: String) throws -> String {
        try of(Certificate(pemEncoded: certificatePEM))
    }

    public static func of(_ certificate: Certificate) throws -> String {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate.publicKey)
        return of(spki: serializer.serializedBytes)
    }

    public static func of(spki: [UInt8]) -> String {
        Digest.hex(Digest.sha256(spki))
    }
}

/// Writes files the relay creates: secrets with mode 0600, never replacing an existing one.
enum RelayFiles {
    static func writeSecret(_ text: String, to path: String) throws {
        try SecretFile.createExclusive(at: path, contents: Array(text.utf8))
    }

    static func writePublic(_ text: String, to path: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .withoutOverwriting)
        try makeReadable(path)
    }

    /// Replaces a public file in one step: a reader sees the old file or the new one, never half of it.
    static func replacePublic(_ text: String, to path: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        try makeReadable(path)
    }

    /// Certificates are public: readable by all despite the tools' private umask.
    private static func makeReadable(_ path: String) throws {
        guard chmod(path, 0o644) == 0 else { throw CommandFailure("cannot make \(path) readable: \(String(cString: strerror(errno)))") }
    }

    /// What other users could read of the relay's own files: warnings for ops, since systemd's tmpfiles and
    /// `init` make them private and a later chmod or copy may not.
    static func openToOthers(_ configuration: RelayConfiguration) -> [String] {
        let database = (configuration.dataDirectory as NSString).appendingPathComponent(RelayDatabase.fileName)
        var files = [(configuration.dataDirectory, "the data directory", 0o700), (database, "the database", 0o600)]
        if configuration.caKeyPEM == nil { files.append((configuration.caKeyFile, "the CA key (whoever reads it can issue certificates)", 0o600)) }
        return files.compactMap { path, name, wanted in
            SecretFile.openToOthers(path).map { "\(name) \(path) is open to other users (mode \(String($0, radix: 8))); run chmod \(String(wanted, radix: 8)) \(path)" }
        }
    }

    static func makeDirectory(_ path: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch let error as CocoaError {
            // Foundation's own text ("You don't have permission.") names neither the folder nor who lacks it.
            let reason = switch error.code {
            case .fileWriteNoPermission: "permission denied"
            case .fileWriteVolumeReadOnly: "read-only file system"
            case .fileWriteOutOfSpace: "no space left on the disk"
            case .fileWriteFileExists: "a file of that name is in the way"
            default: error.localizedDescription
            }
            throw CommandFailure("cannot create the folder \(path): \(reason) (running as uid \(getuid()))")
        }
    }
}
