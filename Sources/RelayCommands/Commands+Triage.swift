import ArgumentParser
import CRelayProcess
import Foundation
import RelayAPI
import RelayCore
import RelayFormat

struct Inbox: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the open queue, urgent first, then oldest.",
        discussion: """
            FLAGS: "due in 10m" or "overdue 25m" for a case no one has claimed, or one whose holder has not opened the \
            reporter's follow-up, against the wait the triage policy allows its urgency; "updated" when the reporter followed up since its holder last opened it with the key the follow-up is sealed to; "legal hold" when a \
            supervisor keeps it from being purged after it closes (it does not pause the case); "no key" when it is sealed to a queue key you do \
            not hold, so you can neither open nor claim it (a colleague who holds it grants it to you: `amane grant`).

            Examples: amane inbox · amane inbox --state new --urgency immediate · amane inbox --overdue --all · amane inbox --state closed · \
            amane inbox --mine --all --json
            """)

    @OptionGroup var global: ProfileOptions
    @Option(help: "Only cases in this state (new, claimed, in_progress, referred, closed); repeatable. Default: every state but closed.")
    var state: [String] = []
    @Option(help: "Only this urgency (immediate, high, normal, low).") var urgency: String?
    @Option(help: "Only this category code.") var category: String?
    @Flag(help: "Only cases assigned to you.") var mine = false
    @Flag(help: "Only cases past their SLA (flagged \"overdue\"): what an SLA page is about.") var overdue = false
    @Flag(help: "Follow every page, not just the first.") var all = false
    @Option(help: "Cases per page (1-500).") var limit = 50
    @Option(help: ArgumentHelp("Start after this point: the `next` of an earlier --json page.", valueName: "cursor")) var after: String?

    static let openStates = ["new", "claimed", "in_progress", "referred"]

    func validate() throws {
        guard (1...500).contains(limit) else { throw ValidationError("--limit is 1 to 500") }
    }

    func run() async throws {
        var query = (state.isEmpty ? Self.openStates : state).map { "state=\($0)" }
        if let urgency { query.append("urgency=\(urgency)") }
        if let category { query.append("category=\(category)") }
        if mine { query.append("mine=true") }
        if overdue { query.append("overdue=true") }
        query.append("limit=\(limit)")
        let (listing, held) = try await Session.with(global) { session in
            var cases: [CaseView] = []
            var cursor = after
            repeat {
                let page = try await session.client.get(APIPath.queue + "?" + (query + (cursor.map { ["cursor=\($0)"] } ?? [])).joined(separator: "&"), as: QueueListing.self)
                cases += page.cases
                cursor = page.next
            } while all && cursor != nil
            let held = Set(try await session.client.get(APIPath.grants, as: GrantList.self).grants.map(\.epoch))
            return (QueueListing(cases: cases, next: cursor), held)
        }
        if global.json { return try Output.json(listing) }
        guard !listing.cases.isEmpty else {
            let filtered = !state.isEmpty || urgency != nil || category != nil || mine
            return print(overdue ? "No case is past its SLA\(filtered ? " for these filters" : "")."
                         : "The queue is empty for these filters\(state.isEmpty ? " (closed cases: --state closed)" : "").")
        }
        print(Output.pad("ID", 10) + Output.pad("URGENCY", 11) + Output.pad("AGE", 6) + Output.pad("CATEGORY", 22) + Output.pad("LANG", 5)
              + Output.pad("CHANNEL", 10) + Output.pad("STATE", 12) + Output.pad("ASSIGNEE", 16) + "FLAGS")
        for item in listing.cases {
            let line = Output.pad(ShortID.of(item.id), 10) + Output.pad(item.urgency, 11) + Output.pad(Output.age(item.receivedAt), 6)
                + Output.pad(item.category, 22) + Output.pad(item.language, 5) + Output.pad(item.channel, 10) + Output.pad(item.state, 12)
                + Output.pad(item.assignee ?? "-", 16) + Output.flags(item, heldEpochs: held)
            print(Output.paint(line, urgency: item.urgency))
        }
        if listing.next != nil { print("More cases follow: `amane inbox --all` lists them, or narrow with --state, --urgency or --mine.") }
        if overdue, listing.cases.contains(where: { $0.state != CaseState.new.rawValue }) {
            print("""
                A held case is overdue until its holder opens the reporter's follow-up (`amane show ID`). If they are away, a \
                supervisor puts a referred case back in the queue (`amane reopen ID`), and gives a claimed one to a colleague \
                (`amane assign ID NAME`: overdue until they open it) or back to the queue (`amane release ID`).
                """)
        }
    }
}

/// One decrypted entry of a case, as `show --json` prints it.
struct CaseEntry: Codable {
    var id: String
    var kind: String
    var author: String
    var createdAt: String
    /// A follow-up that made the case more urgent: to what.
    var raisedUrgency: String?
    var text: String?
    var answers: [String: AnswerValue]?
    var error: String?
}

struct CaseReading: Codable {
    var `case`: CaseView
    var entries: [CaseEntry]
}

struct Show: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fetch a case and decrypt it here: the disclosure, follow-ups, notes and replies in time order.",
        discussion: "Opening a case is recorded in the audit trail. Example: amane show c41e9a7b · amane show c41e9a7b --output case.txt")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The case id, or the short id `amane inbox` shows.") var id: String
    @Option(help: ArgumentHelp("Write the decrypted case to this file (mode 0600) instead of the screen. It stays readable on this disk until you delete it: prefer the screen.", valueName: "file")) var output: String?
    @Flag(help: "Replace the --output file if it exists.") var force = false

    func run() async throws {
        if let output, FileManager.default.fileExists(atPath: output), !force {
            throw CLIError(.usage, "\(output) exists; refusing to write decrypted content over it", hint: "Choose another file, or add --force.")
        }
        let (reading, failures, fingerprint) = try await Session.with(global) { session in
            let identity = try session.unlock()
            let caseID = try await session.resolve(id)
            let file = try await session.client.get(APIPath.disclosure(caseID), as: CaseFile.self)
            let (keys, _, unopenedGrants) = try await session.epochKeys(identity)
            let fingerprint = identity.publicKey.fingerprint
            var entries: [CaseEntry] = []
            var failures: [Unopened] = []
            for object in ([file.disclosure].compactMap { $0 } + file.items) {
                let (entry, failure) = Self.open(object, caseID: caseID, keys: keys, unopenedGrants: unopenedGrants)
                entries.append(entry)
                if let failure { failures.append(failure) }
            }
            let reading = CaseReading(case: file.case, entries: entries.sorted { ($0.createdAt, $0.kind == "disclosure" ? 0 : 1) < ($1.createdAt, $1.kind == "disclosure" ? 0 : 1) })
            return (reading, failures, fingerprint)
        }
        let text: String
        if global.json {
            text = try Output.encode(reading)
        } else {
            text = Self.render(reading)
        }
        if let output {
            if force { try? FileManager.default.removeItem(atPath: output) }
            do { try SecretFile.createExclusive(at: output, contents: Array((text + "\n").utf8)) } catch {
                throw CLIError(.usage, error.reason, hint: error.code == .fileExists ? "Add --force to replace it." : nil)
            }
            if global.json { try Output.json(["wrote": output]) } else { print("Wrote the decrypted case to \(output) (mode 0600).") }
        } else {
            if global.json { Output.answer(text) } else { print(text) }
        }
        if let error = Self.failure(failures, of: reading.entries.count, fingerprint: fingerprint) { throw error }
    }

    /// Why an item did not open.
    enum Unopened: CaseIterable {
        case noKey, grantDoesNotOpen, unknownFormat, altered

        var explanation: String {
            switch self {
            case .noKey: "sealed to a queue key you do not hold"
            case .grantDoesNotOpen: "sealed to a queue key whose grant to you does not open with your identity"
            case .unknownFormat: "sealed in a format this amane does not read (from a newer relay or gateway, or altered)"
            case .altered: "altered, moved from another case, or not what they claim"
            }
        }

        func hint(fingerprint: String) -> String {
            switch self {
            case .noKey: "Read your fingerprint to a colleague who holds the key; they run `amane grant <your name> --fingerprint \(fingerprint)`."
            case .grantDoesNotOpen: Session.askSupervisorToMendGrant
            case .unknownFormat: "Upgrade amane; if the newest amane does not read it either, tell your admin."
            case .altered: """
                Tell your admin: the relay's database may have been tampered with (SECURITY.md: what a compromised relay can do), \
                or, for a disclosure or follow-up, the gateway that sealed it on its side sealed it wrongly.
                """
            }
        }
    }

    /// What opened is already printed; the exit code says that something did not: 6 when altered, else 4.
    static func failure(_ failures: [Unopened], of total: Int, fingerprint: String) -> CLIError? {
        guard !failures.isEmpty else { return nil }
        let reasons = Unopened.allCases.filter(failures.contains)
        let counted = reasons.map { reason in "\(failures.filter { $0 == reason }.count) \(reason.explanation)" }
        return CLIError(reasons.contains(.altered) ? .verification : .key,
                        "\(failures.count) of \(total) items in this case did not open: \(counted.joined(separator: "; "))",
                        hint: reasons.map { $0.hint(fingerprint: fingerprint) }.joined(separator: "\n"))
    }

    static func open(_ object: SealedObjectView, caseID: String, keys: [String: SealingPrivateKey],
                     unopenedGrants: Set<String>) -> (CaseEntry, Unopened?) {
        var entry = CaseEntry(id: object.id, kind: object.kind, author: object.author, createdAt: object.createdAt,
                              raisedUrgency: object.raisedUrgency.flatMap(Urgency.init(rawValue:))?.rawValue)
        func fail(_ reason: Unopened) -> (CaseEntry, Unopened?) {
            entry.error = "\(reason.explanation) (epoch \(object.epoch))"
            return (entry, reason)
        }
        guard let key = keys[object.epoch] else { return fail(unopenedGrants.contains(object.epoch) ? .grantDoesNotOpen : .noKey) }
        guard let kind = ObjectKind(name: object.kind) else { return fail(.unknownFormat) }
        guard let envelope = Base64.decode(object.sealed), let caseUUID = UUID(uuidString: caseID),
              let objectID = kind == .disclosure ? caseUUID : UUID(uuidString: object.id) else { return fail(.altered) }
        let plaintext: [UInt8]
        do {
            plaintext = try Envelope.open(envelope, with: key, kind: kind, objectID: objectID, caseID: kind.belongsToCase ? caseUUID : nil)
        } catch {
            return fail([.unsupportedVersion, .unsupportedSuite].contains(error.code) ? .unknownFormat : .altered)
        }
        if kind == .disclosure || kind == .followup, let content = try? JSONDecoder().decode(DisclosureContent.self, from: Data(plaintext)) {
            entry.text = content.narrative
            entry.answers = content.answers
        } else {
            entry.text = String(decoding: plaintext, as: UTF8.self)
        }
        return (entry, nil)
    }

    static func render(_ reading: CaseReading) -> String {
        let item = reading.case
        var lines = [
            "Case \(item.id)",
            "  \(item.urgency) · \(item.category) · \(item.language) · \(item.channel)\(item.region.map { " · \($0)" } ?? "")",
            "  state \(item.state)\(item.assignee.map { ", assigned to \($0)" } ?? "")\(item.onHold ? ", legal hold" : "")\(item.referral.map { item.state == CaseState.referred.rawValue ? ", referred to \($0)" : ", was referred to \($0)" } ?? "")\(item.outcome.map { ", outcome \($0)" } ?? "")",
            "  received \(item.receivedAt)\(Output.sla(item).map { item.state == CaseState.new.rawValue ? ", unclaimed, \($0)" : ", a follow-up unopened by its holder, \($0)" } ?? "")",
            "",
        ]
        if item.purged {
            lines.insert("  purged after the retention period: the disclosure, follow-ups, notes and replies are gone; only these labels remain", at: lines.count - 1)
        }
        for entry in reading.entries {
            // One line whatever the relay sends: a line break in a name would forge what looks like opened text.
            lines.append(Output.inert("── \(entry.kind) · \(entry.author) · \(entry.createdAt)\(entry.raisedUrgency.map { " · raised the case to \($0)" } ?? "")")
                .replacingOccurrences(of: "\n", with: " "))
            if let error = entry.error { lines.append("   [\(error)]") }
            if let text = entry.text { lines.append(Output.indented(text)) }
            for (question, answer) in (entry.answers ?? [:]).sorted(by: { $0.key < $1.key }) {
                switch answer {
                case .text(let value): lines.append(Output.inert("   \(question): \(value)").replacingOccurrences(of: "\n", with: " "))
                case .list(let values): lines.append(Output.inert("   \(question): \(values.joined(separator: ", "))").replacingOccurrences(of: "\n", with: " "))
                }
            }
            lines.append("")
        }
        return lines.joined(separator: "\n")
    }
}

/// Claim, release, and the transitions that need no sealed text.
struct CaseChange {
    static func apply(_ global: some ProfileChoice, id: String, path: (String) -> String, body: some Encodable, verb: String) async throws {
        let view = try await Session.with(global) { session in
            let caseID = try await session.resolve(id)
            return try await session.client.post(path(caseID), body, as: CaseView.self)
        }
        try report(view, verb: verb, json: global.json)
    }

    static func report(_ view: CaseView, verb: String, json: Bool) throws {
        if json { return try Output.json(view) }
        var line = "\(verb) case \(ShortID.of(view.id)): now \(view.state)"
        if let assignee = view.assignee { line += ", assigned to \(assignee)" }
        if let expiry = view.claimExpiresAt {
            line += ", claimed until \(expiry); it returns to the queue unless \(view.assignee ?? "its holder") opens the case or writes to it by then"
        }
        print(line + ".")
    }
}

struct Empty: Codable {}

struct Claim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Claim a case: it is yours for the lease (15 minutes by default), renewed as you work.",
                                                    discussion: "Example: amane claim c41e9a7b")
    @OptionGroup var global: ProfileOptions
    @Argument(help: "The case id, or the short id `amane inbox` shows.") var id: String

    func run() async throws {
        try await CaseChange.apply(global, id: id, path: { APIPath.disclosure($0, .claim) }, body: Empty(), verb: "Claimed")
    }
}

struct Release: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Release a case you claimed, back to the queue.", discussion: "Example: amane release c41e9a7b")
    @OptionGroup var global: ProfileOptions
    @Argument(help: "The case id, or the short id `amane inbox` shows.") var id: String

    func run() async throws {
        try await CaseChange.apply(global, id: id, path: { APIPath.disclosure($0, .release) }, body: Empty(), verb: "Released")
    }
}

struct Reopen: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Reopen a closed or referred case (supervisors).", discussion: "Example: amane reopen c41e9a7b")
    @OptionGroup var global: ProfileOptions
    @Argument(help: "The case id, or the short id `amane inbox` shows.") var id: String

    func run() async throws {
        try await CaseChange.apply(global, id: id, path: { APIPath.disclosure($0, .transition) }, body: TransitionRequest(action: "reopen"), verb: "Reopened")
    }
}

struct Assign: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Assign a case to a responder (supervisors).", discussion: "Example: amane assign c41e9a7b amina")
    @OptionGroup var global: ProfileOptions
    @Argument(help: "The case id, or the short id `amane inbox` shows.") var id: String
    @Argument(help: "The responder's name.") var name: String

    func run() async throws {
        let (view, previous) = try await Session.with(global) { session in
            let caseID = try await session.resolve(id)
            let previous = try? await session.client.get(APIPath.queue + "?idMatch=\(caseID)&limit=1", as: QueueListing.self).cases.first?.assignee
            return (try await session.client.post(APIPath.disclosure(caseID, .assign), AssignRequest(to: name), as: CaseView.self), previous)
        }
        try CaseChange.report(view, verb: "Assigned", json: global.json)
        if let previous, previous != name, !global.json { print("\(previous) held it until now: tell them it is no longer theirs.") }
    }
}

struct Hold: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Set or lift a legal hold, which keeps a case from being purged once it is closed (supervisors).",
        discussion: """
            A hold does not pause a case: an open case on hold still waits for, or stays with, its responder. \
            Use it when a case may be needed later (the police or a court asked), before or after it closes.

            Example: amane hold c41e9a7b --on
            """)
    @OptionGroup var global: ProfileOptions
    @Argument(help: "The case id, or the short id `amane inbox` shows.") var id: String
    @Flag(name: .customLong("on"), help: "Set the legal hold.") var on = false
    @Flag(name: .customLong("off"), help: "Lift the legal hold: once closed past the retention period, the case is purged.") var off = false

    func validate() throws {
        guard on != off else { throw ValidationError("give exactly one of --on and --off") }
    }

    func run() async throws {
        try await CaseChange.apply(global, id: id, path: { APIPath.disclosure($0, .hold) }, body: HoldRequest(on: on), verb: on ? "Put a legal hold on" : "Lifted the legal hold on")
    }
}

/// Where a note's or reply's text comes from: $EDITOR, --file, or -m.
struct TextInput: ParsableArguments {
    @Option(name: [.customShort("m"), .long], help: "The text. Other users of this machine can see it (ps), and your shell history keeps it: prefer $EDITOR or --file.")
    var message: String?
    @Option(help: ArgumentHelp("Read the text from this file; - reads standard input.", valueName: "file")) var file: String?

    func validate() throws {
        if message != nil, file != nil { throw ValidationError("give the text with -m or with --file, not both") }
    }

    /// The text; an editor's draft file is named for what it holds (`reply-to-case-1d6767d8.txt`), which editors show.
    func read(draft: String) throws -> String {
        let text: String
        if let message {
            CaseText.warnAboutCommandLine("-m")
            text = message
        } else if let file {
            text = try CaseText.read(file)
        } else {
            text = try Self.edit(draft: draft)
        }
        return try CaseText.trimmed(text)
    }

    var isFromEditor: Bool { message == nil && file == nil }

    /// Opens $EDITOR on a file in a private folder in memory where there is one (the login's runtime folder, or
    /// /dev/shm), then removes the folder with whatever swap or backup copies the editor left beside the file.
    /// A signal that reaches amane (Ctrl-C, a hangup; editors take Ctrl-C themselves) removes the draft, then
    /// amane dies of it: nothing is sent.
    static func edit(draft: String) throws -> String {
        guard let editor = ProcessInfo.processInfo.environment["EDITOR"], !editor.isEmpty else {
            throw CLIError(.usage, "no text given", hint: "Use --file FILE (or --file - to type or paste it), or set $EDITOR.")
        }
        let root = scratchRoot
        removeAbandonedDrafts(in: root)
        let folder = (root as NSString).appendingPathComponent(draftPrefix + UUID().uuidString)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        func removeDraft() {
            do { try FileManager.default.removeItem(atPath: folder) } catch {
                FileHandle.standardError.write(Data("Warning: cannot remove the draft folder \(folder); remove it yourself.\n".utf8))
            }
        }
        Interruptions.begin()
        let outcome = Result { () throws -> String? in
            let name = String(draft.map { $0.isASCII && ($0.isLetter || $0.isNumber) ? $0 : "-" })
            let path = (folder as NSString).appendingPathComponent(name + ".txt")
            try SecretFile.createExclusive(at: path, contents: [])
            let status = try runInThisProcessGroup(["/bin/sh", "-c", "\(editor) \"$0\"", path])
            // An editor killed by a signal sent to the whole group: amane has it too, maybe not handled yet.
            Interruptions.awaitSignal(if: status & 0x7f)
            return status == 0 ? FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) } : nil
        }
        removeDraft()
        if let signal = Interruptions.take() {
            FileHandle.standardError.write(Data("Cancelled: nothing was sent, and the draft is removed.\n".utf8))
            Interruptions.die(of: signal)
        }
        Interruptions.end()
        guard let text = try outcome.get() else { throw CLIError(.usage, "the editor failed; nothing was sent, and the draft is removed") }
        return text
    }

    static let draftPrefix = "amane-draft-"

    /// Owned by this user, and only they may read, write or enter it (lstat's view: a link is not followed).
    static func isPrivateToUser(_ attributes: [FileAttributeKey: Any]) -> Bool {
        (attributes[.ownerAccountID] as? NSNumber)?.uint32Value == getuid() && ((attributes[.posixPermissions] as? NSNumber)?.intValue ?? 0) & 0o777 == 0o700
    }

    /// Removes this user's draft folders untouched for a day: what an amane killed outright (SIGKILL, a crash) left.
    static func removeAbandonedDrafts(in root: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: root) else { return }
        func untouchedForADay(_ path: String, directory: Bool) -> Bool {
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else { return !directory }
            let isDirectory = attributes[.type] as? FileAttributeType == .typeDirectory
            let modified = attributes[.modificationDate] as? Date ?? Date()
            return (!directory || (isDirectory && isPrivateToUser(attributes))) && Date().timeIntervalSince(modified) > 24 * 3600
        }
        for name in names where name.hasPrefix(draftPrefix) && UUID(uuidString: String(name.dropFirst(draftPrefix.count))) != nil {
            let path = (root as NSString).appendingPathComponent(name)
            guard untouchedForADay(path, directory: true), untouchedForADay(path + "/text.txt", directory: false) else { continue }
            try? FileManager.default.removeItem(atPath: path)
        }
    }

    /// Runs a program and returns its wait status. It stays in amane's process group, which owns the terminal
    /// (Foundation's Process starts a group of its own, where an editor that touches the terminal is stopped),
    /// with no signal blocked and the default actions for those amane handles.
    static func runInThisProcessGroup(_ arguments: [String]) throws -> Int32 {
        var argv = arguments.map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t(), defaults = sigset_t()
        sigemptyset(&none)
        sigemptyset(&defaults)
        for number in [SIGINT, SIGHUP, SIGTERM, SIGQUIT, SIGTSTP, SIGPIPE, SIGCHLD] { sigaddset(&defaults, number) }
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        let started = posix_spawn(&pid, arguments[0], nil, &attributes, &argv, environ)
        guard started == 0 else { throw CLIError(.usage, "cannot start the editor: \(String(cString: strerror(started)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 {
            guard errno == EINTR else { throw CLIError(.usage, "lost track of the editor: \(String(cString: strerror(errno)))") }
        }
        return status
    }

    /// The folder drafts go in: the login's runtime folder or /dev/shm when they are in memory (tmpfs), else
    /// the temporary folder. Each draft gets a folder of its own in it that only this user can enter.
    static var scratchRoot: String {
        func inMemory(_ path: String) -> Bool { relay_is_in_memory(path) != 0 }
        if let runtime = ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"],
           let attributes = try? FileManager.default.attributesOfItem(atPath: runtime), isPrivateToUser(attributes), inMemory(runtime) {
            return runtime
        }
        return inMemory("/dev/shm") ? "/dev/shm" : FileManager.default.temporaryDirectory.path
    }

    static let mayHaveReached = "What you wrote may have reached the relay: look with `amane show` before you send it again."

    /// A post of the sealed text that went out and got no answer, or a failure: the relay may have stored it.
    struct PossiblyStored: Error {
        let error: CLIError
    }

    /// Posts the sealed text, and again after each of `delays` while the relay cannot be reached, gives no answer
    /// or fails: a network that drops for a moment loses nothing. The text is sealed under an id of its own, so
    /// the relay refuses a second copy as `duplicate`, which then says an earlier post stored it. A failure after
    /// which it may be stored is marked so.
    static func posting(retryingAfter delays: [Duration] = [.seconds(1), .seconds(4)], _ post: () async throws -> Void) async throws {
        var mayBeStored = false
        for (attempt, delay) in (delays.map { Optional($0) } + [nil]).enumerated() {
            do {
                return try await post()
            } catch let error as CLIError where attempt > 0 && error.problemCode == ProblemCode.duplicate.rawValue {
                return
            } catch let error as CLIError where [.unreachable, .server].contains(error.code) && !error.secureConnectionFailed {
                mayBeStored = mayBeStored || error.outcomeUnknown || (error.code == .server && !error.storedNothing)
                guard let delay else { throw mayBeStored ? PossiblyStored(error: error) : error }
                FileHandle.standardError.write(Data("\(error.message); sending it again in \(delay.components.seconds) s.\n".utf8))
                try await Task.sleep(for: delay)
            } catch {
                // After a post that may have stored it, a refusal (the case moved on, the key rotated) does not say it did not.
                guard mayBeStored else { throw error }
                throw PossiblyStored(error: error as? CLIError ?? CLIError(.usage, "\(error)"))
            }
        }
    }

    /// Says what became of text typed in the editor when sending it failed, and shows it on the terminal (never
    /// on disk, never in --json output) to copy. Only a post that went out unanswered, or failed, may have stored it.
    func notSent(_ error: any Error, text: String, json: Bool) -> any Error {
        let possiblyStored = error as? PossiblyStored
        let failure = possiblyStored?.error ?? error
        guard isFromEditor else {
            guard let possiblyStored else { return failure }
            return possiblyStored.error.with(hint: [possiblyStored.error.hint, Self.mayHaveReached].compactMap { $0 }.joined(separator: "\n"))
        }
        let error = failure as? CLIError ?? CLIError(.usage, "\(failure)")
        let fate = possiblyStored != nil
            ? "\(Self.mayHaveReached) No copy of it was kept."
            : "What you wrote was not sent, and no copy of it was kept."
        var hint = [error.hint, fate].compactMap { $0 }
        if !json, isatty(STDERR_FILENO) == 1 { hint.append("Here it is, to copy:\n\n\(text)\n") }
        return error.with(hint: hint.joined(separator: "\n"))
    }
}

/// A refer or close reason: --reason-file keeps it off the command line.
struct ReasonInput: ParsableArguments {
    @Option(help: "Why, for the record (sealed). Other users of this machine can see it (ps), and your shell history keeps it: prefer --reason-file.")
    var reason: String?
    @Option(name: .customLong("reason-file"), help: ArgumentHelp("Read the reason from this file; - reads standard input.", valueName: "file"))
    var reasonFile: String?

    func validate() throws {
        if reason != nil, reasonFile != nil { throw ValidationError("give the reason with --reason or with --reason-file, not both") }
    }

    var isGiven: Bool { reason != nil || reasonFile != nil }

    func read() throws -> String? {
        if let reason {
            CaseText.warnAboutCommandLine("--reason")
            return try CaseText.trimmed(reason)
        }
        return try reasonFile.map { try CaseText.trimmed(try CaseText.read($0)) }
    }

    /// A refusal does not lose a reason typed or piped on standard input: a person at a terminal gets it back.
    func notApplied(_ error: any Error, reason: String?) -> any Error {
        guard reasonFile == "-", let reason, isatty(STDERR_FILENO) == 1 else { return error }
        let error = error as? CLIError ?? CLIError(.usage, "\(error)")
        return error.with(hint: [error.hint, "Your reason was not stored; here it is, to copy:\n\n\(reason)\n"].compactMap { $0 }.joined(separator: "\n"))
    }
}

/// Text about a case, before it is sealed.
enum CaseText {
    static func read(_ file: String) throws -> String {
        do {
            let data = file == "-" ? FileHandle.standardInput.readDataToEndOfFile() : try Data(contentsOf: URL(fileURLWithPath: file))
            return String(decoding: data, as: UTF8.self)
        } catch {
            throw CLIError(.usage, "cannot read \(file)")
        }
    }

    static func trimmed(_ text: String) throws -> String {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else { throw CLIError(.usage, "the text is empty; nothing was sent") }
        return trimmed
    }

    /// Said to a person at a terminal, where the habit forms; a script that chose the option is left alone.
    static func warnAboutCommandLine(_ option: String) {
        guard isatty(STDERR_FILENO) == 1 else { return }
        FileHandle.standardError.write(Data("""
            Note: text given with \(option) can be seen by other users of this machine while amane runs, and stays in your \
            shell history. $EDITOR, --file - or --reason-file - keep it off the command line.

            """.utf8))
    }
}

enum Sealing {
    /// A note sealed to the epoch key, bound to its case, under an id of its own.
    static func note(caseID: String, text: String, epoch: SealingPrivateKey) throws -> NoteSubmission {
        let id = UUID.v7()
        let envelope = try Envelope.seal(Array(text.utf8), to: epoch.publicKey, kind: .note, objectID: id, caseID: try caseUUID(caseID))
        return NoteSubmission(id: id.uuidString.lowercased(), sealed: Base64.encode(envelope))
    }

    /// Seals a note and posts it, again while the relay cannot be reached (`TextInput.posting`).
    static func postNote(_ session: Session, caseID: String, text: String, epoch: SealingPrivateKey) async throws -> String {
        let note = try note(caseID: caseID, text: text, epoch: epoch)
        try await TextInput.posting { _ = try await session.client.post(APIPath.disclosure(caseID, .notes), note, as: Accepted.self) }
        return note.id
    }

    /// Seals a refer or close reason after the case moved, to the epoch key fetched before the move: a refused
    /// move then leaves no note behind, and a member without the key is refused before anything moves.
    /// Returns why the note could not be stored, if it could not.
    static func postReason(_ session: Session, caseID: String, text: String, epoch: SealingPrivateKey) async -> CLIError? {
        do {
            _ = try await postNote(session, caseID: caseID, text: text, epoch: epoch)
            return nil
        } catch let error as CLIError {
            return error
        } catch {
            return CLIError(.unreachable, "\(error)")
        }
    }

    static func reasonNotStored(_ error: CLIError, caseID: String) -> CLIError {
        CLIError(error.code, "the case moved, but its reason was not stored: \(error.message)",
                 hint: "Add it with `amane note \(ShortID.of(caseID)) -m …`.", json: nil, problemCode: error.problemCode)
    }

    static func caseUUID(_ caseID: String) throws -> UUID {
        guard let uuid = UUID(uuidString: caseID) else { throw CLIError(.refused, "the relay named a case id that is not a UUID: \(caseID)") }
        return uuid
    }
}

struct Note: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Add a note to a case, sealed to the queue's key on this machine.",
                                                    discussion: "The text comes from $EDITOR, or --file (- reads standard input). Example: amane note c41e9a7b")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The case id, or the short id `amane inbox` shows.") var id: String
    @OptionGroup var input: TextInput

    func run() async throws {
        let text = try input.read(draft: "note-on-case-\(id)")
        let (caseID, noteID): (String, String)
        do {
            (caseID, noteID) = try await Session.with(global) { session in
                let identity = try session.unlock()
                let caseID = try await session.resolve(id)
                let epoch = try await session.currentEpochKey(identity)
                return (caseID, try await Sealing.postNote(session, caseID: caseID, text: text, epoch: epoch))
            }
        } catch {
            throw input.notSent(error, text: text, json: global.json)
        }
        if global.json { return try Output.json(["id": noteID, "case": caseID]) }
        print("Added a sealed note to case \(ShortID.of(caseID)).")
    }
}

struct Reply: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Reply to the reporter: sealed to their gateway's key, with a copy for the case record.",
                                                    discussion: """
                                                        The reporter reads it with their receipt at the gateway. The text comes from $EDITOR, or --file (- reads \
                                                        standard input). The gateway's key is kept in your profile's `gateways` file at the first reply through \
                                                        it: a gateway's key never changes, so a relay that later gives another one under its name is refused \
                                                        (exit 6). Example: amane reply c41e9a7b
                                                        """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The case id, or the short id `amane inbox` shows.") var id: String
    @OptionGroup var input: TextInput

    /// The relay is asked first whether this member may reply, and for the gateway's key: a refusal comes before
    /// the reply is written, and nothing of the case is opened (a follow-up stays marked unread).
    func run() async throws {
        let (caseID, replyID) = try await Session.with(global) { session in
            let identity = try session.unlock()
            let caseID = try await session.resolve(id)
            let replyKey = try await session.client.get(APIPath.replyKey(caseID), as: ReplyKey.self)
            guard let gatewayKey = try? SealingPublicKey(text: replyKey.gatewayKey) else {
                throw CLIError(.refused, "the gateway that sent this case has no usable sealing key, so it cannot show a reply")
            }
            try PinnedKeys.checkGatewayKey(replyKey, fingerprint: gatewayKey.fingerprint, profile: session.profile)
            let epoch = try await session.currentEpochKey(identity)
            let text = try input.read(draft: "reply-to-case-\(ShortID.of(caseID))")
            do {
                let id = UUID.v7()
                let bound = try Sealing.caseUUID(caseID)
                let submission = ReplySubmission(
                    id: id.uuidString.lowercased(),
                    sealed: Base64.encode(try Envelope.seal(Array(text.utf8), to: epoch.publicKey, kind: .reply, objectID: id, caseID: bound)),
                    gatewaySealed: Base64.encode(try Envelope.seal(Array(text.utf8), to: gatewayKey, kind: .reply, objectID: id, caseID: bound)))
                try await TextInput.posting { _ = try await session.client.post(APIPath.disclosure(caseID, .replies), submission, as: Accepted.self) }
                return (caseID, id.uuidString.lowercased())
            } catch {
                throw input.notSent(error, text: text, json: global.json)
            }
        }
        if global.json { return try Output.json(["id": replyID, "case": caseID]) }
        print("Sent a sealed reply to case \(ShortID.of(caseID)); the reporter can read it with their receipt at the gateway.")
    }
}

struct Refer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Refer a case to a partner service; the reason is kept as a sealed note.",
                                                    discussion: """
                                                        A case the reporter followed up is referred only once its holder has opened the follow-up \
                                                        (a supervisor who does not hold it may refer it anyway). \
                                                        Example: echo "Needs a doctor today." | amane refer c41e9a7b --to health --reason-file -
                                                        """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The case id, or the short id `amane inbox` shows.") var id: String
    @Option(help: "Where to: police, health, social, shelter, legal or partner.") var to: String
    @OptionGroup var reasonInput: ReasonInput

    func validate() throws {
        guard reasonInput.isGiven else { throw ValidationError("say why with --reason-file FILE (- reads standard input) or --reason TEXT") }
    }

    func run() async throws {
        let reason = try reasonInput.read() ?? ""
        let (view, noteFailure) = try await Session.with(global) { session in
            let epoch = try await session.currentEpochKey(try session.unlock())
            let caseID = try await session.resolve(id)
            let view: CaseView
            do {
                view = try await session.client.post(APIPath.disclosure(caseID, .transition), TransitionRequest(action: "refer", referral: to), as: CaseView.self)
            } catch { throw reasonInput.notApplied(error, reason: reason) }
            return (view, await Sealing.postReason(session, caseID: caseID, text: "Referred to \(to): \(reason)", epoch: epoch))
        }
        if global.json { try Output.json(view) } else {
            print("Referred case \(ShortID.of(view.id)) to \(to)\(noteFailure == nil ? "; the reason is in a sealed note" : "").")
        }
        try noteFailure.map { throw Sealing.reasonNotStored($0, caseID: view.id) }
    }
}

struct Close: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Close a case with an outcome from the taxonomy.",
                                                    discussion: """
                                                        Outcomes include referred, support_provided, information_provided, reporter_unreachable, \
                                                        no_further_action, duplicate and outside_mandate. A case the reporter followed up is closed only \
                                                        once its holder has opened the follow-up (a supervisor who does not hold it may close it anyway); \
                                                        a later follow-up reopens it. Example: amane close c41e9a7b --outcome support_provided
                                                        """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The case id, or the short id `amane inbox` shows.") var id: String
    @Option(help: "The outcome code.") var outcome: String
    @OptionGroup var reasonInput: ReasonInput

    func run() async throws {
        let reason = try reasonInput.read()
        let (view, noteFailure) = try await Session.with(global) { session in
            let epoch = try reason == nil ? nil : await session.currentEpochKey(try session.unlock())
            let caseID = try await session.resolve(id)
            let view: CaseView
            do {
                view = try await session.client.post(APIPath.disclosure(caseID, .transition), TransitionRequest(action: "close", outcome: outcome), as: CaseView.self)
            } catch { throw reasonInput.notApplied(error, reason: reason) }
            guard let reason, let epoch else { return (view, nil as CLIError?) }
            return (view, await Sealing.postReason(session, caseID: caseID, text: "Closed (\(outcome)): \(reason)", epoch: epoch))
        }
        if global.json { try Output.json(view) } else { print("Closed case \(ShortID.of(view.id)) with outcome \(outcome).") }
        try noteFailure.map { throw Sealing.reasonNotStored($0, caseID: view.id) }
    }
}
