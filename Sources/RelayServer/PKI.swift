import Crypto
public import Foundation
import RelayAPI
import RelayCore
public import RelayFormat
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

    public static let validity: TimeInterval = 10 * 365 * 86_400
    public static let leafValidity: TimeInterval = 2 * 365 * 86_400

    /// A new CA with a P-256 key.
    public static func create(name: String, now: Date = Date()) throws -> CertificateAuthority {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let subject = try DistinguishedName {
            CommonName(name)
            OrganizationName("Amane Relay")
        }
        return try selfSigned(subject: subject, key: key, now: now, validity: validity)
    }

    /// The CA's certificate made again for the same key and name, valid for `validity` from `now`: every certificate
    /// the CA issued verifies under it as under the old one, so clients can take it in the old one's place at any time.
    public func renewed(now: Date = Date(), validity: TimeInterval = validity) throws -> CertificateAuthority {
        try Self.selfSigned(subject: certificate.subject, key: key, now: now, validity: validity)
    }

    private static func selfSigned(subject: DistinguishedName, key: Certificate.PrivateKey, now: Date, validity: TimeInterval) throws -> CertificateAuthority {
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

    /// What the admin who issues a certificate for `validity` from `now` must hear when it outlives the CA (it stays
    /// trusted past the CA's end only once `admin renew-ca` made the CA again for the same key); nil otherwise.
    /// - Throws: once the CA has ended: nothing it issues is trusted.
    public func checkLifetime(from now: Date = Date(), validity: TimeInterval = leafValidity) throws -> String? {
        let caEnd = String(Timestamp.iso8601(Int64(certificate.notValidAfter.timeIntervalSince1970)).prefix(10))
        guard certificate.notValidAfter > now else {
            throw CommandFailure("the relay's CA ended on \(caEnd), so nothing it issues is trusted: renew it first (`amane-relayd admin renew-ca`)")
        }
        guard now.addingTimeInterval(validity) > certificate.notValidAfter else { return nil }
        return "the certificate ends after the relay's CA (\(caEnd)); renew the CA before then (`amane-relayd admin renew-ca`), and it stays trusted"
    }

    /// What ops must hear of a CA that has ended or ends within 180 days (every client certificate and the server's
    /// then stop being trusted at once, and the new CA certificate must reach every client first); nil otherwise.
    static func expiryWarning(_ end: Date, now: Date = Date()) -> String? {
        let day = String(Timestamp.iso8601(Int64(end.timeIntervalSince1970)).prefix(10))
        let renew = "renew it with `amane-relayd admin renew-ca` and hand the new CA certificate to every gateway and member before then (Deploy/README.md, section 5)"
        if end <= now { return "the relay's CA certificate ended on \(day): no client trusts the relay, nor the relay a client; \(renew)" }
        let days = Int(end.timeIntervalSince(now) / 86_400)
        return days < 180 ? "the relay's CA certificate ends on \(day), in \(days) days; \(renew)" : nil
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
/// Its signature proves only that the sender holds the key, not who sent it: the fingerprint, read back, does that.
public enum SigningRequest {
    /// The request's public key, once its signature, key type and name check out.
    /// - Throws: `CommandFailure` naming what is wrong and what to do.
    public static func publicKey(_ contents: [UInt8], for name: String) throws -> Certificate.PublicKey {
        let request = try parse(contents, for: name)
        guard request.publicKey.isValidSignature(request.signature, for: request) else {
            throw CommandFailure("--csr: the request's signature does not verify: it was altered or damaged on its way; ask for a new one")
        }
        guard P256.Signing.PublicKey(request.publicKey) != nil || P384.Signing.PublicKey(request.publicKey) != nil else {
            throw CommandFailure("--csr: the request's key is not an ECDSA P-256 or P-384 key; `amane request-certificate \(name)` makes a P-256 one")
        }
        let names = request.subject.flatMap { $0 }.filter { $0.type == .RDNAttributeType.commonName }.map { String($0.value) }
        guard names.count == 1 else {
            throw CommandFailure("""
                --csr: the request must name one person (one CN), and it names \(names.count); make it with \
                `amane request-certificate \(name)` (openssl: -subj /CN=\(name))
                """)
        }
        guard let named = names[0] else { throw CommandFailure("--csr: the request's name (CN) is not text; make it with `amane request-certificate \(name)`") }
        guard named == name else {
            // The sender chose that text: shown only if it is a name, never as raw bytes on the admin's terminal.
            let other = PrincipalName(rawValue: named).map { "'\($0)'" } ?? "another name"
            throw CommandFailure("--csr: the request is for \(other), not '\(name)'; check that this is the right person's request")
        }
        return request.publicKey
    }

    /// PEM (what `amane` and openssl write) or DER; a certificate or a private key is named as such.
    private static func parse(_ contents: [UInt8], for name: String) throws -> CertificateSigningRequest {
        let text = String(decoding: contents, as: UTF8.self)
        guard text.contains("-----BEGIN ") else {
            guard let request = try? CertificateSigningRequest(derEncoded: contents) else {
                throw CommandFailure("--csr: not a certificate signing request (neither PEM nor DER); make one with `amane request-certificate \(name)`")
            }
            return request
        }
        if text.contains("PRIVATE KEY-----") {
            throw CommandFailure("""
                --csr: this file holds a private key, which must never leave its owner: have them make a new key and send only \
                the request (`amane request-certificate \(name) --new-key`)
                """)
        }
        guard text.contains("-----BEGIN CERTIFICATE REQUEST-----") || text.contains("-----BEGIN NEW CERTIFICATE REQUEST-----") else {
            throw CommandFailure(text.contains("-----BEGIN CERTIFICATE-----")
                ? "--csr: this is a certificate, not a request for one; ask for the .csr that `amane request-certificate \(name)` writes"
                : "--csr: not a PEM certificate signing request (BEGIN CERTIFICATE REQUEST)")
        }
        guard let document = try? PEMDocument(pemString: text), let request = try? CertificateSigningRequest(derEncoded: document.derBytes) else {
            throw CommandFailure("--csr: the request is damaged (it does not parse), or its key is of a kind the relay does not take; ask for a new one")
        }
        return request
    }
}

extension SPKIFingerprint {
    public static func of(certificatePEM: String) throws -> String {
        try of(Certificate(pemEncoded: certificatePEM))
    }

    public static func of(_ certificate: Certificate) throws -> String {
        try of(certificate.publicKey)
    }

    public static func of(_ key: Certificate.PublicKey) throws -> String {
        var serializer = DER.Serializer()
        try serializer.serialize(key)
        return of(spki: serializer.serializedBytes)
    }
}

/// Writes files the relay creates: secrets with mode 0600, never replacing an existing one.
enum RelayFiles {
    static func writeSecret(_ text: String, to path: String) throws {
        try SecretFile.createExclusive(at: path, contents: Array(lines(text).utf8))
    }

    static func writePublic(_ text: String, to path: String) throws {
        try Data(lines(text).utf8).write(to: URL(fileURLWithPath: path), options: .withoutOverwriting)
        try makeReadable(path)
    }

    /// Replaces a public file in one step: a reader sees the old file or the new one, never half of it.
    static func replacePublic(_ text: String, to path: String) throws {
        try Data(lines(text).utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        try makeReadable(path)
    }

    /// PEM text ends with a newline, so that `cat a.pem b.pem` makes a bundle.
    private static func lines(_ text: String) -> String {
        text.hasSuffix("\n") ? text : text + "\n"
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

    /// Gives `path` to the owner of `directory` when root made it there: the service user must reach it later.
    static func ownLike(_ directory: String, _ path: String) throws {
        guard getuid() == 0 else { return }
        let owner = try FileManager.default.attributesOfItem(atPath: directory)
        guard let uid = (owner[.ownerAccountID] as? NSNumber)?.uint32Value, let gid = (owner[.groupOwnerAccountID] as? NSNumber)?.uint32Value,
              chown(path, uid, gid) == 0 else {
            throw CommandFailure("cannot give \(path) to the owner of \(directory): \(String(cString: strerror(errno)))")
        }
    }

    static func makeDirectory(_ path: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch let error as CocoaError {
            throw CommandFailure("cannot create the folder \(path): \(reason(error)) (running as uid \(getuid()))")
        }
    }

    /// Foundation's own text ("You don't have permission.") names neither the file nor what to do; its error dumps are worse.
    static func reason(_ error: CocoaError) -> String {
        switch error.code {
        case .fileWriteNoPermission, .fileReadNoPermission: "permission denied"
        case .fileWriteVolumeReadOnly: "read-only file system"
        case .fileWriteOutOfSpace: "no space left on the disk"
        case .fileWriteFileExists: "a file of that name is in the way"
        default: error.localizedDescription
        }
    }
}

extension RelayConfiguration {
    /// Gateways and members verify the relay, and are verified, with one CA (tls.caFile, handed to each of them): a
    /// file holding no CA that signed the server certificate would refuse every client at the handshake.
    /// - Returns: when the CA that signed the server certificate ends (the latest, if tls.caFile holds it renewed).
    @discardableResult
    func checkClientCA(caPEM: String? = nil) throws -> Date? {
        let caPEM = try caPEM ?? Self.read(caFile, key: "tls.caFile")
        let authorities = ((try? PEMDocument.parseMultiple(pemString: caPEM)) ?? [])
            .filter { $0.discriminator == "CERTIFICATE" }.compactMap { try? Certificate(pemDocument: $0) }
        guard !authorities.isEmpty else { throw Invalid(key: "tls.caFile", reason: "no PEM certificate in \(caFile)") }
        // A server certificate that does not parse is named by the TLS setup.
        let chainPEM = try Self.read(certificateFile, key: "tls.certificateFile")
        guard let server = try? PEMDocument.parseMultiple(pemString: chainPEM).first.map({ try Certificate(pemDocument: $0) }) else { return nil }
        let signers = authorities.filter { $0.subject == server.issuer && $0.publicKey.isValidSignature(server.signature, for: server) }
        guard let end = signers.map(\.notValidAfter).max() else {
            throw Invalid(key: "tls.caFile", reason: """
                \(caFile) holds no CA that signed the server certificate \(certificateFile): clients verify the relay, and are verified, \
                with this one CA, so every client would be refused; give the CA that signed both (pki/ca-cert.pem from `amane-relayd init`)
                """)
        }
        return end
    }
}

extension DistinguishedName {
    /// The common names it holds, in order.
    var commonNames: [String] {
        flatMap { $0 }.filter { $0.type == .RDNAttributeType.commonName }.compactMap { String($0.value) }
    }
}
