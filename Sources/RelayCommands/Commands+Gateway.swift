import ArgumentParser
import Foundation
import RelayAPI
import RelayCore
import RelayFormat

/// How a gateway sends what it was told: sealed here or not, and under which idempotency key.
struct SendingOptions: ParsableArguments {
    @Flag(help: "Seal the content on this machine before sending.") var seal = false
    @Option(name: .customLong("idempotency-key"),
            help: "Reuse a key to retry safely, with --seal too: the same content gets the first answer back (default: a new one). Seen by ps and kept in shell history: for a real disclosure use --idempotency-key-file.")
    var idempotencyKey: String?
    @Option(name: .customLong("idempotency-key-file"),
            help: ArgumentHelp("The same, with the key read from a file (mode 0600), off the command line: the key also guards the receipt.",
                               valueName: "file"))
    var idempotencyKeyFile: String?

    func validate() throws {
        guard idempotencyKey == nil || idempotencyKeyFile == nil else { throw ValidationError("give --idempotency-key or --idempotency-key-file, not both") }
    }

    /// The key the request goes under: the one given, to retry, or a new one.
    func key() throws -> String {
        guard let idempotencyKeyFile else { return idempotencyKey ?? "\(Self.madeKeyPrefix)\(UUID().uuidString.lowercased())" }
        guard FileManager.default.fileExists(atPath: idempotencyKeyFile) else {
            throw CLIError(.usage, "the idempotency key file \(idempotencyKeyFile) does not exist; nothing was sent", hint: """
                A key amane saved is removed once its submission is answered: if this retry ran before, it was stored then, and \
                its answer was printed then. The key is not kept after, since with it the answer could be fetched again.
                """)
        }
        try PrivateFile.check(idempotencyKeyFile, "the idempotency key file")
        guard let text = FileManager.default.contents(atPath: idempotencyKeyFile).map({ String(decoding: $0, as: UTF8.self) }) else {
            throw CLIError(.usage, "cannot read the idempotency key file \(idempotencyKeyFile)")
        }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The keys amane makes. Those an amane before content tags were keyed by the profile's secret made and saved
    /// (`amane-cli-…`) are retried with the tag of their first try.
    static let madeKeyPrefix = "amane-key-"
    static let formerMadeKeyPrefix = "amane-cli-"

    /// Sends under `key`. When the relay failed or never answered, the submission may be stored, and only a retry
    /// under the same key cannot store it twice: a key made here is saved in the profile (mode 0600; it also
    /// guards the receipt, so it goes in no message), and the failure says how to retry. A saved key that
    /// served is removed.
    func send<T>(under key: String, profile: Profile, retrying command: String, _ post: () async throws -> T) async throws -> T {
        let saved = (profile.directory as NSString).appendingPathComponent("unanswered")
        let retrying = idempotencyKeyFile != nil || idempotencyKey != nil
        do {
            let answer = try await post()
            if let idempotencyKeyFile, Self.resolved(idempotencyKeyFile).deletingLastPathComponent() == Self.resolved(saved) {
                try? FileManager.default.removeItem(atPath: idempotencyKeyFile)
            }
            return answer
        } catch let error as CLIError where retrying && error.problemCode == ProblemCode.idempotencyKeyReused.rawValue {
            throw error.with(hint: """
                Nothing more was stored. An earlier request under this key was stored with other content (or, sealed with \
                --seal, tagged from another profile's content-tag.secret): if this is the same disclosure, it is stored \
                already; do not send it again as a new one. Other content needs a new key (send it without \
                --idempotency-key or --idempotency-key-file).
                """)
        } catch var error as CLIError where error.outcomeUnknown || (error.code == .server && (retrying || !error.storedNothing)) {
            let retry: String
            if let idempotencyKeyFile {
                retry = "\(command) --idempotency-key-file \(idempotencyKeyFile)"
            } else if idempotencyKey != nil {
                retry = "\(command) with the same --idempotency-key"
            } else {
                let file = (saved as NSString).appendingPathComponent("\(SendingOptions.timestamp())-\(UUID().uuidString.prefix(8).lowercased()).key")
                // Created private, not made so afterwards: no moment in which others may read the key.
                guard mkdir(saved, 0o700) == 0 || errno == EEXIST, (try? SecretFile.createExclusive(at: file, contents: Array((key + "\n").utf8))) != nil else {
                    throw error
                }
                error.idempotencyKeyFile = file
                retry = "\(command) --idempotency-key-file \(file)"
            }
            let hint = error.storedNothing
                ? "This try stored nothing, but an earlier one under this key may have. Send it again under the same key: \(retry)"
                : "It may have been stored. Send it again under the same key, which stores it at most once (within seven days): \(retry)"
            throw error.with(hint: [error.hint, hint].compactMap { $0 }.joined(separator: "\n"))
        }
    }

    /// The same file however it is spelled: relative to the working folder, through `..` or a symbolic link.
    static func resolved(_ path: String) -> URL {
        URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath()
    }

    static func timestamp() -> String {
        Date().formatted(.iso8601.year().month().day().time(includingFractionalSeconds: false).timeSeparator(.omitted).dateSeparator(.omitted))
    }

    /// Sealing is randomized: a retry is recognised by this tag of the content. It is keyed by the idempotency key and
    /// by the profile's own secret, which the relay never sees: keyed by what the relay sees alone, the tag would let
    /// it test guesses of the content.
    static func contentTag(_ plaintext: Data, key: String, profile: Profile) throws -> String {
        let secret = key.hasPrefix(formerMadeKeyPrefix) ? [] : try ContentTagSecret.load(in: profile.directory)
        return Base64.encode(KeyedBox.tag(plaintext, secret: secret + Array(key.utf8), context: Array("sealed content".utf8)))
    }

    /// The sealing key of `queue`, or of the gateway's own queue, once `content` passes what the relay would refuse in
    /// the clear: it cannot look inside an envelope.
    static func sealingKey(for content: DisclosureContent, from file: String, _ session: Session, queue: String?) async throws -> SealingPublicKey {
        var queue = queue
        if queue == nil { queue = try await session.client.get(APIPath.me, as: Identity.self).queue }
        let info = try await session.client.get(APIPath.sealingKey(queue: queue ?? ""), as: SealingKeyInfo.self)
        do { try IntakeCheck.checkNarrative(content, maxBytes: info.narrativeMaxBytes ?? .max) } catch {
            throw CLIError(.usage, "\(file): \(error.detail); nothing was sent")
        }
        if let limit = info.contentMaxBytes, let size = try? StrictJSON.canonical(content).count, size > limit {
            throw CLIError(.usage, "\(file): the content holds \(size) bytes as JSON; the relay takes \(limit); nothing was sent")
        }
        return try SealingPublicKey(text: info.publicKey)
    }

    static func body<T: Codable>(_ type: T.Type, from file: String) throws -> T {
        guard let data = FileManager.default.contents(atPath: file) else { throw CLIError(.usage, "cannot read \(file)") }
        do { return try StrictJSON.decode(T.self, from: data) } catch { throw CLIError(.usage, "\(file): \(error.description)") }
    }
}

struct Submit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Post a disclosure as a gateway (for integrators and tests).",
        discussion: """
            FILE holds the JSON body of POST /v1/disclosures. With --seal the content is sealed here to the queue's key, \
            so the relay only ever receives the envelope. Example: AMANE_HOME=.amane-dev/dev/gateway amane submit seeds/demo/01-….json --seal

            When the relay fails (other than a 503 that says nothing was stored) or gives no answer, the disclosure may \
            be stored: the idempotency key is saved in the profile (the message names the file; in --json, \
            idempotencyKeyFile), and sending again with --idempotency-key-file FILE stores it at most once. A sealed \
            retry is known by a tag keyed by the profile's content-tag.secret: send it from the same profile.
            """)

    @OptionGroup var global: ProfileOptions
    @Argument(help: "The disclosure as JSON.") var file: String
    @OptionGroup var sending: SendingOptions

    func run() async throws {
        var submission = try SendingOptions.body(DisclosureSubmission.self, from: file)
        let key = try sending.key()
        let receipt = try await Session.with(global) { session in
            if sending.seal {
                guard let content = submission.content else { throw CLIError(.usage, "--seal needs 'content' in \(file)") }
                let publicKey = try await SendingOptions.sealingKey(for: content, from: file, session, queue: submission.queue)
                let id = UUID.v7()
                let plaintext = try StrictJSON.canonical(content)
                submission.sealed = Base64.encode(try Envelope.seal(plaintext, to: publicKey, kind: .disclosure, objectID: id))
                submission.contentTag = try SendingOptions.contentTag(plaintext, key: key, profile: session.profile)
                submission.content = nil
            }
            return try await sending.send(under: key, profile: session.profile,
                                          retrying: "amane submit \(global.retryOptions)\(file)\(sending.seal ? " --seal" : "")") {
                try await session.client.post(APIPath.disclosures, submission, as: DisclosureReceipt.self, headers: [HeaderName.idempotencyKey: key])
            }
        }
        if global.json { return try Output.json(receipt) }
        print("""
            Accepted as case \(receipt.id) at \(receipt.receivedAt)\(sending.seal ? " (sealed here)" : "").
            Receipt for the reporter: \(receipt.receipt)
            """)
    }
}

struct Followup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Post a reporter's follow-up by their receipt, as a gateway (for integrators and tests).",
        discussion: """
            FILE holds the JSON body of POST /v1/followups: the receipt and the content, so that the receipt stays off \
            the command line. With --seal the content is sealed here to the queue's key, bound to the receipt's case, \
            so the relay only ever receives the envelope. A follow-up to a closed case reopens it (back to new, flagged \
            "updated"). When what the reporter now tells is more urgent, add "urgency": "immediate" (or high, normal, low): \
            the case is raised to it, never lowered. Example: AMANE_HOME=.amane-dev/dev/gateway amane followup more.json --seal
            """)

    @OptionGroup var global: ProfileOptions
    @Argument(help: "The follow-up as JSON: {\"receipt\": …, \"content\": {\"narrative\": …}}, and \"urgency\" to raise the case's.") var file: String
    @OptionGroup var sending: SendingOptions

    func run() async throws {
        var submission = try SendingOptions.body(FollowupSubmission.self, from: file)
        let key = try sending.key()
        let accepted = try await Session.with(global) { session in
            if sending.seal {
                guard let content = submission.content else { throw CLIError(.usage, "--seal needs 'content' in \(file)") }
                let publicKey = try await SendingOptions.sealingKey(for: content, from: file, session, queue: nil)
                // The case the receipt names, which the follow-up is sealed bound to.
                let found = try await session.client.post(APIPath.repliesFetch, ReplyFetch(receipt: submission.receipt), as: ReplyList.self)
                guard let caseID = UUID(uuidString: found.caseId) else { throw CLIError(.server, "the relay named no case for this receipt") }
                let id = UUID.v7()
                let plaintext = try StrictJSON.canonical(content)
                submission.id = id.uuidString.lowercased()
                submission.sealed = Base64.encode(try Envelope.seal(plaintext, to: publicKey, kind: .followup,
                                                                    objectID: id, caseID: caseID))
                submission.contentTag = try SendingOptions.contentTag(plaintext, key: key, profile: session.profile)
                submission.content = nil
            }
            return try await sending.send(under: key, profile: session.profile,
                                          retrying: "amane followup \(global.retryOptions)\(file)\(sending.seal ? " --seal" : "")") {
                try await session.client.post(APIPath.followups, submission, as: FollowupAccepted.self, headers: [HeaderName.idempotencyKey: key])
            }
        }
        if global.json { return try Output.json(accepted) }
        print("Added follow-up \(accepted.id) at \(accepted.receivedAt)\(sending.seal ? " (sealed here)" : "").")
    }
}

struct ReplyReading: Codable {
    var id: String
    var createdAt: String
    var text: String?
    var error: String?
}

struct Replies: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fetch and decrypt the replies for a receipt, with the gateway's key (gateways).",
        discussion: """
            The receipt never goes on the command line, where shell history and `ps` would keep it: it is read \
            from --receipt-file, else from standard input, else asked on the terminal without echo. \
            Example: echo "9477 5412 6644 3143" | AMANE_HOME=.amane-dev/dev/gateway amane replies
            """)

    @OptionGroup var global: GlobalOptions
    @Option(help: ArgumentHelp("Read the reporter's receipt from this file.", valueName: "file")) var receiptFile: String?

    func run() async throws {
        let receipt = try readReceipt()
        let readings = try await Session.with(global) { session in
            let identity = try session.unlock()
            let list = try await session.client.post(APIPath.repliesFetch, ReplyFetch(receipt: receipt), as: ReplyList.self)
            return list.replies.map { reply in
                var reading = ReplyReading(id: reply.id, createdAt: reply.createdAt)
                if let envelope = Base64.decode(reply.sealed), let id = UUID(uuidString: reply.id), let caseID = UUID(uuidString: list.caseId),
                   let plaintext = try? Envelope.open(envelope, with: identity, kind: .reply, objectID: id, caseID: caseID) {
                    reading.text = String(decoding: plaintext, as: UTF8.self)
                } else {
                    reading.error = "does not open with this gateway's key"
                }
                return reading
            }
        }
        if global.json { return try Output.json(readings) }
        guard !readings.isEmpty else { return print("No replies yet for this receipt.") }
        for reading in readings {
            print("── reply · \(reading.createdAt)")
            print(reading.text.map(Output.indented) ?? "   [\(reading.error ?? "")]")
        }
    }

    private func readReceipt() throws -> String {
        let bytes: [UInt8]
        if let receiptFile {
            guard let data = try? Data(contentsOf: URL(fileURLWithPath: receiptFile)) else { throw CLIError(.usage, "cannot read \(receiptFile)") }
            bytes = Array(data)
        } else if isatty(STDIN_FILENO) == 1 {
            bytes = try Passphrase.fromTerminal("Receipt: ")
        } else {
            bytes = Array(FileHandle.standardInput.readDataToEndOfFile())
        }
        let receipt = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !receipt.isEmpty else {
            throw CLIError(.usage, "no receipt given", hint: "Pipe it in (echo \"1234 …\" | amane replies) or pass --receipt-file FILE.")
        }
        return receipt
    }
}
