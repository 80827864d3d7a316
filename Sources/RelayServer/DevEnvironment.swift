import Foundation
import Logging
import RelayCore
import RelayFormat
import RelayStore
import X509

/// `--dev`: a self-contained relay in a local folder, with its own CA, a demo gateway, a demo responder and
/// supervisor, and a first epoch. Everything is made once and reused. Never for production.
enum DevEnvironment {
    static let passphrase = "amane-dev-passphrase"
    static let caName = "Amane Relay development CA"
    static let demoPrincipals: [(name: String, role: Role, folder: String)] = [
        ("demo-gateway", .gateway, "gateway"), ("demo-responder", .responder, "responder"), ("demo-supervisor", .supervisor, "supervisor"),
    ]

    /// Creates the CA and server certificate if they are missing. The CA certificate comes last: a start stopped
    /// before it leaves files this refuses rather than overwrites.
    static func preparePKI(_ configuration: RelayConfiguration) throws {
        guard !FileManager.default.fileExists(atPath: configuration.caFile) else { return }
        let leftovers = [configuration.caKeyFile, configuration.certificateFile, configuration.privateKeyFile].filter(FileManager.default.fileExists)
        guard leftovers.isEmpty else {
            throw CommandFailure("""
                \(leftovers.joined(separator: ", ")) exist without the CA certificate \(configuration.caFile): a first --dev start \
                stopped before it was done. Delete those files and start again.
                """)
        }
        try RelayFiles.makeDirectory((configuration.caFile as NSString).deletingLastPathComponent)
        let ca = try CertificateAuthority.create(name: caName)
        try RelayFiles.writeSecret(try ca.keyPEM, to: configuration.caKeyFile)
        let server = try ca.issue(commonName: "localhost", usage: .server(hostnames: ["localhost", "127.0.0.1", "::1"]))
        try RelayFiles.writeSecret(server.key, to: configuration.privateKeyFile)
        try RelayFiles.writePublic(server.certificate, to: configuration.certificateFile)
        try RelayFiles.writePublic(try ca.certificatePEM, to: configuration.caFile)
    }

    static func folder(_ configuration: RelayConfiguration, _ name: String) -> String {
        ((configuration.dataDirectory as NSString).appendingPathComponent("dev") as NSString).appendingPathComponent(name)
    }

    /// A demo principal's files: its identity and passphrase, its client certificate and key.
    static func files(_ configuration: RelayConfiguration, _ demo: (name: String, role: Role, folder: String)) -> [String] {
        let directory = folder(configuration, demo.folder) as NSString
        let (certificate, key) = demo.role == .gateway
            ? (folder(configuration, "gateway-cert.pem"), folder(configuration, "gateway-key.pem"))
            : (directory.appendingPathComponent("cert.pem"), directory.appendingPathComponent("key.pem"))
        return [directory.appendingPathComponent("identity.amane"), directory.appendingPathComponent("passphrase"), certificate, key]
    }

    /// Enrolls each demo principal not enrolled yet, then makes the first epoch if the queue has none: a first
    /// start stopped halfway is finished by the next one. A relay whose CA is not the development one `preparePKI`
    /// made (one `init` made, for production) is left as it is: returns false then.
    static func populate(_ db: RelayDatabase, configuration: RelayConfiguration) async throws -> Bool {
        let ca = try configuration.certificateAuthority()
        guard ca.certificate.subject.commonNames == [caName] else { return false }
        try await db.ensureQueue(.national, actor: .admin("dev"))
        let enrolled = Set(try await db.principals().map(\.name.rawValue))
        for demo in demoPrincipals where !enrolled.contains(demo.name) {
            let paths = files(configuration, demo)
            try RelayFiles.makeDirectory(folder(configuration, demo.folder))
            // Left by a start stopped before this principal was enrolled: nothing refers to them.
            for path in paths where FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
            let key = SealingPrivateKey.generate()
            try IdentityFile.create(at: paths[0], key: key, passphrase: Array(passphrase.utf8))
            try RelayFiles.writeSecret(passphrase + "\n", to: paths[1])
            let issuedAt = Date()
            let issued = try ca.issue(commonName: demo.name, usage: .client, now: issuedAt)
            try RelayFiles.writePublic(issued.certificate, to: paths[2])
            try RelayFiles.writeSecret(issued.key, to: paths[3])
            _ = try await db.enroll(name: PrincipalName(rawValue: demo.name)!, role: demo.role,
                                    spkiFingerprint: try SPKIFingerprint.of(certificatePEM: issued.certificate),
                                    sealingKey: key.publicKey.text,
                                    certificateEndsAt: Int64(issuedAt.addingTimeInterval(CertificateAuthority.leafValidity).timeIntervalSince1970),
                                    actor: .admin("dev"))
        }
        guard try db.currentEpoch(queue: .national) == nil else { return true }
        let demoNames = Set(demoPrincipals.map(\.name))
        let members = try await db.principals().filter { demoNames.contains($0.name.rawValue) && $0.role.isMember && $0.isActive }
        let epoch = SealingPrivateKey.generate()
        var grants: [String: [UInt8]] = [:]
        for member in members {
            guard let key = member.sealingKey.flatMap({ try? SealingPublicKey(text: $0) }) else { continue }
            grants[member.name.rawValue] = try Grant.seal(epoch, to: key)
        }
        guard let first = members.first else { throw CommandFailure("no active demo responder or supervisor to hold the first key") }
        _ = try await db.createEpoch(queue: .national, publicKey: epoch.publicKey.text, grants: grants, actor: StoreActor(first))
        return true
    }

    /// Writes each demo profile's `config.yaml` with the relay's current address.
    static func writeProfiles(_ configuration: RelayConfiguration, port: Int) throws {
        let host = configuration.listen.host == "0.0.0.0" ? "127.0.0.1" : configuration.listen.host
        let url = "https://\(RelayConfiguration.Address(host: host, port: port))"
        let absolute = { (path: String) -> String in
            let standard = (path as NSString).standardizingPath
            return standard.hasPrefix("/") ? standard : FileManager.default.currentDirectoryPath + "/" + standard
        }
        for demo in demoPrincipals {
            let base = absolute(folder(configuration, demo.folder)) as NSString
            let paths = files(configuration, demo).map(absolute)
            let text = """
                # Amane profile for \(demo.name), written by amane-relayd --dev. Development only.
                relay: \(url)
                ca: \(absolute(configuration.caFile))
                certificate: \(paths[2])
                key: \(paths[3])
                identity: \(paths[0])
                passphraseFile: \(paths[1])

                """
            try Data(text.utf8).write(to: URL(fileURLWithPath: base.appendingPathComponent("config.yaml")))
        }
    }

    static func banner(_ configuration: RelayConfiguration, port: Int, opsPort: Int) -> String {
        let dev = (configuration.dataDirectory as NSString).appendingPathComponent("dev")
        let pki = (configuration.dataDirectory as NSString).appendingPathComponent("pki")
        let host = configuration.listen.host == "0.0.0.0" ? "127.0.0.1" : configuration.listen.host
        let url = "https://\(RelayConfiguration.Address(host: host, port: port))"
        return """

            Amane Relay (development) is listening on \(url)
            Data: \(configuration.dataDirectory)  (CA and server certificate in \(pki), demo profiles in \(dev))

            Submit a disclosure as the demo gateway:
              curl --cacert \(pki)/ca-cert.pem --cert \(dev)/gateway-cert.pem --key \(dev)/gateway-key.pem \\
                -H 'Content-Type: application/json' -H "Idempotency-Key: $(cat /proc/sys/kernel/random/uuid)" \\
                --data @seeds/demo/06-fr-missing-daughter-casablanca.json \(url)/v1/disclosures

            Read the queue as the demo responder (the amane CLI):
              AMANE_HOME=\(dev)/responder amane inbox

            Health and metrics (plain HTTP, loopback only): http://\(RelayConfiguration.Address(host: configuration.opsListen.host, port: opsPort))/metrics

            """
    }
}
