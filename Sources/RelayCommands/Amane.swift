public import ArgumentParser
import Foundation
import Synchronization
import RelayAPI
import RelayCore
import RelayFormat

/// `amane`: the responder, supervisor and admin tool. It decrypts on this machine only.
public struct Amane: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "amane",
        abstract: "Triage disclosures from the Amane Relay: list, claim, open (decrypted here), note, reply, refer and close.",
        discussion: """
            The profile folder ($AMANE_HOME, default ~/.config/amane, or --profile) holds config.yaml and your identity file. \
            config.yaml names the relay, ca, certificate and key, and may name identity (default identity.amane) and \
            passphraseFile; relative paths are from the profile folder.

            Passphrases come from --passphrase-file, AMANE_PASSPHRASE_FILE, the profile's passphraseFile or the terminal, \
            in that order; never from the command line.

            Exit codes: 0 success, 1 a usage or local error (a wrong argument, a missing or unreadable profile or file, \
            an ambiguous short id), 2 the relay refused (4xx), 3 the relay cannot be reached or TLS failed, \
            4 a key problem: wrong passphrase, damaged key file, or no key (or too old an amane) for something sealed, \
            5 the relay failed (5xx), 6 verification failed: the audit trail, or a sealed item that was altered or moved.

            A responder's day:
              amane inbox                     # what is waiting, urgent first
              amane claim c41e9a7b            # take a case by the short id inbox shows
              amane show c41e9a7b             # read it, decrypted on this machine
              amane reply c41e9a7b            # answer the reporter, written in $EDITOR
              amane refer c41e9a7b --to health --reason-file -

            Case text given with -m or --reason is seen by other users of the machine and kept in shell history. \
            With --json, a failure is JSON on standard output too: {"error", "hint", "exitCode"}, and "code" (the relay's \
            problem code) when the relay refused.
            """,
        version: RelayVersion.current,
        subcommands: [
            Inbox.self, Show.self, Claim.self, Release.self, Note.self, Reply.self, Refer.self, Close.self,
            Reopen.self, Assign.self, Hold.self, Keygen.self, RequestCertificate.self, Grant.self, Rotate.self, Keys.self, AuditCommand.self,
            Stats.self, Submit.self, Followup.self, Replies.self,
        ])

    public init() {}

    /// Parses and runs, then exits with the documented code.
    public static func runFromCommandLine(_ arguments: [String] = Array(CommandLine.arguments.dropFirst())) async -> Never {
        do {
            try checkCommandName(arguments.first)
            var command = try parseAsRoot(arguments)
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
            Foundation.exit(0)
        } catch let error as CLIError {
            report(error, json: arguments.contains("--json"))
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Foundation.exit(0)
            }
            // ArgumentParser's message begins with its own "Error: ", which CLIError adds again.
            var message = fullMessage(for: error)
            if message.hasPrefix("Error: ") { message.removeFirst(7) }
            let json = arguments.contains("--json")
            // For a script, the reason alone, and where to look: the usage line is for a person at a terminal.
            if json, let usage = message.range(of: "\nUsage: ") {
                let pointer = message[usage.upperBound...].split(separator: "\n").last.map { $0.trimmingCharacters(in: .whitespaces) }
                report(CLIError(.usage, String(message[..<usage.lowerBound]), hint: pointer), json: true)
            }
            report(CLIError(.usage, message), json: json)
        }
    }

    /// A mistyped command is named as one, with the command it most likely meant; ArgumentParser would speak of
    /// unexpected arguments.
    static func checkCommandName(_ first: String?) throws {
        guard let first, !first.hasPrefix("-") else { return }
        let names = configuration.subcommands.map { $0._commandName } + ["help"]
        guard !names.contains(first) else { return }
        let nearest = names.map { ($0, editDistance(first.lowercased(), $0)) }.min { $0.1 < $1.1 }
        let guess = nearest.flatMap { $0.1 <= 2 ? "Did you mean `amane \($0.0)`? " : nil } ?? ""
        throw CLIError(.usage, "'\(first)' is not an amane command", hint: "\(guess)`amane --help` lists them.")
    }

    /// Levenshtein distance: how many letters to add, remove or change to turn one word into the other.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var previous = Array(0...b.count)
        for (i, letter) in a.enumerated() {
            var current = [i + 1]
            for (j, other) in b.enumerated() {
                current.append(min(previous[j + 1] + 1, current[j] + 1, previous[j] + (letter == other ? 0 : 1)))
            }
            previous = current
        }
        return previous[b.count]
    }

    /// A failure goes to stderr as text, or with --json to stdout as JSON, for scripts (unless the command already
    /// gave its JSON answer, which comes with the failure, as `show` does for items that do not open).
    private static func report(_ error: CLIError, json: Bool) -> Never {
        if json, !Output.answered.load(ordering: .sequentiallyConsistent) {
            do {
                try error.json.map { try Output.json($0) } ?? Output.json(CLIError.JSONForm(error: error.message, hint: error.hint, exitCode: error.code.rawValue,
                                                                                       code: error.problemCode,
                                                                                       idempotencyKeyFile: error.idempotencyKeyFile))
            } catch {
                FileHandle.standardError.write(Data("cannot encode the error as JSON\n".utf8))
            }
        } else {
            FileHandle.standardError.write(Data((error.description + "\n").utf8))
        }
        Foundation.exit(error.code.rawValue)
    }
}

/// The profile a command works with, the passphrase file if it opens the personal key, and whether it prints JSON.
protocol ProfileChoice {
    var base: SharedOptions { get }
    var passphraseFile: String? { get }
}

extension ProfileChoice {
    var profile: String? { base.profile }
    var json: Bool { base.json }

    /// The options that chose this profile, for a command line to run again.
    var retryOptions: String {
        [profile.map { "--profile \($0) " }, passphraseFile.map { "--passphrase-file \($0) " }].compactMap { $0 }.joined()
    }
}

/// The options every command shows.
struct SharedOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The profile folder (default $AMANE_HOME, else ~/.config/amane).", valueName: "dir"))
    var profile: String?

    @Flag(help: "Print JSON (stable field names) instead of text.")
    var json = false
}

/// Options of the commands that never open the personal key. They take --passphrase-file without showing it,
/// so that a script may give it to every command.
struct ProfileOptions: ParsableArguments, ProfileChoice {
    @OptionGroup var base: SharedOptions

    @Option(name: .customLong("passphrase-file"), help: ArgumentHelp(valueName: "file", visibility: .hidden))
    var unusedPassphraseFile: String?

    var passphraseFile: String? { nil }
}

/// Options of the commands that open the personal key, with its passphrase.
struct GlobalOptions: ParsableArguments, ProfileChoice {
    @OptionGroup var base: SharedOptions

    @Option(name: .customLong("passphrase-file"), help: ArgumentHelp("Read the passphrase from this file (mode 0600) instead of the terminal.", valueName: "file"))
    var passphraseFile: String?
}

/// A profile, a client, and the identity once unlocked: what most commands need.
struct Session {
    let options: any ProfileChoice
    let profile: Profile
    let client: RelayClient

    static func with<T>(_ options: some ProfileChoice, _ body: (Session) async throws -> T) async throws -> T {
        let profile = try Profile.load(options.profile)
        let client = try RelayClient(profile: profile)
        do {
            let result = try await body(Session(options: options, profile: profile, client: client))
            await client.shutdown()
            return result
        } catch {
            await client.shutdown()
            throw error
        }
    }

    func unlock() throws -> SealingPrivateKey { try profile.unlock(passphraseFile: options.passphraseFile) }

    /// Every epoch key this member holds, opened from its grants; which one is current; and the epochs whose
    /// grant to this member does not open with this identity.
    func epochKeys(_ identity: SealingPrivateKey) async throws -> (keys: [String: SealingPrivateKey], current: String?, unopened: Set<String>) {
        epochKeys(identity, grants: try await client.get(APIPath.grants, as: GrantList.self).grants)
    }

    /// The same, from grants already fetched.
    func epochKeys(_ identity: SealingPrivateKey, grants: [GrantView]) -> (keys: [String: SealingPrivateKey], current: String?, unopened: Set<String>) {
        var keys: [String: SealingPrivateKey] = [:]
        var unopened: Set<String> = []
        for grant in grants {
            guard let sealed = Base64.decode(grant.sealed), let id = UUID(uuidString: grant.epoch),
                  let key = try? RelayFormat.Grant.open(sealed, epochID: id, with: identity) else {
                unopened.insert(grant.epoch)
                continue
            }
            keys[grant.epoch] = key
        }
        return (keys, grants.first(where: \.current)?.epoch, unopened)
    }

    func currentEpochKey(_ identity: SealingPrivateKey) async throws -> SealingPrivateKey {
        let (keys, current, unopened) = try await epochKeys(identity)
        if let current, unopened.contains(current) { throw Self.grantDoesNotOpen }
        guard let current, let key = keys[current] else {
            throw CLIError(.key, "you hold no key for the queue's current epoch",
                           hint: "Ask a colleague to run `amane grant <your name> --fingerprint \(identity.publicKey.fingerprint)`, or run `amane rotate` if the queue has no epoch yet.")
        }
        return key
    }

    static let grantDoesNotOpen = CLIError(.key, "your grant of the queue's current key does not open with your identity",
                                           hint: askSupervisorToMendGrant)
    static let askSupervisorToMendGrant = """
        Ask a supervisor to grant you the keys again (`amane grant <your name>`: a supervisor's grant replaces one that does not \
        open), and tell your admin: the audit trail names who granted it.
        """

    /// Resolves a short id to the one case it starts, or lists the candidates.
    func resolve(_ short: String) async throws -> String {
        var lowered = short.lowercased()
        if lowered.count == 32, lowered.allSatisfy(\.isHexDigit) {
            for offset in [20, 16, 12, 8] { lowered.insert("-", at: lowered.index(lowered.startIndex, offsetBy: offset)) }
        }
        if UUID(uuidString: lowered) != nil { return lowered }
        guard lowered.count >= 4, lowered.allSatisfy({ $0.isHexDigit || $0 == "-" }) else {
            throw CLIError(.usage, "'\(short)' is not a case id", hint: "Give the short id `amane inbox` shows, or a whole id.")
        }
        let page = try await client.get(APIPath.queue + "?idMatch=\(lowered)&limit=10", as: QueueListing.self)
        let matches = page.cases.map(\.id)
        switch matches.count {
        case 1: return matches[0]
        case 0: throw CLIError(.usage, "no case id starts or ends with '\(short)'", hint: "`amane inbox --all` lists the open cases, `amane inbox --state closed --all` the closed ones.")
        default:
            let count = page.next == nil ? "\(matches.count)" : "more than \(matches.count)"
            throw CLIError(.usage, "'\(short)' matches \(count) cases: \(matches.map(ShortID.of).joined(separator: ", "))",
                           hint: "Give one of these short ids: ids start with their time, so cases of one minute share their first digits.")
        }
    }
}

/// The short form of a case id: its last 8 hex digits, which are random (the first ones are a time stamp).
enum ShortID {
    static func of(_ id: String) -> String { String(id.suffix(8)) }
}

enum Output {
    /// Whether a command printed its JSON answer; a failure after that goes to stderr as text.
    static let answered = Atomic(false)

    static func json(_ value: some Encodable) throws {
        answer(try encode(value))
    }

    static func encode(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    /// Prints a command's JSON answer.
    static func answer(_ json: String) {
        print(json)
        answered.store(true, ordering: .sequentiallyConsistent)
    }

    /// Text that reporters and colleagues wrote, made inert for a terminal: a control character shows as
    /// `^[`, `^M` and the like, so that an escape sequence cannot rewrite the screen or the clipboard, and a
    /// carriage return cannot forge a line. Newlines and tabs stay; Arabic needs no explicit bidi controls.
    static func inert(_ text: String) -> String {
        var out = String.UnicodeScalarView()
        for scalar in text.replacingOccurrences(of: "\r\n", with: "\n").unicodeScalars {
            switch scalar.value {
            case 0x09, 0x0A: out.append(scalar)
            case 0x00..<0x20, 0x7F: out.append(contentsOf: "^\(Character(Unicode.Scalar(UInt8((scalar.value + 0x40) & 0x7F))))".unicodeScalars)
            // C1 controls, and the bidi overrides and isolates, which could reorder what a line seems to say.
            case 0x80..<0xA0, 0x202A...0x202E, 0x2066...0x2069: out.append(contentsOf: "\\u{\(String(scalar.value, radix: 16))}".unicodeScalars)
            default: out.append(scalar)
            }
        }
        return String(out)
    }

    /// What someone wrote, inert and indented as a block under its heading.
    static func indented(_ text: String) -> String {
        inert(text).split(separator: "\n", omittingEmptySubsequences: false).map { "   " + $0 }.joined(separator: "\n")
    }

    /// Colour only on a terminal, and never when NO_COLOR is set.
    static var colour: Bool {
        isatty(STDOUT_FILENO) == 1 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
    }

    static func paint(_ text: String, urgency: String) -> String {
        guard colour else { return text }
        let code = ["immediate": "1;31", "high": "33", "normal": "0", "low": "2"][urgency] ?? "0"
        return "\u{1B}[\(code)m\(text)\u{1B}[0m"
    }

    static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
    }

    static func age(_ iso: String, now: Date = Date()) -> String {
        guard let date = Timestamp.parse(iso) else { return "?" }
        return span(now.timeIntervalSince(date))
    }

    /// "45m", "2h", "2h45m", "3d", "3d5h": to the minute within two days, to the hour beyond; never rounded up.
    static func span(_ seconds: TimeInterval) -> String {
        let minutes = max(0, Int(seconds / 60))
        func and(_ part: Int, _ unit: String) -> String { part == 0 ? "" : "\(part)\(unit)" }
        if minutes < 60 { return "\(minutes)m" }
        if minutes < 48 * 60 { return "\(minutes / 60)h" + and(minutes % 60, "m") }
        return "\(minutes / 1440)d" + and(minutes % 1440 / 60, "h")
    }

    /// "overdue 25m" or "due in 10m" (`CaseView.slaDueAt`).
    static func sla(_ item: CaseView, now: Date = Date()) -> String? {
        guard let due = item.slaDueAt.flatMap(Timestamp.parse) else { return nil }
        let left = due.timeIntervalSince(now)
        guard abs(left) >= 60 else { return "due now" }
        return left < 0 ? "overdue \(span(-left))" : "due in \(span(left))"
    }

    /// What needs a responder's eye: the SLA, a reporter's follow-up, a hold.
    static func flags(_ item: CaseView, heldEpochs: Set<String>? = nil, now: Date = Date()) -> String {
        let keyless = item.epoch.map { epoch in heldEpochs.map { !$0.contains(epoch) } ?? false } ?? false
        return ([sla(item, now: now)] + [item.updated ? "updated" : nil, item.onHold ? "legal hold" : nil, keyless && !item.purged ? "no key" : nil])
            .compactMap { $0 }.joined(separator: ", ")
    }
}
