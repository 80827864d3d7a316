import Foundation
import RelayFormat
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A profile folder: `config.yaml` (relay URL, CA, client certificate and key, identity, passphrase file) and the identity.
struct Profile {
    static let keys = ["relay", "ca", "certificate", "key", "identity", "passphraseFile"]

    let directory: String
    var relay: String?
    var ca: String?
    var certificate: String?
    var key: String?
    var identity: String
    var passphraseFile: String?

    /// `--profile`, else `$AMANE_HOME`, else `~/.config/amane`.
    static func directory(_ option: String?) -> String {
        if let option { return option }
        if let home = ProcessInfo.processInfo.environment["AMANE_HOME"], !home.isEmpty { return home }
        // ~ is $HOME, as the shell has it; the password database only when HOME is unset.
        let home = ProcessInfo.processInfo.environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return (home as NSString).appendingPathComponent(".config/amane")
    }

    static func load(_ option: String?) throws -> Profile {
        let directory = directory(option)
        var profile = Profile(directory: directory, identity: (directory as NSString).appendingPathComponent("identity.amane"))
        let path = (directory as NSString).appendingPathComponent("config.yaml")
        guard let data = FileManager.default.contents(atPath: path) else { return profile }
        for (number, raw) in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let colon = line.firstIndex(of: ":") else {
                throw CLIError(.usage, "\(path), line \(number + 1): expected 'key: value'")
            }
            let key = String(line[..<colon])
            var value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = String(value.dropFirst().dropLast()) }
            let resolved = value.hasPrefix("/") || key == "relay" ? value : (directory as NSString).appendingPathComponent(value)
            switch key {
            case "relay": profile.relay = value
            case "ca": profile.ca = resolved
            case "certificate": profile.certificate = resolved
            case "key": profile.key = resolved
            case "identity": profile.identity = resolved
            case "passphraseFile": profile.passphraseFile = resolved
            default: throw CLIError(.usage, "\(path), line \(number + 1): unknown key '\(key)'", hint: "Known keys: \(keys.joined(separator: ", ")).")
            }
        }
        return profile
    }

    func require(_ value: String?, _ key: String) throws -> String {
        guard FileManager.default.fileExists(atPath: directory) else {
            throw CLIError(.usage, "no profile at \(directory)", hint: "Check --profile or $AMANE_HOME; `amane keygen` starts a new profile there.")
        }
        guard let value else {
            let file = (directory as NSString).appendingPathComponent("config.yaml")
            guard FileManager.default.fileExists(atPath: file) else {
                throw CLIError(.usage, "the profile \(directory) has no config.yaml", hint: "Write one there naming relay, ca, certificate and key (`amane --help` says how), or pass --profile.")
            }
            throw CLIError(.usage, "the profile \(directory) has no '\(key)'",
                           hint: "Add '\(key): …' to \(file), or pass --profile.")
        }
        return value
    }

    /// Unlocks the identity once for the command.
    func unlock(passphraseFile option: String?) throws -> SealingPrivateKey {
        guard FileManager.default.fileExists(atPath: identity) else {
            throw CLIError(.key, "no identity file at \(identity)", hint: "Run `amane keygen` first, or point 'identity:' in config.yaml at it.")
        }
        try PrivateFile.check(identity, "the identity file")
        let passphrase = try Passphrase.read(file: option ?? ProcessInfo.processInfo.environment["AMANE_PASSPHRASE_FILE"] ?? passphraseFile,
                                             prompt: "Passphrase for \(identity): ")
        do {
            return try IdentityFile.load(from: identity, passphrase: passphrase)
        } catch {
            switch error.code {
            case .wrongPassphrase: throw CLIError(.key, "wrong passphrase for \(identity)", hint: "Check for a typo or the keyboard layout, then try again.")
            case .io: throw CLIError(.key, "cannot read \(identity)")
            default: throw CLIError(.key, "\(identity) is damaged or not an Amane identity (\(error.code.rawValue))",
                                     hint: "Restore it from your backup, or make a new key with `amane keygen` and ask an admin to enroll it.")
            }
        }
    }
}

/// Refuses a secret file that others may read: a passphrase file, the client certificate's key, the identity.
enum PrivateFile {
    static func check(_ path: String, _ what: String) throws {
        guard FileManager.default.isReadableFile(atPath: path) else { throw CLIError(.usage, "cannot read \(what) \(path)") }
        if let mode = SecretFile.openToOthers(path) {
            throw CLIError(.usage, "\(what) \(path) is open to other users (mode \(String(mode, radix: 8)))", hint: "Run: chmod 600 \(path)")
        }
    }
}

/// The profile's key for content tags (`amane submit --seal`): 32 random bytes, made on first use, mode 0600.
enum ContentTagSecret {
    static let fileName = "content-tag.secret"
    static let size = 32

    static func load(in directory: String) throws -> [UInt8] {
        let path = (directory as NSString).appendingPathComponent(fileName)
        if !FileManager.default.fileExists(atPath: path) { try create(path) }
        try PrivateFile.check(path, "the content tag secret")
        guard let data = FileManager.default.contents(atPath: path), data.count == size else {
            throw CLIError(.key, "\(path) is damaged: it must hold \(size) bytes",
                           hint: "Remove it; a new one is made. A retry of a submission sealed before then is refused as other content (409).")
        }
        return Array(data)
    }

    /// Written in full under another name, then linked into place: two first runs at once agree on one secret.
    private static func create(_ path: String) throws {
        var secret = [UInt8](repeating: 0, count: size)
        var generator = SystemRandomNumberGenerator()
        for index in secret.indices { secret[index] = generator.next() }
        let draft = path + ".\(UUID().uuidString).draft"
        defer { unlink(draft) }
        let readOnly = "A profile folder mounted read-only needs it made beforehand: head -c \(size) /dev/urandom > \(path); chmod 600 \(path)"
        do { try SecretFile.createExclusive(at: draft, contents: secret) } catch {
            throw CLIError(.key, "cannot make the content tag secret: \(error.plainReason)", hint: readOnly)
        }
        guard link(draft, path) == 0 || errno == EEXIST else {
            throw CLIError(.key, "cannot make the content tag secret \(path): \(String(cString: strerror(errno)))", hint: readOnly)
        }
        // A tag sent before a crash must be made again by the retry after it: the name must last too.
        _ = SecretFile.syncFolder(of: path)
    }
}

/// Passphrases come from a file or the terminal, never from argv or an environment value.
enum Passphrase {
    static func read(file: String?, prompt: String) throws -> [UInt8] {
        if let file {
            try PrivateFile.check(file, "the passphrase file")
            guard let data = FileManager.default.contents(atPath: file) else { throw CLIError(.usage, "cannot read the passphrase file \(file)") }
            var bytes = Array(data)
            while let last = bytes.last, last == 0x0a || last == 0x0d { bytes.removeLast() }
            return bytes
        }
        return try fromTerminal(prompt)
    }

    /// Reads a line from /dev/tty with echo off.
    static func fromTerminal(_ prompt: String) throws -> [UInt8] {
        let fd = open("/dev/tty", O_RDWR | O_NOCTTY)
        guard fd >= 0 else {
            throw CLIError(.usage, "no terminal to ask for the passphrase",
                           hint: "Pass --passphrase-file FILE or set AMANE_PASSPHRASE_FILE (a file with mode 0600).")
        }
        defer { close(fd) }
        // Echo goes off before the prompt appears, so nothing typed after it is ever shown or discarded.
        var saved = termios()
        tcgetattr(fd, &saved)
        var silent = saved
        silent.c_lflag &= ~tcflag_t(ECHO)
        // Ctrl-C (or a kill) while echo is off must not leave the terminal silent for whatever runs next.
        Interruptions.begin()
        tcsetattr(fd, TCSANOW, &silent)
        defer {
            tcsetattr(fd, TCSANOW, &saved)
            _ = write(fd, "\n", 1)
            Interruptions.end()
        }
        _ = prompt.withCString { write(fd, $0, strlen($0)) }
        var bytes: [UInt8] = []
        var byte: UInt8 = 0
        // A signal may land on any thread and leave this read blocked, so it waits in short polls and looks between them.
        while Interruptions.signal == nil {
            var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&ready, 1, 100) >= 0 || errno == EINTR else { break }
            guard ready.revents != 0 else { continue }
            guard Glibc.read(fd, &byte, 1) == 1, byte != 0x0a, byte != 0x0d else { break }
            bytes.append(byte)
        }
        return bytes
    }
}

/// Notes INT, HUP, TERM and QUIT for a while instead of dying of them, so that the caller can put things right
/// first (the terminal's echo, a draft on disk). A signal ignored on entry (nohup) stays ignored. `end` puts the
/// earlier actions back, then dies of a signal that was noted and not taken, as it would have at once.
enum Interruptions {
    private static let noted = Atomic<Int32>(0)
    private static let signals = [SIGINT, SIGHUP, SIGTERM, SIGQUIT]
    nonisolated(unsafe) private static var earlier: [Int32: __sighandler_t?] = [:]

    static func begin() {
        noted.store(0, ordering: .sequentiallyConsistent)
        for number in signals {
            let previous = Glibc.signal(number) { Interruptions.noted.store($0, ordering: .sequentiallyConsistent) }
            earlier[number] = previous
            if unsafeBitCast(previous, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self) { Glibc.signal(number, SIG_IGN) }
        }
    }

    /// The signal noted since `begin`, if any.
    static var signal: Int32? {
        let number = noted.load(ordering: .sequentiallyConsistent)
        return number == 0 ? nil : number
    }

    /// The signal noted since `begin`, which the caller now deals with; `end` will not raise it again.
    static func take() -> Int32? {
        let number = noted.exchange(0, ordering: .sequentiallyConsistent)
        return number == 0 ? nil : number
    }

    /// Waits a moment for `signal` to be noted, when it is one of those handled: a signal sent to the process
    /// group reaches every member, but each in its own time.
    static func awaitSignal(if signal: Int32) {
        guard signals.contains(signal) else { return }
        for _ in 0..<100 where self.signal == nil { usleep(2_000) }
    }

    static func end() {
        for number in signals { Glibc.signal(number, earlier[number] ?? SIG_DFL) }
        if let number = take() { die(of: number) }
    }

    /// Dies of `signal`, as the shell that started amane expects. Sent to the process, not raised: this thread
    /// may be one that blocks it.
    static func die(of signal: Int32) -> Never {
        Glibc.signal(signal, SIG_DFL)
        kill(getpid(), signal)
        for _ in 0..<100 { usleep(10_000) }
        _exit(128 + signal)
    }
}
