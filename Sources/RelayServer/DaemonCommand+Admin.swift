import ArgumentParser
import Foundation
import RelayAPI
import RelayCore
import RelayFormat
import RelayStore
import SwiftASN1
import X509

struct Init: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create a production data directory: the database, the relay's CA and its server certificate.",
        discussion: """
            The server certificate names every --hostname; without one, localhost, 127.0.0.1, ::1 and this machine's \
            host name. Example: amane-relayd init --data-dir /var/lib/amane-relay --hostname relay.example.org
            """)

    @OptionGroup var common: CommonOptions

    @Option(name: .customLong("hostname"), help: ArgumentHelp("A name or address clients use to reach the relay; repeat for several.", valueName: "name"))
    var hostnames: [String] = []

    func validate() throws { try Admin.checkHostnames(hostnames) }

    func run() async throws {
        let configuration = try await common.load()
        guard !FileManager.default.fileExists(atPath: configuration.caFile) else {
            throw CommandFailure("\(configuration.caFile) exists: this data directory is already initialised")
        }
        // A new CA beside a key or a database left in place (a restore) would make a relay that no certificate fits.
        let database = (configuration.dataDirectory as NSString).appendingPathComponent(RelayDatabase.fileName)
        let leftInPlace = [database, configuration.caKeyFile, configuration.certificateFile, configuration.privateKeyFile]
            .filter { FileManager.default.fileExists(atPath: $0) }
        guard leftInPlace.isEmpty else {
            throw CommandFailure("""
                \(leftInPlace.joined(separator: ", ")) \(leftInPlace.count == 1 ? "exists" : "exist") but \(configuration.caFile) does not, and init makes a new CA: \
                nothing was written. To bring a relay back, put back its whole pki folder (the CA certificate with its key) from where you keep \
                it; to start a new relay, move \(leftInPlace.count == 1 ? "it" : "them") aside first.
                """)
        }
        try RelayFiles.makeDirectory(configuration.dataDirectory)
        try RelayFiles.makeDirectory((configuration.caFile as NSString).deletingLastPathComponent)
        let ca = try CertificateAuthority.create(name: "Amane Relay CA")
        try RelayFiles.writePublic(try ca.certificatePEM, to: configuration.caFile)
        try RelayFiles.writeSecret(try ca.keyPEM, to: configuration.caKeyFile)
        let names = hostnames.isEmpty ? ["localhost", "127.0.0.1", "::1", ProcessInfo.processInfo.hostName].filter(Admin.isHostname) : hostnames
        let server = try ca.issue(commonName: names[0], usage: .server(hostnames: names))
        try RelayFiles.writePublic(server.certificate, to: configuration.certificateFile)
        try RelayFiles.writeSecret(server.key, to: configuration.privateKeyFile)
        let taxonomyLoaded = try await common.withStore(configuration, creating: true) { db in
            try await db.ensureQueue(.national, actor: .admin(Admin.user))
            return !db.taxonomy.codes.isEmpty
        }
        if !taxonomyLoaded {
            Console.warn("""
                no taxonomy read from \(configuration.seedsDirectory)/taxonomy.yaml (missing or unreadable), so the database holds none yet: the relay loads it at its \
                first start, from seeds.directory (it refuses to start without it)
                """)
        }
        print("""
            Initialised \(configuration.dataDirectory):
              CA certificate  \(configuration.caFile)  (give it to every gateway and responder)
              CA key          \(configuration.caKeyFile)  (mode 0600; keep it offline or as a systemd credential)
              server          \(configuration.certificateFile) for \(names.joined(separator: ", "))
            Next: enroll a gateway and a responder with `amane-relayd admin enroll-gateway` and `admin enroll-responder`.
            """)
    }
}

struct Admin: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Enroll, revoke and list principals, verify the audit trail, and purge what retention lets go.",
        subcommands: [EnrollGateway.self, EnrollResponder.self, Reissue.self, Revoke.self, List.self, Audit.self, Sweep.self, RenewServerCertificate.self,
                      RenewCA.self])

    /// Who runs an admin command, for the audit trail: the user who logged in (kept across sudo, runuser and
    /// setpriv), else sudo's caller when sudo made us root, else the process's own user; never $USER.
    static var user: String {
        if let text = try? String(contentsOfFile: "/proc/self/loginuid", encoding: .utf8),
           let uid = uid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), uid != uid_t.max, let name = userName(uid) {
            return name
        }
        // Only root's SUDO_USER comes from sudo; anyone else may set it.
        if getuid() == 0, let caller = ProcessInfo.processInfo.environment["SUDO_USER"], !caller.isEmpty { return caller }
        return userName(getuid()) ?? "uid \(getuid())"
    }

    private static func userName(_ uid: uid_t) -> String? {
        guard let entry = getpwuid(uid) else { return nil }
        return String(cString: entry.pointee.pw_name)
    }

    /// Issues a client certificate from the relay CA and registers its key as a principal.
    static func enroll(_ common: CommonOptions, name: String, role: Role, sealingKey key: SealingPublicKey, queue: QueueOptions,
                       certificate: CertificateOptions) async throws {
        let principalName = try validName(name)
        // Before anything is signed or written: the store checks again when it enrolls.
        let known = try await common.withStore(try await common.load()) { db in try await db.queueNames() }
        if queue.newQueue, known.contains(queue.name) {
            throw CommandFailure("a queue named \(queue.name) exists already: to enroll them in it, leave out --new-queue")
        }
        if !queue.newQueue, !known.contains(queue.name) {
            throw CommandFailure("""
                no queue named \(queue.name) (this relay has \(known.map(\.rawValue).joined(separator: ", "))): check the spelling, or add \
                --new-queue to create it
                """)
        }
        let issued = try await issueClientCertificate(common, name: name, certificate: certificate) { db, spkiFingerprint, endsAt in
            try await db.enroll(name: principalName, role: role, spkiFingerprint: spkiFingerprint, sealingKey: key.text, queue: queue.name,
                                creatingQueue: queue.newQueue, certificateEndsAt: endsAt, actor: .admin(user))
        }
        print("""
            Enrolled \(issued.principal.name) as \(issued.principal.role.rawValue) in queue \(issued.principal.queue).
              sealing key fingerprint  \(key.fingerprint)  (read it back to them to compare)
            \(issued.files)
            """)
        if queue.newQueue {
            let firstStep = role == .gateway ? "you enroll its first responder (`admin enroll-responder NAME --queue \(queue.name)`), who then runs" : "one of its responders runs"
            print("""
                Created the queue \(queue.name). It has no sealing key yet: its intake answers 503 until \(firstStep) `amane rotate`.
                """)
        }
    }

    /// Refuses a server-certificate name that is neither an IP address nor a DNS name, before anything is signed.
    static func checkHostnames(_ names: [String]) throws {
        for name in names where !isHostname(name) {
            throw ValidationError("'\(name)' is not a host name or IP address (a DNS name is letters, digits and '-' between dots)")
        }
    }

    static func isHostname(_ name: String) -> Bool {
        if case .ipAddress = CertificateAuthority.generalName(name) { return true }
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        return name.utf8.count <= 253 && labels.allSatisfy { label in
            (1...63).contains(label.utf8.count) && label.first != "-" && label.last != "-"
                && label.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "-") }
        }
    }

    static func validSealingKey(_ text: String, from option: String = "--sealing-key") throws -> SealingPublicKey {
        do { return try SealingPublicKey(text: text) } catch {
            throw ValidationError("\(option): \(error.reason.isEmpty ? error.code.rawValue : error.reason). Give the whole amanepk1… line that `amane keygen` printed.")
        }
    }

    static func validName(_ name: String) throws -> PrincipalName {
        guard let principalName = PrincipalName(rawValue: name) else {
            throw ValidationError("'\(name)' is not a valid name: use letters, digits, '.', '_' and '-' (at most 64)")
        }
        return principalName
    }

    /// Issues a client certificate from the relay CA, has `register` record its key, then writes the certificate
    /// and key into `out`; returns the principal and lines naming the files.
    static func issueClientCertificate(_ common: CommonOptions, name: String, certificate: CertificateOptions,
                                       register: (RelayDatabase, _ spkiFingerprint: String, _ endsAt: Int64) async throws -> Principal)
        async throws -> (principal: Principal, files: String) {
        let configuration = try await common.load()
        let ca = try configuration.certificateAuthority()
        let now = Date()
        let validity = TimeInterval(certificate.validDays) * 86_400
        let requested = try certificate.requestedKey(for: name)
        let requestedFingerprint = try requested.map { try SPKIFingerprint.of($0) }
        if let told = certificate.csrFingerprint, let requestedFingerprint, !requestedFingerprint.hasPrefix(told) {
            throw CommandFailure("""
                --csr-fingerprint: the request's key is \(SPKIFingerprint.spoken(requestedFingerprint)), not what they read you: \
                it was swapped on its way, or is another request; nothing was signed, so ask them for the request again
                """)
        }
        let issued: (certificate: String, key: String?) = if let requested {
            (try ca.issue(commonName: name, usage: .client, for: requested, now: now, validity: validity), nil)
        } else {
            try ca.issue(commonName: name, usage: .client, now: now, validity: validity)
        }
        let outlivesCA = try ca.checkLifetime(from: now, validity: validity)
        let endsAt = Int64(now.addingTimeInterval(validity).timeIntervalSince1970)
        let out = certificate.out
        let createsOut = !FileManager.default.fileExists(atPath: out)
        try RelayFiles.makeDirectory(out)
        let certPath = (out as NSString).appendingPathComponent("\(name)-cert.pem")
        let keyPath = (out as NSString).appendingPathComponent("\(name)-key.pem")
        for path in [certPath] + (issued.key == nil ? [] : [keyPath]) where FileManager.default.fileExists(atPath: path) {
            throw CommandFailure("\(path) exists; choose another --out folder")
        }
        // The CA certificate goes in the handover too: their profile's 'ca' names it.
        let caCopy = (out as NSString).appendingPathComponent("ca-cert.pem")
        let caPEM = try RelayConfiguration.read(configuration.caFile, key: "tls.caFile")
        // A copy from before `admin renew-ca` (the same key and name) is brought up to date.
        var renewsCACopy = false
        if let existing = FileManager.default.contents(atPath: caCopy), existing != Data(caPEM.utf8) {
            guard let earlier = try? Certificate(pemEncoded: String(decoding: existing, as: UTF8.self)),
                  earlier.publicKey == ca.certificate.publicKey, earlier.subject == ca.certificate.subject else {
                throw CommandFailure("\(caCopy) is not this relay's CA certificate; choose another --out folder")
            }
            renewsCACopy = true
        }
        let createsCACopy = !FileManager.default.fileExists(atPath: caCopy)
        func removeWritten() {
            try? FileManager.default.removeItem(atPath: certPath)
            if issued.key != nil { try? FileManager.default.removeItem(atPath: keyPath) }
            if createsCACopy { try? FileManager.default.removeItem(atPath: caCopy) }
            if createsOut { rmdir(out) }
        }
        // The files first: once registered, the key must not be lost to a failed write (a reissue retires the old one).
        do {
            if createsCACopy { try RelayFiles.writePublic(caPEM, to: caCopy) }
            if renewsCACopy { try RelayFiles.replacePublic(caPEM, to: caCopy) }
            try RelayFiles.writePublic(issued.certificate, to: certPath)
            if let key = issued.key { try RelayFiles.writeSecret(key, to: keyPath) }
        } catch {
            removeWritten()
            throw error
        }
        let principal: Principal
        do {
            principal = try await common.withStore(configuration) { db in
                try await register(db, try SPKIFingerprint.of(certificatePEM: issued.certificate), endsAt)
            }
        } catch {
            removeWritten()
            if let error = error as? StoreError { throw CommandFailure(error.reason) }
            throw error
        }
        let keyLine = if let requestedFingerprint {
            "  client key               stays on their machine; its fingerprint \(SPKIFingerprint.spoken(requestedFingerprint))\n"
                + (certificate.csrFingerprint == nil
                    ? "                           (read it back to them, as `amane request-certificate` or the guide's openssl line gives it;\n"
                        + "                           if it differs, the request was swapped: `admin revoke` at once, or reissue)"
                    : "                           (the one they read you: --csr-fingerprint matched it)")
        } else {
            "  client key               \(keyPath)  (mode 0600; hand it over privately)"
        }
        let files = """
              client certificate       \(certPath)  (valid until \(Timestamp.iso8601(endsAt).prefix(10)); `admin list` shows when each ends)
            \(keyLine)
              relay CA certificate     \(caCopy)  (their profile's 'ca'\(renewsCACopy ? "; the renewed one, in place of the copy from before" : ""))
            """
        if let outlivesCA { Console.warn(outlivesCA) }
        return (principal, files)
    }
}

/// Where a client certificate and its key are written, and how long the certificate is valid.
struct CertificateOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Where to write the certificate (and the key made for it, without --csr).", valueName: "dir")) var out = "."
    @Option(help: ArgumentHelp("""
        A certificate signing request made on the person's machine (`amane request-certificate NAME`): the \
        certificate is issued for its key, and no key is made here.
        """, valueName: "file"))
    var csr: String?
    @Option(name: .customLong("csr-fingerprint"), help: ArgumentHelp("""
        The key fingerprint the person read you from `amane request-certificate` (at least its first 20 hex digits): \
        a request whose key differs is refused before anything is signed.
        """, valueName: "hex"))
    var csrFingerprintText: String?

    /// `--csr-fingerprint` without separators, lowercased; `sha256sum`'s trailing " -" and a "sha256:" prefix dropped.
    var csrFingerprint: String? {
        csrFingerprintText.map { text in
            var text = text.lowercased().trimmingCharacters(in: .whitespaces)
            if text.hasPrefix("sha256:") { text.removeFirst(7) }
            if text.hasSuffix(" -") { text.removeLast(2) }
            return text.filter { !$0.isWhitespace && $0 != ":" && $0 != "-" }
        }
    }
    @Option(name: .customLong("valid-days"), help: ArgumentHelp("How many days the certificate is valid (1 to 825).", valueName: "days"))
    var validDays = 730

    /// The key of `--csr`'s request, checked; nil without one.
    func requestedKey(for name: String) throws -> Certificate.PublicKey? {
        guard let csr else { return nil }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: csr, isDirectory: &isDirectory), !isDirectory.boolValue,
              let contents = FileManager.default.contents(atPath: csr) else {
            throw CommandFailure("--csr: no readable file at \(csr)")
        }
        return try SigningRequest.publicKey(Array(contents), for: name)
    }

    func validate() throws {
        if let told = csrFingerprint {
            guard csr != nil else { throw ValidationError("--csr-fingerprint goes with --csr") }
            guard told.count >= 20, told.allSatisfy({ $0.isASCII && $0.isHexDigit }) else {
                throw ValidationError("""
                    --csr-fingerprint: give at least the first 20 hex digits that `amane request-certificate` printed \
                    (spaces, ':' and '-' between them are fine)
                    """)
            }
        }
        guard (1...825).contains(validDays) else { throw ValidationError("--valid-days must be 1 to 825 (a little over two years)") }
    }
}

/// The queue a principal is enrolled in: one organisation's cases, keys and members.
struct QueueOptions: ParsableArguments {
    @Option(help: ArgumentHelp("""
        The queue they belong to (default: national): one organisation's cases, keys and members, which no other \
        queue's members see.
        """, valueName: "name"))
    var queue: String?
    @Flag(name: .customLong("new-queue"), help: "Create the --queue: one this relay has already is refused, so that no one joins it by mistake.")
    var newQueue = false

    var name: QueueName { queue.flatMap(QueueName.init(rawValue:)) ?? .national }

    func validate() throws {
        if let queue, QueueName(rawValue: queue) == nil {
            throw ValidationError("--queue: '\(queue)' is not a queue name: use lowercase letters, digits and '-' (at most 32)")
        }
        if newQueue, queue == nil { throw ValidationError("--new-queue creates the queue --queue names: give --queue NAME") }
    }
}

/// A principal's public sealing key: some 1,600 characters, so it may come in a file rather than be pasted.
struct SealingKeyOptions: ParsableArguments {
    @Option(name: .customLong("sealing-key"), help: ArgumentHelp("The public sealing key (amanepk1…) that `amane keygen` printed.", valueName: "key"))
    var text: String?
    @Option(name: .customLong("sealing-key-file"), help: ArgumentHelp(
        "A file holding it: what `amane keygen --show > NAME.pub` wrote, or the key's line alone.", valueName: "file"))
    var file: String?

    func validate() throws { _ = try key() }

    func key() throws -> SealingPublicKey {
        switch (text, file) {
        case (let text?, nil): return try Admin.validSealingKey(text)
        case (nil, let file?):
            guard let contents = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw ValidationError("--sealing-key-file: cannot read \(file)")
            }
            let line = contents.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.first { $0.hasPrefix("amanepk1") }
            guard let line else { throw ValidationError("--sealing-key-file: \(file) holds no amanepk1… line") }
            return try Admin.validSealingKey(line, from: "--sealing-key-file")
        case (nil, nil): throw ValidationError("give the public sealing key with --sealing-key KEY or --sealing-key-file FILE")
        case (_?, _?): throw ValidationError("give --sealing-key or --sealing-key-file, not both")
        }
    }
}

struct EnrollGateway: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enroll-gateway",
        abstract: "Enroll a helpline gateway or kiosk and issue its client certificate.",
        discussion: "Its sealing key is for replies to reporters. Example: amane-relayd admin enroll-gateway kiosk-casa-1 --sealing-key-file kiosk-casa-1.pub --out ./kiosk-casa-1")

    @OptionGroup var common: CommonOptions
    @Argument(help: "The gateway's name, as it appears in the audit trail.") var name: String
    @OptionGroup var sealingKey: SealingKeyOptions
    @OptionGroup var queue: QueueOptions
    @OptionGroup var certificate: CertificateOptions

    func validate() throws {
        _ = try Admin.validName(name)
    }

    func run() async throws {
        try await Admin.enroll(common, name: name, role: .gateway, sealingKey: try sealingKey.key(), queue: queue, certificate: certificate)
    }
}

struct EnrollResponder: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enroll-responder",
        abstract: "Enroll a responder (or, with --supervisor, a supervisor) and issue their client certificate.",
        discussion: "Example: amane-relayd admin enroll-responder amina --sealing-key-file amina.pub --out ./amina (amina.pub: what `amane keygen --show` printed)")

    @OptionGroup var common: CommonOptions
    @Argument(help: "The responder's name, as it appears in the audit trail.") var name: String
    @OptionGroup var sealingKey: SealingKeyOptions
    @Flag(help: "Enroll as a supervisor: may also assign, reopen, hold and read the audit trail.") var supervisor = false
    @OptionGroup var queue: QueueOptions
    @OptionGroup var certificate: CertificateOptions

    func validate() throws {
        _ = try Admin.validName(name)
    }

    func run() async throws {
        try await Admin.enroll(common, name: name, role: supervisor ? .supervisor : .responder, sealingKey: try sealingKey.key(), queue: queue,
                               certificate: certificate)
    }
}

struct RenewServerCertificate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "renew-server-cert",
        abstract: "Issue a new server certificate from the relay's CA for the key the daemon already holds.",
        discussion: """
            It replaces tls.certificateFile (and needs the CA key). The key stays, so `systemctl reload amane-relayd` \
            then serves the new certificate to new connections without dropping open ones. \
            Example: amane-relayd admin renew-server-cert --hostname relay.example.org --hostname 203.0.113.10
            """)

    @OptionGroup var common: CommonOptions
    @Option(name: .customLong("hostname"), help: ArgumentHelp("A name or address clients use to reach the relay; repeat for several.", valueName: "name"))
    var hostnames: [String]

    func validate() throws { try Admin.checkHostnames(hostnames) }

    func run() async throws {
        let first = hostnames[0]
        let configuration = try await common.load()
        let ca = try configuration.certificateAuthority()
        let key = try Certificate.PrivateKey(pemEncoded: try configuration.readPrivateKeyPEM())
        let outlivesCA = try ca.checkLifetime()
        let certificate = try ca.issue(commonName: first, usage: .server(hostnames: hostnames), for: key.publicKey)
        try RelayFiles.replacePublic(certificate, to: configuration.certificateFile)
        let expiry = Date().addingTimeInterval(CertificateAuthority.leafValidity).formatted(.iso8601.year().month().day())
        if let outlivesCA { Console.warn(outlivesCA) }
        print("""
            Renewed \(configuration.certificateFile) for \(hostnames.joined(separator: ", ")), valid until \(expiry).
            Next: systemctl reload amane-relayd (or send SIGHUP) to serve it.
            """)
    }
}

struct RenewCA: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "renew-ca",
        abstract: "Make the relay's CA certificate again, for the same key and name, valid for ten more years.",
        discussion: """
            It replaces tls.caFile (and needs the CA key). Every certificate the CA issued stays valid under the new \
            one, so clients can take it in the old one's place at any time before the old one ends; after that, a \
            client holding only the old one trusts nothing. Then restart the relay, and hand the new file to every \
            gateway and member (their profile's 'ca'). Example: amane-relayd admin renew-ca --config /etc/amane-relay/amane-relayd.yaml
            """)

    @OptionGroup var common: CommonOptions

    func run() async throws {
        let configuration = try await common.load()
        let ca = try configuration.certificateAuthority()
        let renewed = try ca.renewed()
        try RelayFiles.replacePublic(try renewed.certificatePEM, to: configuration.caFile)
        let day = { (date: Date) in String(Timestamp.iso8601(Int64(date.timeIntervalSince1970)).prefix(10)) }
        let old = day(ca.certificate.notValidAfter)
        print("""
            Renewed \(configuration.caFile) for the same key and name, valid until \(day(renewed.certificate.notValidAfter)) \
            (the one it replaces ends on \(old)).
            Next, before \(old):
              1. systemctl restart amane-relayd, so that it verifies clients with the new one.
              2. Hand \(configuration.caFile) to every gateway and member, in place of their profile's 'ca' file.
                 Their certificates, and the server's, stay valid as they are.
            """)
    }
}

struct Reissue: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Issue a new client certificate for an enrolled principal: to renew one, or to replace a lost one.",
        discussion: """
            The principal keeps its name, role, sealing key, grants and cases; its old certificate gets 403 at once and \
            its key is retired (never enrolled again), unless --keep-key renews for the same key (only for a key no one else may have).

            Example: amane-relayd admin reissue amina --out ./amina-2028
            """)

    @OptionGroup var common: CommonOptions
    @Argument(help: "The principal's name.") var name: String
    @OptionGroup var certificate: CertificateOptions
    @Flag(name: .customLong("keep-key"), help: ArgumentHelp("""
        Renew for the key they have now (--csr from `amane request-certificate NAME`): their old certificate keeps \
        working until it ends. Only for a key no one else may have.
        """))
    var keepKey = false

    func validate() throws {
        if keepKey && certificate.csr == nil { throw ValidationError("--keep-key needs --csr: the request for the key they have now") }
    }

    func run() async throws {
        let principalName = try Admin.validName(name)
        let issued = try await Admin.issueClientCertificate(common, name: name, certificate: certificate) { db, spkiFingerprint, endsAt in
            try await db.reissue(name: principalName, spkiFingerprint: spkiFingerprint, certificateEndsAt: endsAt, keepingKey: keepKey,
                                 actor: .admin(Admin.user))
        }
        print("""
            Reissued \(issued.principal.name)'s certificate; \(keepKey
                ? "it is for the key they have, so their old certificate also works until it ends"
                : "the old one no longer works, and its key is retired (never enrolled again)").
            \(issued.files)
            """)
    }
}

struct Revoke: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Revoke a principal at once: every request with its certificate gets 403, and its grants are deleted.",
        discussion: """
            After a responder or supervisor, have a member run `amane rotate`, so new cases are sealed to a key the revoked one never had. \
            The cases it had claimed go back to the queue; those referred stay assigned to it until a supervisor assigns or reopens them. \
            Both are named.
            """)

    @OptionGroup var common: CommonOptions
    @Argument(help: "The principal's name.") var name: String

    func run() async throws {
        guard let principalName = PrincipalName(rawValue: name) else { throw ValidationError("'\(name)' is not a valid name") }
        let configuration = try await common.load()
        let (revocation, unheld): (RelayDatabase.Revocation, [QueueName])
        do {
            (revocation, unheld) = try await common.withStore(configuration) { db in
                let before = Set(try await db.queuesWithoutSealingKey())
                let revocation = try await db.revoke(name: principalName, actor: .admin(Admin.user))
                return (revocation, try await db.queuesWithoutSealingKey().filter { !before.contains($0) })
            }
        } catch let error as StoreError {
            throw CommandFailure(error.reason)
        }
        let (role, queue) = (revocation.principal.role, revocation.principal.queue)
        if role == .gateway {
            print("Revoked \(name): its certificate is refused from now on. A gateway holds no queue key, so nothing needs rotating.")
        } else if !unheld.isEmpty {
            print("""
                Revoked \(name). Warning: no active member holds the current key of the queue \(unheld.map(\.rawValue).joined(separator: ", ")) any more: \
                the relay refuses new disclosures (503) until a member runs `amane rotate`. Do it now.
                """)
        } else {
            print("""
                Revoked \(name). Now have a member of the queue \(queue) who holds its key run `amane rotate`, so new cases are sealed \
                to a key \(name) never had.
                """)
        }
        let cases = Self.cases(of: revocation)
        if !cases.isEmpty { print(cases) }
    }

    /// What became of the cases the principal held, so that none is left with no one: empty when it held none.
    static func cases(of revocation: RelayDatabase.Revocation) -> String {
        let name = revocation.principal.name
        var lines: [String] = []
        if !revocation.returnedToQueue.isEmpty {
            lines.append("Back in the queue (new), as \(name) had claimed them: \(revocation.returnedToQueue.joined(separator: " ")).")
        }
        if !revocation.stillAssigned.isEmpty {
            lines.append("""
                Still assigned to \(name), referred: \(revocation.stillAssigned.joined(separator: " ")). A supervisor gives each to a colleague \
                who holds its key (`amane assign ID --to NAME`) or puts it back in the queue (`amane reopen ID`).
                """)
        }
        return lines.joined(separator: "\n")
    }
}

struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List principals.")

    @OptionGroup var common: CommonOptions
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let configuration = try await common.load()
        let (principals, ends) = try await common.withStore(configuration) { db in (try await db.principals(), try await db.certificateEnds()) }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(principals.map { Listed(principal: $0, certificateEndsAt: ends[$0.name]) }), as: UTF8.self))
            return
        }
        print("NAME".padding(toLength: 24, withPad: " ", startingAt: 0) + "ROLE        QUEUE       STATE    CERT ENDS   SEALING KEY FINGERPRINT")
        for principal in principals {
            let fingerprint = principal.sealingKey.flatMap { try? SealingPublicKey(text: $0) }?.fingerprint ?? "-"
            let certificateEnds = ends[principal.name].map { String(Timestamp.iso8601($0).prefix(10)) } ?? "-"
            print(principal.name.rawValue.padding(toLength: 24, withPad: " ", startingAt: 0)
                + principal.role.rawValue.padding(toLength: 12, withPad: " ", startingAt: 0)
                + principal.queue.rawValue.padding(toLength: 12, withPad: " ", startingAt: 0)
                + (principal.isActive ? "active" : "revoked").padding(toLength: 9, withPad: " ", startingAt: 0)
                + certificateEnds.padding(toLength: 12, withPad: " ", startingAt: 0) + fingerprint)
        }
    }
}

extension List {
    /// A principal as stored, with the fingerprint people read to each other (`amane keygen` prints it), its
    /// state, and when its client certificate ends (Unix seconds, like the other times; absent for active
    /// principals enrolled before the relay kept it, and for revoked ones).
    struct Listed: Encodable {
        let principal: Principal
        let certificateEndsAt: Int64?

        enum Keys: String, CodingKey { case sealingKeyFingerprint, state, certificateEndsAt }

        func encode(to encoder: any Encoder) throws {
            try principal.encode(to: encoder)
            var container = encoder.container(keyedBy: Keys.self)
            try container.encodeIfPresent(principal.sealingKey.flatMap { try? SealingPublicKey(text: $0) }?.fingerprint, forKey: .sealingKeyFingerprint)
            try container.encode(principal.isActive ? "active" : "revoked", forKey: .state)
            try container.encodeIfPresent(certificateEndsAt, forKey: .certificateEndsAt)
        }
    }
}

struct Sweep: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Purge now the closed cases the retention policy lets go, as the relay does every hour.",
        discussion: """
            A case closed longer than retention.closedDays, and not on hold, loses its sealed content: the disclosure, \
            follow-ups, notes and replies, and its receipt. Its labels stay, for the statistics. --dry-run lists what \
            would go, and changes nothing. Safe beside a running relay. Example: amane-relayd admin sweep --dry-run
            """)
    @OptionGroup var common: CommonOptions
    @Flag(help: "List the cases that would be purged; purge nothing.") var dryRun = false
    @Flag(help: "Print JSON: {due: [{id, closedAt}], held} with --dry-run, else {purged, idempotencyKeysForgotten}.") var json = false

    struct Due: Encodable {
        let id: String
        let closedAt: Int64
    }

    struct Preview: Encodable {
        let due: [Due]
        let held: Int
    }

    struct Done: Encodable {
        let purged: Int
        let idempotencyKeysForgotten: Int
    }

    func run() async throws {
        let configuration = try await common.load()
        let days = configuration.policy.closedRetentionDays
        if dryRun {
            let (due, held) = try await common.withStore(configuration) { db in try await db.casesDueForPurge() }
            if json { return try printJSON(Preview(due: due.map { Due(id: $0.id, closedAt: $0.closedAt) }, held: held)) }
            let onHold = held == 0 ? "" : " (\(held) more past it are on hold, and stay)"
            print("\(due.count) closed case\(due.count == 1 ? " is" : "s are") past the \(days) days kept after closing, and would be purged now\(onHold)\(due.isEmpty ? "." : ":")")
            for item in due { print("  \(item.id)  closed \(Timestamp.iso8601(item.closedAt).prefix(10))") }
            return
        }
        let (purged, forgotten) = try await common.withStore(configuration) { db in
            (try await db.purgeExpiredCases(actor: .admin(Admin.user)), try await db.expireIdempotencyKeys())
        }
        if json { return try printJSON(Done(purged: purged, idempotencyKeysForgotten: forgotten)) }
        print("Purged \(purged) closed case\(purged == 1 ? "" : "s") kept \(days) days after closing; forgot \(forgotten) idempotency key\(forgotten == 1 ? "" : "s") older than seven days.")
    }

    private func printJSON(_ value: some Encodable) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        print(String(decoding: try encoder.encode(value), as: UTF8.self))
    }
}

struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Work with the audit trail.", subcommands: [Verify.self])

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Recompute the audit hash chain; name the first broken entry.",
            discussion: """
                It prints the trail's head (SEQ:HASH). Keep it elsewhere: a trail cut at its end still links up, and only \
                a later --expect-head SEQ:HASH (here, or with `amane audit --verify`) shows that entries are gone or were rewritten.
                """)
        @OptionGroup var common: CommonOptions
        @Option(name: .customLong("expect-head"), help: ArgumentHelp("A head printed by an earlier verification, which must still be in the trail.", valueName: "seq:hash"))
        var expectHead: String?
        @Flag(help: "Print JSON: {intact, verified, head}, or {intact, brokenAt, reason} with exit status 6.") var json = false

        func validate() throws {
            if let expectHead, AuditHead(text: expectHead) == nil {
                throw ValidationError("--expect-head takes SEQ:HASH as a verification printed it, such as 1042:9f86d081…")
            }
        }

        func run() async throws {
            let configuration = try await common.load()
            try common.requireDatabase(configuration)
            do {
                let (count, head) = try RelayDatabase.verifyAuditReadOnly(directory: configuration.dataDirectory,
                                                                           expecting: expectHead.flatMap(AuditHead.init(text:)))
                if json { return try printJSON(.intact(verified: count, head: head)) }
                print("The audit trail is intact: \(count) entries verified\(expectHead == nil ? "" : ", and the earlier head is in it").")
                print("Head: \(head)  (keep it; --expect-head checks it later)")
            } catch let error as AuditVerifier.Break {
                if json {
                    try printJSON(.broken(at: error.seq, reason: error.reason))
                } else {
                    print("The audit trail is BROKEN\(error.place): \(error.reason).")
                }
                throw ExitCode.brokenAuditTrail
            }
        }

        func printJSON(_ verification: AuditVerification) throws {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(verification), as: UTF8.self))
        }
    }
}

extension ExitCode {
    /// The same status as `amane audit --verify` on a broken trail.
    static let brokenAuditTrail = ExitCode(6)
}

struct Backup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Take an online backup (SQLite backup API) while the relay runs, verify it, and keep the newest N.",
        discussion: "Backups hold only sealed content and labels. Example: amane-relayd backup --to /var/backups/amane-relay --keep 14")

    @OptionGroup var common: CommonOptions
    @Option(help: ArgumentHelp("The folder for backups.", valueName: "dir")) var to: String
    @Option(help: "How many backups to keep.") var keep = 14
    @Flag(help: "Print the result as JSON: the copy, its entries and head (keep the head off this machine, for restore --expect-head).")
    var json = false

    func validate() throws {
        guard keep >= 1 else { throw ValidationError("--keep must be at least 1") }
    }

    /// What --json prints for a backup that verified.
    struct Taken: Encodable {
        let backup: String
        let entries: Int64
        let head: String
        let comparedWith: String?
        let kept: Int
    }

    func run() async throws {
        let configuration = try await common.load()
        let resolved = { (path: String) in URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path }
        if (resolved(to) + "/").hasPrefix(resolved(configuration.dataDirectory) + "/") {
            throw CommandFailure("--to \(to) is in the data directory: keep backups in another folder, best on another disk")
        }
        try RelayFiles.makeDirectory(to)
        let lock = try FolderLock.acquire(to, fileName: ".backup.lock", held: "another backup into \(to) is running; try again once it ends")
        defer { close(lock) }
        FolderLock.removeLeftovers(in: to, prefix: ".staging-", leftBy: "a backup", say: Console.warn)
        let stamp = Self.timestamp()
        let staging = (to as NSString).appendingPathComponent(".staging-\(UUID().uuidString)")
        try RelayFiles.makeDirectory(staging)
        try RelayFiles.ownLike(to, staging)
        defer { try? FileManager.default.removeItem(atPath: staging) }
        let db = try common.openExisting(configuration)
        // A trail rewritten with every hash recomputed still links up: the newest earlier backup's head shows it.
        let earlier = try backups("relay-").last.map { (to as NSString).appendingPathComponent($0) }
        var unreadable: String?
        let earlierHead = earlier.flatMap { path in
            do { return try RelayDatabase.auditHead(ofFile: path) } catch {
                unreadable = "cannot read the audit head of \(path) (\(error)), so the new backup was not compared with it"
                return nil
            }
        }
        try db.backup(to: (staging as NSString).appendingPathComponent(RelayDatabase.fileName))
        let copy = try RelayDatabase(directory: staging)
        let verification = Result { try copy.verifyAuditWithHead(expecting: earlierHead) }
        guard try copy.integrityCheck() == "ok" else { throw CommandFailure("the backup failed its integrity check; nothing kept") }
        try copy.close()
        let staged = (staging as NSString).appendingPathComponent(RelayDatabase.fileName)
        try RelayDatabase.makeSelfContained(file: staged)
        switch verification {
        case .success(let verified):
            let destination = try moveIntoPlace(staged, as: "relay-\(stamp)")
            // A check that could not run fails the unit, and rotates away no copy it should have read.
            if let unreadable {
                print("Backed up to \(destination) (audit trail verified: \(verified.count) entries, head \(verified.head)); nothing pruned.")
                throw CommandFailure("\(unreadable): give the backups to the user running this (chown), or move that copy to another folder")
            }
            let kept = try prune("relay-")
            let comparedWith = earlierHead == nil ? nil : earlier.map { ($0 as NSString).lastPathComponent }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                let taken = Taken(backup: destination, entries: verified.count, head: verified.head, comparedWith: comparedWith, kept: kept)
                return print(String(decoding: try encoder.encode(taken), as: UTF8.self))
            }
            let compared = comparedWith.map { ", still holding the head of \($0)" } ?? ""
            print("Backed up to \(destination) (audit trail verified: \(verified.count) entries, head \(verified.head)\(compared)); keeping \(kept).")
        case .failure(let error as AuditVerifier.Break):
            // Kept apart, as evidence and as the newest copy of what is stored, so that it rotates no good copy away.
            let destination = try moveIntoPlace(staged, as: "broken-\(stamp)")
            _ = try prune("broken-")
            let compared = earlierHead.map { head in
                " It was compared with \((earlier! as NSString).lastPathComponent) (head \(head.seq)); if that copy is of another relay, or of a database since made anew, move it to another folder."
            } ?? ""
            FileHandle.standardError.write(Data("""
                The audit trail is BROKEN\(error.place): \(error.reason).
                This copy is kept apart as \(destination) for investigation; the regular backups are left as they were.\(compared)

                """.utf8))
            throw ExitCode.brokenAuditTrail
        case .failure(let error):
            throw error
        }
    }

    /// The time in file names: 20261129T020000.
    static func timestamp(at date: Date = Date()) -> String {
        date.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: false).timeSeparator(.omitted).dateSeparator(.omitted))
    }

    /// Moves the verified copy to `name.sqlite`, or past the highest `name-N.sqlite` of backups taken in the same
    /// second, so that it sorts as the newest even when an earlier one of that second was pruned.
    private func moveIntoPlace(_ staged: String, as name: String) throws -> String {
        let attempts = try FileManager.default.contentsOfDirectory(atPath: to).compactMap { file -> Int? in
            if file == "\(name).sqlite" { return 1 }
            guard file.hasPrefix("\(name)-"), file.hasSuffix(".sqlite") else { return nil }
            return Int(file.dropFirst(name.count + 1).dropLast(".sqlite".count))
        }
        let attempt = (attempts.max() ?? 0) + 1
        let destination = (to as NSString).appendingPathComponent(attempt == 1 ? "\(name).sqlite" : "\(name)-\(attempt).sqlite")
        // Taken by root, a copy must stay readable by the folder's owner, whose nightly backup compares with it.
        try Restore.ownLikeTheDirectory(staged, directory: to)
        try FileManager.default.moveItem(atPath: staged, toPath: destination)
        return destination
    }

    /// Removes all but the newest `keep` backups named `prefix…sqlite`; returns how many remain.
    private func prune(_ prefix: String) throws -> Int {
        let backups = try backups(prefix)
        for old in backups.dropLast(keep) {
            let path = (to as NSString).appendingPathComponent(old)
            try FileManager.default.removeItem(atPath: path)
            for sidecar in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + sidecar) }
        }
        return min(keep, backups.count)
    }

    /// The backups named `prefix…sqlite`, oldest first: by time, then by the -2, -3 … of backups taken within one second.
    private func backups(_ prefix: String) throws -> [String] {
        try Self.backups(prefix, in: to)
    }

    static func backups(_ prefix: String, in folder: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasPrefix(prefix) && $0.hasSuffix(".sqlite") }
            .sorted { order($0) < order($1) }
    }

    static func order(_ name: String) -> (String, Int) {
        let stem = name.dropLast(".sqlite".count)
        guard let dash = stem.lastIndex(of: "-"), let attempt = Int(stem[stem.index(after: dash)...]) else { return (String(stem), 1) }
        return (String(stem[..<dash]), attempt)
    }
}

struct CheckConfig: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate the configuration and the files it names; exit non-zero naming the offending key.")

    @OptionGroup var common: CommonOptions

    func run() async throws {
        let configuration = try await common.load()
        // In development the first `serve --dev` makes the CA and certificates; until then there is nothing to check.
        let tlsMadeLater = configuration.dev && !FileManager.default.fileExists(atPath: configuration.certificateFile)
        let databaseMadeLater = configuration.dev && !FileManager.default.fileExists(atPath: (configuration.dataDirectory as NSString).appendingPathComponent(RelayDatabase.fileName))
        if !configuration.dev { try common.requireDatabaseToServe(configuration) }
        try common.requireWritableToServe(configuration)
        try RelayDatabase.checkSchema(directory: configuration.dataDirectory)
        var validUntil = ""
        do {
            _ = try RelayConfiguration.readSeed("taxonomy.yaml", in: configuration.seedsDirectory)
            if !tlsMadeLater {
                let identity = try TLSIdentity(configuration: configuration)
                _ = try RelayConfiguration.read(configuration.caFile, key: "tls.caFile")
                let caEnd = try configuration.checkClientCA()
                if let caEnd, let warning = CertificateAuthority.expiryWarning(caEnd) {
                    if caEnd <= Date() { throw RelayConfiguration.Invalid(key: "tls.caFile", reason: warning) }
                    Console.warn(warning)
                }
                if let expiry = identity.expiry {
                    if expiry <= Date() { throw RelayConfiguration.Invalid(key: "tls.certificateFile", reason: TLSIdentity.expiryWarning(expiry)!) }
                    validUntil = " (valid until \(Timestamp.iso8601(Int64(expiry.timeIntervalSince1970))))"
                    if let warning = TLSIdentity.expiryWarning(expiry) { Console.warn(warning) }
                }
            }
        } catch let error as RelayConfiguration.Invalid {
            throw error
        } catch let error as CommandFailure {
            throw error
        } catch {
            throw RelayConfiguration.Invalid(key: "tls.certificateFile", reason: "the certificate or key does not parse (\(error))")
        }
        try configuration.checkNotifyCommand()
        for warning in RelayFiles.openToOthers(configuration) { Console.warn(warning) }
        let sla = Urgency.allCases.map { "\($0.rawValue) \((configuration.policy.slaSeconds[$0] ?? 0) / 60)" }.joined(separator: ", ")
        print("""
            Configuration is valid.
              http.listen     \(configuration.listen)
              ops.listen      \(configuration.opsListen)
              db.path         \(configuration.dataDirectory)\(databaseMadeLater ? " (made by the first `serve --dev`)" : "")
              seeds.directory \(configuration.seedsDirectory)
              tls             \(tlsMadeLater ? "made by the first `serve --dev`" : configuration.certificateFile + validUntil)
              limits          body \(configuration.limits.maxBodyBytes) B, envelope \(configuration.limits.maxEnvelopeBytes) B, \(configuration.limits.requestsPerMinute) requests/min, \(configuration.limits.gatewayBytesPerDay) bytes a day per gateway
              claim lease     \(configuration.policy.claimLeaseSeconds / 60) minutes
              sla (minutes)   \(sla)
              sla pager       \(configuration.slaNotifyCommand.map { "\($0) URGENCY COUNT QUEUE, each minute cases are past their SLA" } ?? "none (sla.notifyCommand)")
              retention       \(configuration.policy.closedRetentionDays) days after closing
              sealing         one shared context per \(configuration.sharedContextMilliseconds) ms (0: one per disclosure)
            """)
    }
}
