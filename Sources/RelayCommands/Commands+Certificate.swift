import ArgumentParser
import Crypto
import Foundation
import RelayCore
import RelayFormat
import SwiftASN1
import X509

struct CertificateRequestInfo: Codable {
    var name: String
    var request: String
    var key: String
    var keyCreated: Bool
}

struct RequestCertificate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "request-certificate",
        abstract: "Make your client certificate's key here, and a request for your admin to sign.",
        discussion: """
            The key goes into the profile (its 'key', else client-key.pem; mode 0600) and never leaves this machine; \
            the request holds no secret. Your admin issues the certificate for it with `amane-relayd admin \
            enroll-responder NAME --sealing-key … --csr NAME.csr` (or `enroll-gateway`, or `reissue NAME --csr` to \
            renew) and gives back NAME-cert.pem and ca-cert.pem. Run it again to renew: it asks for the key you have. \
            Example: amane request-certificate amina
            """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Your name, as the admin enrolls it.") var name: String
    @Option(help: ArgumentHelp("Where to write the request (default NAME.csr here).", valueName: "file")) var out: String?

    func validate() throws {
        guard PrincipalName(rawValue: name) != nil else {
            throw ValidationError("'\(name)' is not a valid name: use letters, digits, '.', '_' and '-' (at most 64)")
        }
    }

    func run() async throws {
        let profile = try Profile.load(global.profile)
        let keyPath = profile.key ?? (profile.directory as NSString).appendingPathComponent("client-key.pem")
        let created = !FileManager.default.fileExists(atPath: keyPath)
        let key = created ? try makeKey(at: keyPath, profile: profile) : try existingKey(at: keyPath)
        let requestPath = out ?? "\(name).csr"
        let request = try CertificateSigningRequest(version: .v1, subject: DistinguishedName { CommonName(name) }, privateKey: key,
                                                    attributes: CertificateSigningRequest.Attributes())
        do {
            try Data(try request.serializeAsPEM().pemString.utf8).write(to: URL(fileURLWithPath: requestPath), options: .atomic)
        } catch {
            throw CLIError(.usage, "cannot write \(requestPath): \(error.localizedDescription)", hint: "Choose another place with --out.")
        }
        let info = CertificateRequestInfo(name: name, request: requestPath, key: keyPath, keyCreated: created)
        if global.json { return try Output.json(info) }
        print("""
            \(created ? "Made your client key in \(keyPath) (mode 0600); it stays on this machine." : "The request is for the key you have in \(keyPath).")
            Wrote the request to \(requestPath): it holds no secret. Give it to your admin with your sealing key's public line.
            When \(name)-cert.pem and ca-cert.pem come back, put them in \(profile.directory) and have config.yaml say:
              certificate: \(name)-cert.pem
              key: \(profile.key == nil ? "client-key.pem" : keyPath)
              ca: ca-cert.pem
            """)
    }

    private func makeKey(at path: String, profile: Profile) throws -> Certificate.PrivateKey {
        try FileManager.default.createDirectory(atPath: profile.directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        do { try SecretFile.createExclusive(at: path, contents: Array(try key.serializeAsPEM().pemString.utf8)) } catch {
            throw CLIError(.usage, "cannot write \(path): \(error)")
        }
        return key
    }

    private func existingKey(at path: String) throws -> Certificate.PrivateKey {
        try PrivateFile.check(path, "the client key")
        guard let pem = try? String(contentsOfFile: path, encoding: .utf8), let key = try? Certificate.PrivateKey(pemEncoded: pem) else {
            throw CLIError(.usage, "\(path) is not a PEM private key",
                           hint: "Point 'key:' in config.yaml at your client key, or move the file away to make a new key.")
        }
        return key
    }
}
