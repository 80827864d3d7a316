import ArgumentParser
import Foundation
import RelayCertificateRequest
import RelayCore
import RelayFormat

struct CertificateRequestInfo: Codable {
    var name: String
    /// The request's file, or "-" for standard output.
    var request: String
    var key: String
    var keyCreated: Bool
    /// Where a key that --new-key replaced was moved.
    var replacedKey: String?
    var fingerprint: String
}

struct RequestCertificate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "request-certificate",
        abstract: "Make your client certificate's key here, and a request for your admin to sign.",
        discussion: """
            The key goes into the profile (its 'key', else client-key.pem; mode 0600) and never leaves this machine; \
            the request holds no secret. Your admin issues the certificate for it with `amane-relayd admin \
            enroll-responder NAME --sealing-key … --csr NAME.csr` (or enroll-gateway) and reads you back the key's \
            fingerprint, which this prints: if it differs, the request was swapped on its way. To renew, run it again: \
            the request is for the key you have (`admin reissue NAME --csr NAME.csr --keep-key`). If that key may be \
            known to anyone else, --new-key makes a new one. Example: amane request-certificate amina
            """)

    @OptionGroup var global: ProfileOptions
    @Argument(help: "Your name, as the admin enrolls it.") var name: String
    @Option(help: ArgumentHelp("Where to write the request (default NAME.csr here; - for standard output).", valueName: "file"))
    var out: String?
    @Flag(name: .customLong("new-key"), help: ArgumentHelp("""
        Make a new key even if you have one (the old one is moved aside): for a key that may be known to anyone else. \
        Your current certificate stops working with this profile until the new one comes.
        """))
    var newKey = false

    func validate() throws {
        guard PrincipalName(rawValue: name) != nil else {
            throw ValidationError("'\(name)' is not a valid name: use letters, digits, '.', '_' and '-' (at most 64)")
        }
    }

    func run() async throws {
        let profile = try Profile.load(global.profile)
        let keyPath = profile.key ?? (profile.directory as NSString).appendingPathComponent("client-key.pem")
        let requestPath = out ?? "\(name).csr"
        guard URL(fileURLWithPath: requestPath).standardizedFileURL != URL(fileURLWithPath: keyPath).standardizedFileURL else {
            throw CLIError(.usage, "--out \(requestPath) is your key's file; write the request elsewhere")
        }
        guard !(global.json && requestPath == "-") else { throw CLIError(.usage, "--json and --out - both want standard output; choose one") }
        let exists = FileManager.default.fileExists(atPath: keyPath)
        let created = newKey || !exists
        let key = created ? ClientKey.generate() : try existingKey(at: keyPath)
        // The request first, then the key: a failure leaves the key file as it was.
        try write(try key.signingRequest(name: name), to: requestPath)
        var replaced: String?
        if created {
            do { replaced = try install(key, at: keyPath, replacing: exists) } catch {
                if requestPath != "-" { try? FileManager.default.removeItem(atPath: requestPath) }
                throw error
            }
        }
        let requestFile = requestPath == "-" ? "-" : URL(fileURLWithPath: requestPath).standardizedFileURL.path
        let info = CertificateRequestInfo(name: name, request: requestFile, key: keyPath, keyCreated: created, replacedKey: replaced,
                                          fingerprint: try key.fingerprint)
        if global.json { return try Output.json(info) }
        let text = explain(info, profile: profile)
        if requestPath == "-" { FileHandle.standardError.write(Data((text + "\n").utf8)) } else { print(text) }
    }

    private func write(_ request: String, to path: String) throws {
        if path == "-" { return FileHandle.standardOutput.write(Data(request.utf8)) }
        do {
            try Data(request.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
            _ = chmod(path, 0o644)
        } catch {
            throw CLIError(.usage, "cannot write \(path): \(error.localizedDescription)", hint: "Choose another place with --out; your key is unchanged.")
        }
    }

    /// Writes a new key (mode 0600) at `path`; an old one there is moved aside only once the new one is on disk.
    /// Returns where the old one went.
    private func install(_ key: ClientKey, at path: String, replacing: Bool) throws -> String? {
        let folder = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: folder.isEmpty ? "." : folder, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let target = replacing ? path + ".new" : path
        if replacing { try? FileManager.default.removeItem(atPath: target) }
        do { try SecretFile.createExclusive(at: target, contents: Array(try key.pem.utf8)) } catch {
            throw CLIError(.usage, "cannot write \(target): \(error)", hint: replacing ? "Your key in \(path) is unchanged." : "")
        }
        guard replacing else { return nil }
        let aside = "\(path).replaced-\(Int(Date().timeIntervalSince1970))"
        guard rename(path, aside) == 0 else {
            try? FileManager.default.removeItem(atPath: target)
            throw CLIError(.usage, "cannot move \(path) aside: \(String(cString: strerror(errno)))", hint: "Your key is unchanged.")
        }
        guard rename(target, path) == 0 else {
            _ = rename(aside, path)
            throw CLIError(.usage, "cannot put the new key in \(path): \(String(cString: strerror(errno)))", hint: "Your key is unchanged.")
        }
        return aside
    }

    private func explain(_ info: CertificateRequestInfo, profile: Profile) -> String {
        let keyLine = if let replaced = info.replacedKey {
            "Made a new client key in \(info.key) (mode 0600); the old one is in \(replaced): delete it once the new certificate works."
        } else if info.keyCreated {
            "Made your client key in \(info.key) (mode 0600); it stays on this machine."
        } else {
            "The request is for the key you have in \(info.key)."
        }
        let file = info.request == "-" ? "FILE" : info.request
        let admin = if info.replacedKey != nil {
            "for `amane-relayd admin reissue \(name) --csr \(file)`, which retires the old key; until then this profile cannot reach the relay"
        } else if info.keyCreated {
            "with your sealing key (`amane keygen --show > \(name).pub` writes it to a file), for `amane-relayd admin enroll-responder \(name) --sealing-key-file \(name).pub --csr \(file)` (or enroll-gateway)"
        } else {
            "for `amane-relayd admin reissue \(name) --csr \(file) --keep-key` (or, if you are not enrolled yet, `admin enroll-responder … --csr`)"
        }
        let requestLine = info.request == "-" ? "The request went to standard output" : "Wrote the request to \(info.request)"
        // Only what the profile lacks, or the certificate file a renewal replaces.
        let missing = [profile.relay == nil ? "relay: https://…   (the address your admin gives you)" : nil,
                       profile.ca == nil ? "ca: ca-cert.pem" : nil,
                       profile.certificate == nil ? "certificate: \(name)-cert.pem" : nil,
                       profile.key == nil ? "key: client-key.pem" : nil].compactMap { $0 }
        let configLines = if let certificate = profile.certificate, missing.isEmpty {
            "\nWhen the new \(name)-cert.pem comes back, put it in place of \(certificate)."
        } else {
            """

            When \(name)-cert.pem and ca-cert.pem come back, put them in \(profile.directory) and add to its config.yaml:
            \(missing.map { "  " + $0 }.joined(separator: "\n"))
            """
        }
        return """
            \(keyLine)
            \(requestLine): it holds no secret. Give it to your admin \(admin).
            Key fingerprint (your admin reads it back to you; compare): \(SPKIFingerprint.spoken(info.fingerprint))\(configLines)
            """
    }

    private func existingKey(at path: String) throws -> ClientKey {
        guard let pem = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw CLIError(.usage, "cannot read the client key \(path)", hint: "It is the file `amane request-certificate` wrote beside its request; check 'key:' in config.yaml.")
        }
        let key: ClientKey
        do { key = try ClientKey(pem: pem) } catch {
            switch error {
            case .notAKey:
                throw CLIError(.usage, "\(path) is not an unencrypted PEM private key",
                               hint: "Point 'key:' in config.yaml at your client key, or add --new-key to make one (the file is moved aside).")
            case .unsupported:
                throw CLIError(.usage, "\(path) is not an ECDSA P-256 or P-384 key, and the relay signs only those",
                               hint: "Add --new-key to make a P-256 one (the file is moved aside).")
            }
        }
        try PrivateFile.check(path, "the client key")
        return key
    }
}
