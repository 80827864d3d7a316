import ArgumentParser
import Foundation
import RelayAPI
import RelayCore
import RelayFormat

struct KeyInfo: Codable {
    var fingerprint: String
    var publicKey: String
    var identity: String
}

struct Keygen: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create your personal sealing key, protected by a passphrase (asked twice, not echoed).",
        discussion: """
            It prints the fingerprint and the public key to hand to your admin for `amane-relayd admin enroll-responder`; \
            --show prints them again for the key you have, without the passphrase. Example: amane keygen
            """)

    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print the fingerprint and public key of the key you already have; create nothing.") var show = false

    func run() async throws {
        let profile = try Profile.load(global.profile)
        if show { return try printExisting(profile) }
        try FileManager.default.createDirectory(atPath: profile.directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        guard !FileManager.default.fileExists(atPath: profile.identity) else {
            throw CLIError(.usage, "\(profile.identity) exists; refusing to replace your key",
                           hint: "`amane keygen --show` prints its public key again; move the file away first only if you really mean to start over.")
        }
        let passphrase: [UInt8]
        if let file = global.passphraseFile ?? ProcessInfo.processInfo.environment["AMANE_PASSPHRASE_FILE"] {
            passphrase = try Passphrase.read(file: file, prompt: "")
        } else {
            passphrase = try Passphrase.fromTerminal("New passphrase: ")
            guard try Passphrase.fromTerminal("Repeat it: ") == passphrase else { throw CLIError(.usage, "the passphrases differ; nothing was written") }
        }
        guard passphrase.count >= 12 else { throw CLIError(.usage, "use a passphrase of at least 12 characters") }
        let key = SealingPrivateKey.generate()
        do { try IdentityFile.create(at: profile.identity, key: key, passphrase: passphrase) } catch {
            throw CLIError(.usage, "cannot write \(profile.identity): \(error)")
        }
        try show(key.publicKey, profile, heading: "Created your sealing key in \(profile.identity) (mode 0600).")
    }

    private func show(_ publicKey: SealingPublicKey, _ profile: Profile, heading: String) throws {
        let info = KeyInfo(fingerprint: publicKey.fingerprint, publicKey: publicKey.text, identity: profile.identity)
        if global.json { return try Output.json(info) }
        print("""
            \(heading)
            Fingerprint (read it to your admin to compare): \(info.fingerprint)
            Public key (give this whole line to your admin):
            \(info.publicKey)
            """)
    }

    /// The public half sits in the clear in the identity file: no passphrase needed.
    private func printExisting(_ profile: Profile) throws {
        let publicKey: SealingPublicKey
        do { publicKey = try IdentityFile.publicKey(in: IdentityFile.read(profile.identity)) } catch {
            throw CLIError(.usage, "no key to show at \(profile.identity): \(error)", hint: "Create one with `amane keygen`.")
        }
        try show(publicKey, profile, heading: "Your sealing key in \(profile.identity)")
    }
}

struct Grant: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Give a colleague every queue key you hold, sealed to their public key on this machine.",
        discussion: """
            The relay serves their public key, so first have them read you the fingerprint their `amane keygen` \
            printed (in person or by phone) and give it with --fingerprint. It is kept in your profile's `members` \
            file; a key the relay serves later that differs is refused. A key they hold already stays as it is: only a \
            supervisor's grant replaces one (to mend a grant that does not open). Example: amane grant youssef --fingerprint amane1-abcd-…
            """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The colleague's name.") var name: String
    @Option(help: ArgumentHelp("Their key's fingerprint, as they read it to you; needed the first time.", valueName: "fingerprint"))
    var fingerprint: String?

    func validate() throws {
        guard PrincipalName(rawValue: name) != nil else { throw ValidationError("'\(name)' is not a member's name") }
    }

    func run() async throws {
        let count = try await Session.with(global) { session in
            let identity = try session.unlock()
            let members = try await session.client.get(APIPath.members, as: MemberList.self).members
            guard let member = members.first(where: { $0.name == name }), let text = member.sealingKey, let key = try? SealingPublicKey(text: text) else {
                throw CLIError(.refused, "no active responder or supervisor named \(name)",
                               hint: "Check the name. A revoked member gets no keys: an admin enrolls them again, under a new name.")
            }
            var trusted = try PinnedKeys(profile: session.profile)
            try trusted.check(name, servedFingerprint: key.fingerprint)
            if let fingerprint {
                guard PinnedKeys.normalized(fingerprint) == PinnedKeys.normalized(key.fingerprint) else {
                    // The relay's own fingerprint is not shown: someone who mistyped would copy it, and it is what a compromised relay would say.
                    throw CLIError(.verification, "the relay's key for \(name) does not have the fingerprint you gave (\(fingerprint)); nothing was sealed",
                                   hint: "Read it with \(name) again (`amane keygen --show` prints it on their machine). If it still differs, tell your admin: the relay may be compromised.")
                }
                try trusted.pin(name, fingerprint: key.fingerprint)
            } else if trusted.fingerprints[name] == nil {
                throw CLIError(.usage, "confirm \(name)'s key first; nothing was sealed",
                               hint: """
                                   Ask \(name) to read you the fingerprint their `amane keygen` printed (`amane keygen --show` prints it \
                                   again), in person or by phone, and run `amane grant \(name) --fingerprint` with what they read. The relay's \
                                   own word for it is not shown here: copying it would check nothing.
                                   """)
            }
            let (keys, _, _) = try await session.epochKeys(identity)
            var granted = 0
            for (epochID, epoch) in keys {
                let grant = try RelayFormat.Grant.seal(epoch, to: key)
                let stored = try await session.client.post(APIPath.grants, GrantUpload(epoch: epochID, grants: [name: Base64.encode(grant)]),
                                                           as: GrantsStored.self)
                if !stored.kept.contains(name) { granted += 1 }
            }
            return (granted: granted, held: keys.count - granted)
        }
        if global.json { return try Output.json(GrantCount(name: name, granted: count.granted, held: count.held)) }
        guard count.granted + count.held > 0 else {
            return print("""
                You hold no queue key, so none was granted; \(name)'s key is confirmed in your profile. A member who holds \
                the keys can grant them, or `amane rotate` makes a new one for every confirmed member.
                """)
        }
        guard count.granted > 0 else {
            return print("""
                \(name) holds every queue key you hold already (\(count.held)); nothing was changed. Only a supervisor's grant \
                replaces one (to mend a grant that does not open).
                """)
        }
        print("Granted \(count.granted) queue key\(count.granted == 1 ? "" : "s") to \(name)\(count.held > 0 ? "; \(count.held) more they held already, and kept" : "").")
    }
}

/// The new epoch, with who got it on the relay's word and who was left out; in JSON, the epoch's fields beside those two.
struct RotationResult: Encodable {
    var epoch: EpochView
    /// Colleagues granted the new key, with --include-unconfirmed, under a fingerprint you never confirmed.
    var unconfirmed: [String: String]
    /// Colleagues left out: not confirmed, or listed without a usable key.
    var skipped: [String]
    /// Everyone granted the new key, you included.
    var granted: [String]
    /// You, who made it.
    var rotatedBy: String

    private enum CodingKeys: String, CodingKey { case unconfirmed, skipped, granted }

    func encode(to encoder: any Encoder) throws {
        try epoch.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(unconfirmed, forKey: .unconfirmed)
        try container.encode(skipped, forKey: .skipped)
        try container.encode(granted, forKey: .granted)
    }
}

struct Rotate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create a new queue key on this machine and grant it to you and the colleagues whose keys you confirmed.",
        discussion: """
            Run it after a revocation, or once to create the first key; new cases are sealed to it. Colleagues you \
            have not confirmed with `amane grant NAME --fingerprint` are left out and listed; --include-unconfirmed \
            grants it to them too, on the relay's word for their keys. A confirmed colleague whose key differs stops \
            the rotation. Example: amane rotate
            """)

    @OptionGroup var global: GlobalOptions
    @Flag(help: "Also grant the new key to colleagues you have not confirmed, trusting the keys the relay serves for them.")
    var includeUnconfirmed = false

    func run() async throws {
        let result = try await Session.with(global) { session in
            let identity = try session.unlock()
            let me = try await session.client.get(APIPath.me, as: Identity.self)
            let members = try await session.client.get(APIPath.members, as: MemberList.self).members
            let trusted = try PinnedKeys(profile: session.profile)
            let key = SealingPrivateKey.generate()
            var grants: [String: String] = [:]
            var unconfirmed: [String: String] = [:]
            var skipped: [String] = []
            for member in members where member.name != me.name {
                let memberKey = member.sealingKey.flatMap { try? SealingPublicKey(text: $0) }
                let confirmed = trusted.fingerprints[member.name] != nil
                guard PrincipalName(rawValue: member.name) != nil, let memberKey else {
                    if confirmed { throw CLIError(.verification, "the relay lists \(member.name) without a usable key; nothing was sealed", hint: "Tell your admin.") }
                    skipped.append(member.name)
                    continue
                }
                try trusted.check(member.name, servedFingerprint: memberKey.fingerprint)
                if !confirmed {
                    guard includeUnconfirmed else { skipped.append(member.name); continue }
                    unconfirmed[member.name] = memberKey.fingerprint
                }
                grants[member.name] = Base64.encode(try RelayFormat.Grant.seal(key, to: memberKey))
            }
            grants[me.name] = Base64.encode(try RelayFormat.Grant.seal(key, to: identity.publicKey))
            let epoch = try await session.client.post(APIPath.epochs, EpochCreation(publicKey: key.publicKey.text, grants: grants), as: EpochView.self)
            return RotationResult(epoch: epoch, unconfirmed: unconfirmed, skipped: skipped.sorted(), granted: grants.keys.sorted(), rotatedBy: me.name)
        }
        if global.json { return try Output.json(result) }
        let others = result.granted.filter { $0 != result.rotatedBy }
        print("The queue \(result.epoch.queue) now seals to epoch \(result.epoch.id), granted to "
              + (others.isEmpty ? "you only." : "you and \(grantedTo(result)): \(others.map(Output.inert).joined(separator: ", "))."))
        if others.isEmpty {
            print("Only you hold it: until you grant it (`amane grant NAME --fingerprint …`), no one else can claim new cases.")
        }
        if !result.unconfirmed.isEmpty {
            print("Granted on the relay's word; compare these fingerprints with each colleague:")
            for (name, fingerprint) in result.unconfirmed.sorted(by: { $0.key < $1.key }) { print("  \(Output.inert(name))  \(fingerprint)") }
        }
        if !result.skipped.isEmpty {
            print("Left out: \(result.skipped.map(Output.inert).joined(separator: ", ")). Once you confirm a colleague's fingerprint, `amane grant NAME --fingerprint …` gives them the keys.")
        }
    }

    private func grantedTo(_ result: RotationResult) -> String {
        result.skipped.isEmpty ? "every other active member of the queue" : result.unconfirmed.isEmpty ? "the colleagues you confirmed" : "these colleagues"
    }
}

/// What `amane grant --json` prints: how many queue keys went to whom, and how many they held already.
struct GrantCount: Codable {
    var name: String
    var granted: Int
    var held: Int
}

struct KeyHeld: Codable {
    var epoch: String
    var queue: String
    var current: Bool
    var fingerprint: String
    var grantedBy: String
}

struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the queue keys (epochs) you hold.", discussion: "Example: amane keys")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let (held, mine, unopened, queueHasKey) = try await Session.with(global) { session in
            let identity = try session.unlock()
            let grants = try await session.client.get(APIPath.grants, as: GrantList.self).grants
            let (keys, _, unopened) = session.epochKeys(identity, grants: grants)
            // Someone to ask for a grant, or no key to grant yet.
            let queueHasKey = grants.isEmpty ? try await session.client.get(APIPath.members, as: MemberList.self).members.contains { $0.holdsCurrentKey == true } : true
            return (grants.compactMap { grant in
                keys[grant.epoch].map { KeyHeld(epoch: grant.epoch, queue: grant.queue, current: grant.current, fingerprint: $0.publicKey.fingerprint, grantedBy: grant.grantedBy) }
            }, identity.publicKey.fingerprint, grants.filter { unopened.contains($0.epoch) }, queueHasKey)
        }
        if global.json { return try Output.json(held) }
        print("Your own key: \(mine)  (read it to a colleague who grants you queue keys)")
        let askForGrant = queueHasKey ? "ask a colleague to run `amane grant <your name> --fingerprint \(mine)`."
            : "no member holds a key of your queue either: `amane rotate` makes its first one, for you and the colleagues you confirm."
        for grant in unopened {
            print("Your grant of \(grant.current ? "the current " : "")epoch \(grant.epoch) (\(grant.queue), from \(grant.grantedBy)) does not open with your key. \(Session.askSupervisorToMendGrant)")
        }
        guard !held.isEmpty else { return print(unopened.isEmpty ? "You hold no queue keys yet; \(askForGrant)" : "You hold no queue key that opens.") }
        print("Queue keys you hold (* the current one, which new cases are sealed to):")
        for key in held { print("\(key.current ? "*" : " ") \(key.epoch)  \(key.queue)  \(key.fingerprint)  granted by \(key.grantedBy)") }
        // Every epoch becomes current when made, so holding keys but not a current one means a newer epoch passed you by.
        if !held.contains(where: \.current), !unopened.contains(where: \.current) {
            print("You hold no key for the queue's current epoch, so new cases will not open for you; \(askForGrant)")
        }
    }
}

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Print the audit trail (supervisors); --verify recomputes its hash chain here and names the first broken entry.",
        discussion: """
            --verify prints the trail's head (SEQ:HASH). Keep it: a trail cut at its end still links up, and only \
            a later `--verify --expect-head SEQ:HASH` shows that the entry is gone or was rewritten.

            --case and --actor only filter what is printed (the entries about one case, or by one principal); they do \
            not go with --verify, which checks the whole trail.

            The trail is one for the whole relay. Entries about another queue's cases, members and keys are withheld \
            from you: they are not printed, and --verify checks them by their links only (their queue's supervisors, and \
            `amane-relayd admin audit verify`, check their contents).

            Examples: amane audit --case 7f3a9c1e
                      amane audit --verify --expect-head 1042:9f86d081884c7d65…
            """)

    @OptionGroup var global: ProfileOptions
    @Flag(help: "Verify the hash chain instead of printing it.") var verify = false
    @Option(name: .customLong("expect-head"), help: ArgumentHelp("With --verify: a head printed by an earlier --verify, which must still be in the trail.", valueName: "seq:hash"))
    var expectHead: String?
    @Option(name: .customLong("case"), help: ArgumentHelp("Only the entries about this case (the short id `amane inbox` shows, or a whole id; a purged case by its whole id).", valueName: "id"))
    var caseID: String?
    @Option(help: ArgumentHelp("Only the entries by this principal (admins appear as admin:NAME).", valueName: "name"))
    var actor: String?

    func validate() throws {
        if expectHead != nil, !verify { throw ValidationError("--expect-head checks only with --verify") }
        if verify, caseID != nil || actor != nil { throw ValidationError("--verify checks the whole trail; leave out --case and --actor") }
    }

    func run() async throws {
        let (entries, subject) = try await Session.with(global) { session in
            var subject: String?
            if let caseID { subject = try await session.resolve(caseID) }
            var entries: [AuditEntryView] = []
            var after: Int64 = 0
            while true {
                let page = try await session.client.get(APIPath.audit + "?after=\(after)&limit=1000", as: AuditPage.self)
                entries += page.entries
                guard let next = page.next else { break }
                after = next
            }
            return (entries, subject)
        }
        if verify {
            let expected = try expectHead.map { text in
                guard let head = AuditHead(text: text) else {
                    throw CLIError(.usage, "--expect-head takes SEQ:HASH as --verify printed it, such as 1042:9f86d081…")
                }
                return head
            }
            do {
                let chained = entries.map { entry in
                    entry.chained ?? ChainedAuditEntry(entry: AuditEntry(seq: entry.seq, time: 0, actor: "", action: "", subject: "", detail: ""), prevHash: [], hash: [])
                }
                var verifier = AuditVerifier()
                for (entry, view) in zip(chained, entries) {
                    if view.withheld == true { try verifier.link(entry) } else { try verifier.check(entry) }
                    try expected?.check(entry)
                }
                try expected?.checkReached(verifier)
                if global.json { return try Output.json(AuditVerification.intact(verified: verifier.count, head: verifier.headText)) }
                let withheld = entries.count { $0.withheld == true }
                print("The audit trail is intact: \(verifier.count) entries verified here\(expectHead == nil ? "" : ", and the earlier head is in it").")
                if withheld > 0 {
                    print("\(withheld) of them are about other queues: withheld from you, they were checked by their links only.")
                }
                print("Head: \(verifier.headText)  (keep it; --expect-head checks it later)")
            } catch let error as AuditVerifier.Break {
                let copied = expected != nil && error.seq == expected?.seq ? "First check the head you gave against where you kept it. If it is right: " : ""
                throw CLIError(.verification, "the audit trail is broken at entry \(error.seq): \(error.reason)",
                               hint: "\(copied)Keep this output, and tell your admin: the database may have been tampered with.",
                               json: AuditVerification.broken(at: error.seq, reason: error.reason))
            }
            return
        }
        let readable = entries.filter { $0.withheld != true }
        let shown = readable.filter { entry in (subject.map { entry.subject == $0 } ?? true) && (actor.map { entry.actor == $0 } ?? true) }
        if global.json { return try Output.json(shown) }
        if shown.isEmpty, subject != nil || actor != nil {
            let wanted = [subject.map { "about case \($0)" }, actor.map { "by \($0)" }].compactMap { $0 }.joined(separator: " and ")
            FileHandle.standardError.write(Data("No entry of the \(readable.count) in the audit trail that you may read is \(wanted).\n".utf8))
        }
        for entry in shown {
            let time = Date(timeIntervalSince1970: TimeInterval(entry.time)).formatted(.iso8601)
            print("\(entry.seq)  \(time)  \(entry.actor)  \(entry.action)  \(entry.subject)  \(entry.detail)")
        }
        if readable.count < entries.count, subject == nil, actor == nil {
            FileHandle.standardError.write(Data("\(entries.count - readable.count) entries about other queues are withheld from you.\n".utf8))
        }
    }
}


struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Count your queue's cases for reports, from labels only.",
        discussion: """
            Cases are counted by the month they were received (UTC), with their labels as they stand now: a reopened \
            case has no outcome until it is closed again, and a case a follow-up made more urgent counts at its new \
            urgency. Example, November's cases by category for a report: \
            amane stats --by category --from 2026-11 --to 2026-11 --csv
            """)
    @OptionGroup var global: ProfileOptions
    @Option(help: "Group by month, category, urgency, channel, region, outcome, language or referral.") var by = "month"
    @Option(help: ArgumentHelp("Count only cases received in this month or later.", valueName: "YYYY-MM")) var from: String?
    @Option(help: ArgumentHelp("Count only cases received in this month or earlier.", valueName: "YYYY-MM")) var to: String?
    @Flag(help: "Print CSV.") var csv = false

    func validate() throws {
        if csv, global.json { throw ValidationError("choose --csv or --json, not both") }
        for (option, value) in [("--from", from), ("--to", to)] where value.map({ Month($0) == nil }) == true {
            throw ValidationError("\(option) takes a month as YYYY-MM, such as 2026-11")
        }
        if let from = from.flatMap(Month.init), let to = to.flatMap(Month.init), to < from {
            throw ValidationError("--to \(to) comes before --from \(from)")
        }
    }

    func run() async throws {
        let range = [("from", from), ("to", to)].compactMap { name, value in value.map { "&\(name)=\($0)" } }.joined()
        let stats = try await Session.with(global) { session in
            try await session.client.get(APIPath.stats + "?by=\(by)\(range)", as: Statistics.self)
        }
        if global.json { return try Output.json(stats) }
        if csv {
            print("\(by),count")
            for row in stats.rows { print("\(row.key.contains(",") ? "\"\(row.key)\"" : row.key),\(row.count)") }
            return
        }
        let months = from != nil || to != nil ? " received \(from ?? "from the first") to \(to ?? "now") (UTC months)" : ""
        print("Cases of the queue \(stats.queue ?? "you belong to")\(months)")
        print(Output.pad(by.uppercased(), 28) + "CASES")
        for row in stats.rows { print(Output.pad(row.key == "-" ? "(no \(by))" : row.key, 28) + String(row.count)) }
    }
}
