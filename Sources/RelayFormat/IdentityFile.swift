public import Foundation
import Crypto
import CryptoExtras
#if canImport(Glibc)
import Glibc
#endif

/// scrypt cost parameters, recorded in every identity file.
public struct ScryptParameters: Sendable, Equatable {
    public let logN: Int
    public let r: Int
    public let p: Int

    /// N = 2^17, r = 8, p = 1: about 0.4 s and 128 MiB on the machines we target.
    public static let `default` = ScryptParameters(logN: 17, r: 8, p: 1)

    /// Files with costs outside these bounds are refused before any work is done, so that an altered file
    /// cannot make the tool spend gigabytes or minutes before the passphrase is even checked.
    static let logNRange = 10...20
    static let rRange = 1...16
    static let pRange = 1...4
    /// scrypt needs 128·N·r bytes; at most twice the default's 128 MiB.
    static let maxMemoryBytes = 256 << 20
    /// N·r·p, at most four times the default's.
    static let maxWork = 4 << 20

    public init(logN: Int, r: Int, p: Int) {
        self.logN = logN
        self.r = r
        self.p = p
    }

    var isWithinBounds: Bool {
        guard Self.logNRange.contains(logN), Self.rRange.contains(r), Self.pRange.contains(p) else { return false }
        return 128 * (1 << logN) * r <= Self.maxMemoryBytes && (1 << logN) * r * p <= Self.maxWork
    }

    var text: String { "scrypt N=\(1 << logN) r=\(r) p=\(p)" }

    init?(text: String) {
        let parts = text.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "scrypt",
              parts[1].hasPrefix("N="), let n = Int(parts[1].dropFirst(2)), n > 0, n & (n - 1) == 0,
              parts[2].hasPrefix("r="), let r = Int(parts[2].dropFirst(2)),
              parts[3].hasPrefix("p="), let p = Int(parts[3].dropFirst(2)) else { return nil }
        self.init(logN: n.trailingZeroBitCount, r: r, p: p)
        guard self.text == text else { return nil }
    }
}

/// A responder's or gateway's personal key pair at rest: versioned text, the seed sealed with
/// AES-256-GCM under a key that scrypt derives from a passphrase. Every line before `secret:` is authenticated.
///
///     amane-identity v1
///     suite: XWingMLKEM768X25519_SHA256_AES_GCM_256
///     kdf: scrypt N=131072 r=8 p=1
///     salt: <base64url, 16 bytes>
///     public: amanepk1…
///     secret: <base64url: nonce ‖ sealed seed ‖ tag>
public enum IdentityFile {
    static let firstLine = "amane-identity v1"
    static let keys = ["suite", "kdf", "salt", "public", "secret"]

    public static func encode(_ key: SealingPrivateKey, passphrase: some Collection<UInt8>,
                              parameters: ScryptParameters = .default) throws(FormatError) -> String {
        var salt = [UInt8](repeating: 0, count: 16)
        var generator = SystemRandomNumberGenerator()
        for index in salt.indices { salt[index] = generator.next() }
        let authenticated = [
            firstLine,
            "suite: \(key.suite)",
            "kdf: \(parameters.text)",
            "salt: \(Base64URL.encode(salt))",
            "public: \(key.publicKey.text)",
        ].map { $0 + "\n" }.joined()
        let wrapping = try derive(passphrase, salt: salt, parameters: parameters)
        let sealed: [UInt8]
        do {
            let box = try AES.GCM.seal(key.rawRepresentation, using: wrapping, authenticating: Array(authenticated.utf8))
            sealed = Array(box.combined!)
        } catch {
            throw FormatError(.io, "could not seal the key")
        }
        return authenticated + "secret: \(Base64URL.encode(sealed))\n"
    }

    /// The public key, readable without the passphrase.
    public static func publicKey(in text: String) throws(FormatError) -> SealingPublicKey {
        try parse(text).publicKey
    }

    /// - Throws: `wrongPassphrase` when the passphrase does not open the file, `damagedKeyFile` when it is not a valid file.
    public static func decode(_ text: String, passphrase: some Collection<UInt8>) throws(FormatError) -> SealingPrivateKey {
        let parsed = try parse(text)
        let wrapping = try derive(passphrase, salt: parsed.salt, parameters: parsed.parameters)
        let seed: [UInt8]
        do {
            let box = try AES.GCM.SealedBox(combined: parsed.sealed)
            seed = Array(try AES.GCM.open(box, using: wrapping, authenticating: Array(parsed.authenticated.utf8)))
        } catch {
            throw FormatError(.wrongPassphrase, "the passphrase does not open this key file")
        }
        guard let key = try? SealingPrivateKey(suite: parsed.publicKey.suite, rawRepresentation: seed),
              key.publicKey == parsed.publicKey else { throw FormatError(.damagedKeyFile, "the key does not match its public key") }
        return key
    }

    /// Writes a new file with mode 0600; refuses to replace an existing one.
    public static func create(at path: String, key: SealingPrivateKey, passphrase: some Collection<UInt8>,
                              parameters: ScryptParameters = .default) throws(FormatError) {
        let text = try encode(key, passphrase: passphrase, parameters: parameters)
        try SecretFile.createExclusive(at: path, contents: Array(text.utf8))
    }

    public static func load(from path: String, passphrase: some Collection<UInt8>) throws(FormatError) -> SealingPrivateKey {
        try decode(try read(path), passphrase: passphrase)
    }

    public static func read(_ path: String) throws(FormatError) -> String {
        guard let data = FileManager.default.contents(atPath: path) else { throw FormatError(.io, "cannot read \(path)") }
        guard let text = String(data: data, encoding: .utf8) else { throw FormatError(.damagedKeyFile, "not text") }
        return text
    }

    private struct Parsed {
        let parameters: ScryptParameters
        let salt: [UInt8]
        let publicKey: SealingPublicKey
        let authenticated: String
        let sealed: [UInt8]
    }

    private static func parse(_ text: String) throws(FormatError) -> Parsed {
        let damaged = FormatError(.damagedKeyFile, "not an Amane identity file")
        guard text.utf8.count < 8192, text.hasSuffix("\n") else { throw damaged }
        let lines = text.dropLast().split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard lines.count == keys.count + 1 else { throw damaged }
        guard lines[0] == firstLine else {
            if lines[0].hasPrefix("amane-identity ") { throw FormatError(.unsupportedVersion, "identity file \(lines[0])") }
            throw damaged
        }
        var values: [String] = []
        for (line, key) in zip(lines.dropFirst(), keys) {
            guard line.hasPrefix(key + ": ") else { throw damaged }
            values.append(String(line.dropFirst(key.count + 2)))
        }
        guard let suite = SealingSuite(name: values[0]) else { throw FormatError(.unsupportedSuite, values[0]) }
        guard let parameters = ScryptParameters(text: values[1]), parameters.isWithinBounds else {
            throw FormatError(.damagedKeyFile, "unsupported key derivation parameters")
        }
        guard let salt = Base64URL.decode(values[2]), salt.count == 16,
              let publicKey = try? SealingPublicKey(text: values[3]), publicKey.suite == suite,
              let sealed = Base64URL.decode(values[4]), sealed.count == 12 + suite.privateKeyLength + 16 else { throw damaged }
        let authenticated = lines.prefix(keys.count).map { $0 + "\n" }.joined()
        return Parsed(parameters: parameters, salt: salt, publicKey: publicKey, authenticated: authenticated, sealed: sealed)
    }

    private static func derive(_ passphrase: some Collection<UInt8>, salt: [UInt8],
                               parameters: ScryptParameters) throws(FormatError) -> SymmetricKey {
        do {
            return try KDF.Scrypt.deriveKey(from: Array(passphrase), salt: salt, outputByteCount: 32,
                                            rounds: 1 << parameters.logN, blockSize: parameters.r, parallelism: parameters.p)
        } catch {
            throw FormatError(.io, "key derivation failed")
        }
    }
}

/// Files that hold secrets: created with mode 0600, never overwritten, flushed to disk.
package enum SecretFile {
    /// The permission bits of a file that its group or others may read or write; nil when only its owner may, or it is missing.
    /// Through a symbolic link: the link's own mode (777) says nothing of the file it leads to.
    package static func openToOthers(_ path: String) -> Int? {
        var status = stat()
        guard stat(path, &status) == 0, status.st_mode & 0o077 != 0 else { return nil }
        return Int(status.st_mode & 0o777)
    }

    package static func createExclusive(at path: String, contents: [UInt8]) throws(FormatError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            if errno == EEXIST { throw FormatError(.fileExists, "\(path) already exists; refusing to replace it") }
            throw FormatError(.io, "cannot create \(path): \(String(cString: strerror(errno)))")
        }
        var written = 0
        while written < contents.count {
            let n = contents[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { break }
            written += n
        }
        let flushed = written == contents.count && fsync(fd) == 0
        close(fd)
        guard flushed else {
            unlink(path)
            throw FormatError(.io, "cannot write \(path)")
        }
    }

    /// Flushes the folder holding `path`, so that a name just linked or renamed into it lasts a crash.
    package static func syncFolder(of path: String) -> Bool {
        let folder = open((path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { if folder >= 0 { close(folder) } }
        return folder >= 0 && fsync(folder) == 0
    }
}
