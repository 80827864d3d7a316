import Foundation
import Logging
import RelayCore
import RelayFormat
import RelayStore

/// `--dev`: a self-contained relay in a local folder, with its own CA, a demo gateway, a demo responder and
/// supervisor, and a first epoch. Everything is made once and reused. Never for production.
enum DevEnvironment {
    static let passphrase = "amane-dev-passphrase"
    static let demoPrincipals: [(name: String, role: Role, folder: String)] = [
        ("demo-gateway", .gateway, "gateway"), ("demo-responder", .responder, "responder"), ("demo-supervisor", .supervisor, "supervisor"),
    ]

    /// Creates the CA and server certificate if they are missing.
    static func preparePKI(_ configuration: RelayConfiguration) throws {
        guard !FileManager.default.fileExists(atPath: configuration.caFile) else { return }
        try RelayFiles.makeDirectory((configuration.caFile as NSString).deletingLastPathComponent)
        let ca = try CertificateAuthority.create(name: "Amane Relay development CA")
        try RelayFiles.writePublic(try ca.certificatePEM, to: configuration.caFile)
        try RelayFiles.writeSecret(try ca.keyPEM, to: configuration.caKeyFile)
        let server = try ca.issue(commonName: "localhost", usage: .server(hostnames: ["localhost", "127.0.0.1", "::1"]))
        try RelayFiles.writePublic(server.certificate, to: configuration.certificateFile)
        try RelayFiles.writeSecret(server.key, to: configuration.privateKeyFile)
    }

    static func folder(_ configuration: RelayConfiguration, _ name: String) -> String {
        ((configuration.dataDirectory as NSString).appendingPathComponent("dev") as NSString).appendingPathComponent(name)
    }

    /// Enrolls the demo principals and the first epoch if the database has no principals yet.
    static func populate(_ db: RelayDatabase, configuration: RelayConfiguration) async throws {
        try await db.ensureQueue(.national, actor: .admin("dev"))
        guard try await db.principals().isEmpty else { return }
        let ca = try configuration.certificateAuthority()
        var members: [(Principal, SealingPrivateKey)] = []
        for demo in demoPrincipals {
            let directory = folder(configuration, demo.folder)
            try RelayFiles.makeDirectory(directory)
            let key = SealingPrivateKey.generate()
            try IdentityFile.create(at: (directory as NSString).appendingPathComponent("identity.amane"), key: key, passphrase: Array(passphrase.utf8))
            try RelayFiles.writeSecret(passphrase + "\n", to: (directory as NSString).appendingPathComponent("passphrase"))
            let issuedAt = Date()
            let issued = try ca.issue(commonName: demo.name, usage: .client, now: issuedAt)
            let (certPath, keyPath) = demo.role == .gateway
                ? (folder(configuration, "gateway-cert.pem"), folder(configuration, "gateway-key.pem"))
                : ((directory as NSString).appendingPathComponent("cert.pem"), (directory as NSString).appendingPathComponent("key.pem"))
            try RelayFiles.writePublic(issued.certificate, to: certPath)
            try RelayFiles.writeSecret(issued.key, to: keyPath)
            let principal = try await db.enroll(name: PrincipalName(rawValue: demo.name)!, role: demo.role,
                                                spkiFingerprint: try SPKIFingerprint.of(certificatePEM: issued.certificate),
                                                sealingKey: key.publicKey.text,
                                                certificateEndsAt: Int64(issuedAt.addingTimeInterval(CertificateAuthority.leafValidity).timeIntervalSince1970),
                                                actor: .admin("dev"))
            if demo.role.isMember { members.append((principal, key)) }
        }
        let epoch = SealingPrivateKey.generate()
        var grants: [String: [UInt8]] = [:]
        for (member, key) in members { grants[member.name.rawValue] = try Grant.seal(epoch, to: key.publicKey) }
        _ = try await db.createEpoch(queue: .national, publicKey: epoch.publicKey.text, grants: grants, actor: StoreActor(members[0].0))
    }

    /// Writes each demo profile's `config.yaml` with the relay's current address.
    static func writeProfiles(_ configuration: RelayConfiguration, port: Int) throws {
        let host = configuration.listen.host == "0.0.0.0" ? "127.0.0.1" : configuration.listen.host
        let url = "https://\(RelayConfiguration.Address(host: host, port: port))"
        let ca = (configuration.caFile as NSString).standardizingPath
        for demo in demoPrincipals {
            let directory = (folder(configuration, demo.folder) as NSString).standardizingPath
            let absolute = directory.hasPrefix("/") ? directory : FileManager.default.currentDirectoryPath + "/" + directory
            let base = absolute as NSString
            let (cert, key) = demo.role == .gateway
                ? ((base.deletingLastPathComponent as NSString).appendingPathComponent("gateway-cert.pem"), (base.deletingLastPathComponent as NSString).appendingPathComponent("gateway-key.pem"))
                : (base.appendingPathComponent("cert.pem"), base.appendingPathComponent("key.pem"))
            let caAbsolute = ca.hasPrefix("/") ? ca : FileManager.default.currentDirectoryPath + "/" + ca
            let text = """
                # Amane profile for \(demo.name), written by amane-relayd --dev. Development only.
                relay: \(url)
                ca: \(caAbsolute)
                certificate: \(cert)
                key: \(key)
                identity: \(base.appendingPathComponent("identity.amane"))
                passphraseFile: \(base.appendingPathComponent("passphrase"))

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
