import Foundation
import Glibc
import RelayAPI
import RelayCore
import RelayFormat

/// Sealing-key fingerprints kept in the profile folder, one `NAME FINGERPRINT` a line. The relay serves every
/// principal's public key; a name's key never changes (enrollment refuses a used name, and reissue keeps the
/// key), so a pin is never replaced, and a relay that serves another key for a pinned name is refused.
/// - `members`: colleagues' keys this member confirmed with them directly (`amane grant NAME --fingerprint`).
///   Without them, a compromised relay could swap in its own key and be granted the queue keys, and with them
///   everything stored before.
/// - `gateways`: gateways' keys as `amane reply` first sealed to them. A relay compromised later cannot then
///   have replies sealed to a key of its own under a pinned gateway's name (it still says which gateway sent a case).
struct PinnedKeys {
    enum Kind: String { case members, gateways }

    let kind: Kind
    let path: String
    private(set) var fingerprints: [String: String] = [:]

    init(profile: Profile, kind: Kind = .members) throws {
        self.kind = kind
        path = (profile.directory as NSString).appendingPathComponent(kind.rawValue)
        fingerprints = try Self.read(path)
    }

    private static func read(_ path: String) throws -> [String: String] {
        guard let data = FileManager.default.contents(atPath: path) else { return [:] }
        // Whoever may change the file, or swap it in its folder, decides whose keys are trusted: only its owner may.
        let folder = (path as NSString).deletingLastPathComponent
        // The file as it is (a link is refused); its folder as the path reaches it.
        for (item, fix) in [(path, "chmod 600"), (URL(fileURLWithPath: folder).resolvingSymlinksInPath().path, "chmod 700")] {
            let attributes: [FileAttributeKey: Any]
            do { attributes = try FileManager.default.attributesOfItem(atPath: item) } catch {
                throw CLIError(.usage, "cannot read \(item): \(error.localizedDescription)")
            }
            if attributes[.type] as? FileAttributeType == .typeSymbolicLink {
                throw CLIError(.usage, "\(item) is a symbolic link; it decides whose keys you trust", hint: "Replace it with the file it points to.")
            }
            let owner = (attributes[.ownerAccountID] as? NSNumber)?.uint32Value
            if owner != geteuid() && owner != 0 {
                throw CLIError(.usage, "\(item) belongs to another user; it decides whose keys you trust",
                               hint: "Check it, then make it yours (chown) or move your profile elsewhere.")
            }
            let mode = (attributes[.posixPermissions] as? NSNumber)?.intValue ?? 0
            if mode & 0o022 != 0 {
                throw CLIError(.usage, "\(item) can be written by other users (mode \(String(mode & 0o777, radix: 8))); it decides whose keys you trust",
                               hint: "Check it, then \(fix) \(item).")
            }
        }
        var fingerprints: [String: String] = [:]
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") where !line.hasPrefix("#") {
            let fields = line.split(separator: " ")
            guard fields.count == 2, PrincipalName(rawValue: String(fields[0])) != nil, fingerprints[String(fields[0])] == nil else {
                throw CLIError(.usage, "\(path): expected one 'NAME FINGERPRINT' line per name, found '\(Output.inert(String(line)))'")
            }
            fingerprints[String(fields[0])] = normalized(String(fields[1]))
        }
        return fingerprints
    }

    static func normalized(_ fingerprint: String) -> String {
        fingerprint.lowercased().filter { !$0.isWhitespace }
    }

    /// Records a fingerprint confirmed with its owner, once `check` passed for it. Another `amane grant` may pin
    /// at the same moment, so under a lock the file is read again and the pin added to what it holds; then it is
    /// replaced atomically (mode 0600) and the folder synced, so that the pin survives a crash.
    mutating func pin(_ name: String, fingerprint: String) throws {
        let lockPath = path + ".lock"
        let lock = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lock >= 0 else { throw CLIError(.usage, "cannot open \(lockPath): \(String(cString: strerror(errno)))") }
        defer { close(lock) }
        while flock(lock, LOCK_EX) != 0 {
            guard errno == EINTR else { throw CLIError(.usage, "cannot lock \(lockPath): \(String(cString: strerror(errno)))") }
        }
        fingerprints = try Self.read(path)
        try check(name, servedFingerprint: fingerprint)
        guard fingerprints[name] == nil else { return }
        fingerprints[name] = Self.normalized(fingerprint)
        let text = (kind == .members ? "# Colleagues' key fingerprints you confirmed with them (amane grant NAME --fingerprint).\n"
                                     : "# Gateways' key fingerprints as amane reply first sealed to them.\n")
            + fingerprints.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)\n" }.joined()
        let staging = path + ".\(UUID().uuidString)"
        do {
            try SecretFile.createExclusive(at: staging, contents: Array(text.utf8))
            guard rename(staging, path) == 0 else { throw CLIError(.usage, "cannot replace \(path)") }
        } catch {
            unlink(staging)
            throw CLIError(.usage, "cannot write \(path): \(error)")
        }
        guard SecretFile.syncFolder(of: path) else { throw CLIError(.usage, "cannot sync the folder of \(path)") }
    }

    /// Refuses a key that differs from the one confirmed for `name`.
    func check(_ name: String, servedFingerprint: String) throws {
        guard let confirmed = fingerprints[name], confirmed != Self.normalized(servedFingerprint) else { return }
        let pinned = kind == .members ? "the one you confirmed with them" : "the one it gave when you first replied through \(name)"
        throw CLIError(.verification, "the relay gives \(name) the key \(servedFingerprint), not \(pinned) (\(confirmed)); nothing was sealed",
                       hint: "Do not go on: a name's key never changes, so the relay may be compromised. Tell your admin."
                           + (kind == .gateways ? " Only if they confirm that \(name) was enrolled anew (a relay rebuilt), remove its line from \(path)." : ""))
    }

    /// Checks the key a reply is sealed to against the gateway's pin, pinning it at the first reply through it.
    static func checkGatewayKey(_ replyKey: ReplyKey, fingerprint: String, profile: Profile) throws {
        var pinned = try PinnedKeys(profile: profile, kind: .gateways)
        guard let gateway = replyKey.gateway else {
            guard pinned.fingerprints.isEmpty else {
                throw CLIError(.verification, "the relay does not say which gateway sent this case, so its key cannot be checked against the ones you pinned; nothing was sealed",
                               hint: "A relay older than this amane does not say; otherwise it may be compromised. Tell your admin.")
            }
            return
        }
        try pinned.pin(gateway, fingerprint: fingerprint)
    }
}
