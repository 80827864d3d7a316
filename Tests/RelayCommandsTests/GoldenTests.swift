import Foundation
@testable import RelayCommands
import RelayCore
import RelayTestSupport
import Testing

/// `--help` text and `--json` shapes are part of the interface: they change only on purpose.
/// Set AMANE_REGENERATE_GOLDEN=1 to rewrite the files after a deliberate change.
extension DaemonSuiteForCLI {
@Suite struct GoldenTests {
    static let commands = ["", "inbox", "show", "claim", "release", "note", "reply", "refer", "close", "reopen", "assign", "hold",
                           "keygen", "request-certificate", "grant", "rotate", "keys", "audit", "stats", "submit", "followup", "replies"]
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden")
    static var regenerate: Bool { ProcessInfo.processInfo.environment["AMANE_REGENERATE_GOLDEN"] == "1" }

    static func compare(_ actual: String, to name: String) throws {
        let file = directory.appendingPathComponent(name)
        if regenerate {
            try actual.write(to: file, atomically: true, encoding: .utf8)
            // A regenerated file proves nothing: the run says so, and fails, until it runs again without the variable.
            Issue.record("regenerated \(name); run again without AMANE_REGENERATE_GOLDEN to check it")
        }
        let expected = try String(contentsOf: file, encoding: .utf8)
        #expect(actual == expected, "\(name) changed; if on purpose, regenerate with AMANE_REGENERATE_GOLDEN=1")
    }

    @Test(arguments: commands)
    func helpMatchesItsGoldenFile(command: String) throws {
        let arguments = command.isEmpty ? ["--help"] : [command, "--help"]
        let (code, output) = try Daemon.run(Build.cli, arguments, environment: ["COLUMNS": "100", "HOME": "/nonexistent"])
        #expect(code == 0)
        #expect(output.contains("USAGE:") && (command.isEmpty || output.contains("Example")), "every command's help shows an example")
        try Self.compare(output, to: "help-\(command.isEmpty ? "amane" : command).txt")
    }

    /// The field names of every `--json` output, from a real session against a dev relay.
    @Test func jsonShapesMatchTheirGoldenFile() async throws {
        let daemon = try await Daemon()
        defer { daemon.stop(); daemon.removeData() }
        let cli = CLI(daemon: daemon)
        func keys(_ value: Any) -> [String] {
            if let object = value as? [String: Any] {
                return object.keys.sorted().flatMap { key in [key] + keys(object[key]!).map { "\(key).\($0)" } }
            }
            if let array = value as? [Any], let first = array.first { return keys(first).map { "[].\($0)" } }
            return []
        }
        var shapes: [String] = []
        func record(_ name: String, _ arguments: [String], home: String) throws {
            let value = try cli.json(arguments, home: home)
            shapes.append("\(name): " + keys(value).joined(separator: " "))
        }
        try record("submit", ["submit", try daemon.demoFile(6)], home: cli.gateway)
        let id = ((try cli.json(["inbox"], home: cli.responder) as! [String: Any])["cases"] as! [[String: Any]])[0]["id"] as! String
        try record("inbox", ["inbox"], home: cli.responder)
        try record("claim", ["claim", id], home: cli.responder)
        try record("note", ["note", id, "-m", "n"], home: cli.responder)
        try record("reply", ["reply", id, "-m", "r"], home: cli.responder)
        try record("show", ["show", id], home: cli.responder)
        let written = daemon.directory + "/case.txt"
        try record("show --output", ["show", id, "--output", written], home: cli.responder)
        let shown = try cli.run(["show", id, "--json"], home: cli.responder)
        let file = try String(contentsOfFile: written, encoding: .utf8)
        // Each opening renews the claim (to the minute): across a minute's turn the two reads differ in its end alone.
        let lease = /"claimExpiresAt" : "[^"]*"/
        #expect(file.replacing(lease, with: "") == shown.output.replacing(lease, with: "") && file.contains(lease),
                "with --json, the file holds the case as JSON: \(file) ---- \(shown.output)")
        #expect((try FileManager.default.attributesOfItem(atPath: written)[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        try record("release", ["release", id], home: cli.responder)
        _ = try cli.json(["claim", id], home: cli.responder)
        try record("refer", ["refer", id, "--to", "health", "--reason", "r"], home: cli.responder)
        try record("close", ["close", id, "--outcome", "referred"], home: cli.responder)
        try record("reopen", ["reopen", id], home: cli.supervisor)
        try record("keys", ["keys"], home: cli.responder)
        try record("stats", ["stats", "--by", "urgency"], home: cli.responder)
        try record("audit", ["audit", "--verify"], home: cli.supervisor)
        try Self.compare(shapes.joined(separator: "\n") + "\n", to: "json-shapes.txt")
    }
}
}

extension DaemonSuiteForCLI {
@Suite struct ExitCodeTests {
    /// Each kind of bad input to a command: its exit code and a message that says what to do, and nothing sent or written.
    @Test func badInputIsRefusedInWords() async throws {
        let daemon = try await Daemon()
        defer { daemon.stop(); daemon.removeData() }
        let cli = CLI(daemon: daemon)
        let scratch = daemon.directory + "/bad-input"
        try FileManager.default.createDirectory(atPath: scratch + "/fresh", withIntermediateDirectories: true)
        try "{\"urgency\":".write(toFile: scratch + "/cut.json", atomically: true, encoding: .utf8)
        try "short\n".write(toFile: scratch + "/short.pass", atomically: true, encoding: .utf8)
        chmod(scratch + "/short.pass", 0o600)
        let cases: [([String], String, Int32, String)] = [
            (["show", "not-an-id"], cli.responder, 1, "'not-an-id' is not a case id"),
            (["grant", "Bad Name!"], cli.responder, 1, "'Bad Name!' is not a member's name"),
            (["refer", "0000", "--to", "health"], cli.responder, 1, "say why with --reason-file FILE (- reads standard input) or --reason TEXT"),
            (["note", "0000", "-m", ""], cli.responder, 1, "the text is empty; nothing was sent"),
            (["hold", "0000"], cli.supervisor, 1, "give exactly one of --on and --off"),
            (["keys", "--passphrase", "secret"], cli.responder, 1, "Unknown option '--passphrase'"),
            (["replies", "--receipt-file", scratch + "/none"], cli.gateway, 1, "cannot read \(scratch)/none"),
            (["submit", scratch + "/none.json"], cli.gateway, 1, "cannot read \(scratch)/none.json"),
            (["submit", scratch + "/cut.json"], cli.gateway, 1, "cut.json: the body is not valid JSON in UTF-8"),
            (["keygen", "--passphrase-file", scratch + "/short.pass"], scratch + "/fresh", 1, "use a passphrase of at least 12 characters"),
            (["stats", "--by", "bogus"], cli.responder, 2, "parameter 'by' must be one of month, category"),
            (["inbox", "--state", "bogus"], cli.responder, 2, "unknown state 'bogus'"),
        ]
        for (arguments, home, code, message) in cases {
            let result = try cli.run(arguments, home: home)
            #expect(result.code == code && result.output.contains(message), "amane \(arguments.joined(separator: " ")): \(result.code) \(result.output)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch + "/fresh").isEmpty, "a refused keygen writes no key")
        #expect((try daemon.get("/v1/queue", as: daemon.responder).json["cases"] as? [[String: Any]])?.isEmpty == true, "nothing was submitted")
        // The passphrase file named in the environment comes before the profile's: a wrong one is refused.
        try "not the passphrase at all\n".write(toFile: scratch + "/wrong.pass", atomically: true, encoding: .utf8)
        chmod(scratch + "/wrong.pass", 0o600)
        let wrong = try cli.run(["keygen", "--show"], home: cli.responder, extraEnvironment: ["AMANE_PASSPHRASE_FILE": scratch + "/wrong.pass"])
        #expect(wrong.code == 0, "showing the public key needs no passphrase: \(wrong.output)")
        let locked = try cli.run(["keys"], home: cli.responder, extraEnvironment: ["AMANE_PASSPHRASE_FILE": scratch + "/wrong.pass"])
        #expect(locked.code == 4 && !locked.output.contains("not the passphrase"), "\(locked.output)")
        let overridden = try cli.run(["keys", "--passphrase-file", cli.responder + "/passphrase"], home: cli.responder,
                                     extraEnvironment: ["AMANE_PASSPHRASE_FILE": scratch + "/wrong.pass"])
        #expect(overridden.code == 0, "--passphrase-file comes first: \(overridden.output)")
    }

    @Test func everyDocumentedExitCodeOccursWhereStated() async throws {
        let daemon = try await Daemon()
        defer { daemon.stop(); daemon.removeData() }
        let cli = CLI(daemon: daemon)
        #expect(try cli.run(["inbox"], home: cli.responder).code == 0)
        #expect(try cli.run(["--version"], home: cli.responder) == (0, RelayVersion.current + "\n"))
        #expect(try Daemon.run(Build.daemon, ["--version"]) == (0, RelayVersion.current + "\n"))
        #expect(daemon.stderr.value.contains("relay.version=\(RelayVersion.current)"), "the daemon logs its version: \(daemon.stderr.value)")
        let usage = try cli.run(["claim"], home: cli.responder)
        #expect(usage.code == 1 && usage.output.contains("Missing expected argument"))
        let mistypedCommand = try cli.run(["clse", "1d6767d8"], home: cli.responder)
        #expect(mistypedCommand.code == 1 && mistypedCommand.output.contains("'clse' is not an amane command")
                && mistypedCommand.output.contains("Did you mean `amane close`?"), "\(mistypedCommand.output)")
        let unknownOption = try cli.run(["inbox", "--colour"], home: cli.responder)
        #expect(unknownOption.code == 1 && unknownOption.output.hasPrefix("Error: Unknown option '--colour'"), "said once: \(unknownOption.output)")
        let (unknownJSON, _) = try cli.json(["inbox", "--colour"], home: cli.responder, failingWith: 1)
        #expect((unknownJSON as? [String: Any])?["error"] as? String == "Unknown option '--colour'"
                && (unknownJSON as? [String: Any])?["hint"] as? String == "See 'amane inbox --help' for more information.", "for scripts, the reason alone: \(unknownJSON)")
        let headAlone = try cli.run(["audit", "--expect-head", "1:00"], home: cli.supervisor)
        #expect(headAlone.code == 1 && headAlone.output.contains("--expect-head checks only with --verify"), "\(headAlone.output)")
        let both = try cli.run(["note", "00000000", "-m", "a", "--file", "/dev/null"], home: cli.responder)
        #expect(both.code == 1 && both.output.contains("not both"), "\(both.output)")
        let csvAndJSON = try cli.run(["stats", "--csv", "--json"], home: cli.responder)
        #expect(csvAndJSON.code == 1 && csvAndJSON.output.contains("not both"), "\(csvAndJSON.output)")
        let noRows = try cli.run(["inbox", "--limit", "0"], home: cli.responder)
        #expect(noRows.code == 1 && noRows.output.contains("--limit"), "\(noRows.output)")
        let entryZero = try cli.run(["audit", "--verify", "--expect-head", "0:" + String(repeating: "0", count: 64)], home: cli.supervisor)
        #expect(entryZero.code == 1 && entryZero.output.contains("--expect-head takes SEQ:HASH"),
                "entry 0 is no head: a usage error, not a cut trail: \(entryZero.output)")
        let unknownCategory = try cli.run(["inbox", "--category", "bogus"], home: cli.responder)
        #expect(unknownCategory.code == 2 && unknownCategory.output.contains("unknown category 'bogus'"), "\(unknownCategory.output)")
        let requestID = unknownCategory.output.firstMatch(of: /HTTP 400; request ([0-9a-f-]{36})\)/).map { String($0.output.1) }
        #expect(try await eventually { requestID.map { daemon.stderr.value.contains("relay.request.id=\($0)") } == true },
                "the refusal names the request as the relay's log does: \(unknownCategory.output)")
        let refused = try cli.run(["inbox"], home: cli.gateway)
        #expect(refused.code == 2 && refused.output.contains("may not call") && refused.output.contains("it is for responders and supervisors")
                && refused.output.contains("HTTP 403"), "\(refused.output)")
        #expect(!refused.output.contains("revoked"), "a routine refusal does not suggest a revocation: \(refused.output)")
        let unknownReceipt = try cli.run(["replies"], home: cli.gateway, input: "9477 5412 6644 3143\n")
        #expect(unknownReceipt.code == 2 && unknownReceipt.output.contains("receipt") && !unknownReceipt.output.contains("amane inbox"),
                "a gateway is not sent to a command it may not run: \(unknownReceipt.output)")
        // A reporter back after the case was purged hears the same as a mistyped receipt, and what to do then.
        #expect(unknownReceipt.output.contains("A case closed more than \(TriagePolicy.default.closedRetentionDays) days ago is removed with its receipt")
                && unknownReceipt.output.contains("submit what the reporter tells now as a new disclosure"), "\(unknownReceipt.output)")

        let offline = daemon.directory + "/offline"
        try FileManager.default.createDirectory(atPath: offline, withIntermediateDirectories: true)
        let profile = try String(contentsOfFile: cli.responder + "/config.yaml", encoding: .utf8)
            .replacingOccurrences(of: daemon.url, with: "https://127.0.0.1:1")
        try profile.write(toFile: offline + "/config.yaml", atomically: true, encoding: .utf8)
        let mistyped = try cli.run(["inbox"], home: daemon.directory + "/no-such-profile")
        #expect(mistyped.code == 1 && mistyped.output.contains("no profile at"), "\(mistyped.output)")
        let empty = daemon.directory + "/empty-profile"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        let unwritten = try cli.run(["inbox"], home: empty)
        #expect(unwritten.code == 1 && unwritten.output.contains("the profile \(empty) has no config.yaml"), "not a missing key: \(unwritten.output)")
        let unreachable = try cli.run(["inbox"], home: offline)
        #expect(unreachable.code == 3 && unreachable.output.contains("https://127.0.0.1:1") && unreachable.output.contains("nothing answers"),
                "\(unreachable.output)")
        // Another CA in the profile: said in words, not as BoringSSL's error with a build path.
        let otherCA = daemon.directory + "/other-ca"
        #expect(try Daemon.run("/usr/bin/openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
                                                    "-subj", "/CN=Not the relay", "-keyout", otherCA + "-key.pem", "-out", otherCA + ".pem"]).0 == 0)
        try profile.replacingOccurrences(of: "https://127.0.0.1:1\n", with: daemon.url + "\n").replacingOccurrences(of: daemon.ca, with: otherCA + ".pem")
            .write(toFile: offline + "/config.yaml", atomically: true, encoding: .utf8)
        let wrongCA = try cli.run(["inbox"], home: offline)
        #expect(wrongCA.code == 3 && wrongCA.output.contains("could not be verified against the CA in your profile") && !wrongCA.output.contains("checkouts"),
                "\(wrongCA.output)")
        // Trying again cannot mend a refused certificate: note and reply do not.
        let client = try RelayClient(profile: Profile.load(offline))
        await #expect { _ = try await client.getText("/v1/health") } throws: { ($0 as? CLIError)?.secureConnectionFailed == true }
        await client.shutdown()
        // A listener that drops every connection counts amane's attempts: none over plain HTTP, one over TLS.
        let dropper = try Dropper()
        defer { dropper.stop() }
        try profile.replacingOccurrences(of: "https://127.0.0.1:1", with: "http://127.0.0.1:\(dropper.port)")
            .write(toFile: offline + "/config.yaml", atomically: true, encoding: .utf8)
        let plain = try cli.run(["inbox"], home: offline)
        #expect(plain.code == 1 && plain.output.contains("must start with https://"), "\(plain.output)")
        try profile.replacingOccurrences(of: "https://127.0.0.1:1", with: "https://127.0.0.1:\(dropper.port)")
            .write(toFile: offline + "/config.yaml", atomically: true, encoding: .utf8)
        let dropped = try cli.run(["inbox"], home: offline)
        let attempts = dropper.connections()
        #expect(dropped.code == 3 && attempts == 1, "amane tries once: \(attempts) connections; \(dropped.output)")
        try profile.write(toFile: offline + "/config.yaml", atomically: true, encoding: .utf8)

        // A relay that fails (5xx): exit code 5, with its reason and request id.
        let problem = #"{"type":"about:blank","title":"Internal Server Error","status":500,"code":"internal_error","detail":"the store failed"}"#
        let failing = try Dropper(tls: (daemon.directory + "/pki/server-cert.pem", daemon.directory + "/pki/server-key.pem"), answer: """
            HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/problem+json\r\nRequest-Id: 0b5e6a1c-0000-4000-8000-000000000005\r\n\
            Content-Length: \(problem.utf8.count)\r\nConnection: close\r\n\r\n\(problem)
            """)
        defer { failing.stop() }
        try String(contentsOfFile: cli.responder + "/config.yaml", encoding: .utf8).replacingOccurrences(of: daemon.url, with: "https://127.0.0.1:\(failing.port)")
            .write(toFile: offline + "/config.yaml", atomically: true, encoding: .utf8)
        let failed = try cli.run(["inbox"], home: offline)
        #expect(failed.code == 5 && failed.output.contains("the relay failed: Internal Server Error: the store failed (HTTP 500")
                && failed.output.contains("0b5e6a1c-0000-4000-8000-000000000005"), "\(failed.output)")
        try profile.write(toFile: offline + "/config.yaml", atomically: true, encoding: .utf8)

        // A relay that takes a submission and dies before answering: the key comes back, to retry under.
        let hangsUp = try Dropper(tls: (daemon.directory + "/pki/server-cert.pem", daemon.directory + "/pki/server-key.pem"))
        defer { hangsUp.stop() }
        let dyingRelay = daemon.directory + "/dying-relay"
        try FileManager.default.createDirectory(atPath: dyingRelay, withIntermediateDirectories: true)
        try String(contentsOfFile: cli.gateway + "/config.yaml", encoding: .utf8)
            .replacingOccurrences(of: daemon.url, with: "https://127.0.0.1:\(hangsUp.port)")
            .write(toFile: dyingRelay + "/config.yaml", atomically: true, encoding: .utf8)
        let demo = try daemon.demoFile(6)
        let unanswered = try cli.run(["submit", demo], home: dyingRelay)
        let keyFile = unanswered.output.firstMatch(of: /--idempotency-key-file (\S+\.key)/).map { String($0.output.1) }
        #expect(unanswered.code == 3 && unanswered.output.contains("it may or may not have received the request")
                && unanswered.output.contains("amane submit \(demo) --idempotency-key-file \(dyingRelay)/unanswered/")
                && !unanswered.output.contains("amane-key-"), "the key is saved, not shown: \(unanswered.output)")
        let savedAt = try #require(keyFile)
        let keyText = try String(contentsOfFile: savedAt, encoding: .utf8)
        let savedMode = try FileManager.default.attributesOfItem(atPath: savedAt)[.posixPermissions] as? Int
        #expect(keyText.hasPrefix("amane-key-") && savedMode == 0o600)
        let unansweredJSON = try cli.run(["submit", demo, "--json"], home: dyingRelay)
        let failure = try JSONSerialization.jsonObject(with: Data(unansweredJSON.output.utf8)) as? [String: Any]
        #expect(unansweredJSON.code == 3 && (failure?["idempotencyKeyFile"] as? String)?.hasPrefix(dyingRelay + "/unanswered/") == true,
                "\(unansweredJSON.output)")
        let givenInArgv = try cli.run(["submit", demo, "--idempotency-key", "retry-key-0000000001"], home: dyingRelay)
        #expect(givenInArgv.output.contains("with the same --idempotency-key") && !givenInArgv.output.contains("retry-key-0000000001"), "\(givenInArgv.output)")
        // The saved key, moved to the gateway's own profile as a retry there would be: answered once, the same twice; then removed.
        let retryFile = cli.gateway + "/unanswered/retry.key"
        try FileManager.default.createDirectory(atPath: cli.gateway + "/unanswered", withIntermediateDirectories: true)
        #expect(FileManager.default.createFile(atPath: retryFile, contents: Data(keyText.utf8), attributes: [.posixPermissions: 0o600]))
        let first = try cli.run(["submit", demo, "--idempotency-key", keyText.trimmingCharacters(in: .whitespacesAndNewlines), "--json"], home: cli.gateway)
        let again = try cli.run(["submit", demo, "--idempotency-key-file", retryFile, "--json"], home: cli.gateway)
        #expect(first.code == 0 && first.output == again.output, "the saved key retries safely: \(first.output) \(again.output)")
        #expect(!FileManager.default.fileExists(atPath: retryFile), "a saved key that served is removed")
        // Named relative to the folder it is in, as `ls` shows it, the saved key is the same file: removed too.
        let relativeFile = cli.gateway + "/unanswered/relative.key"
        #expect(FileManager.default.createFile(atPath: relativeFile, contents: Data(keyText.utf8), attributes: [.posixPermissions: 0o600]))
        let fromThere = try Daemon.run("/usr/bin/env", ["-C", cli.gateway + "/unanswered", "AMANE_HOME=\(cli.gateway)", "NO_COLOR=1", Build.cli,
                                                        "submit", demo, "--idempotency-key-file", "relative.key", "--json"])
        #expect(fromThere.0 == 0 && fromThere.1 == first.output, "\(fromThere.1)")
        #expect(!FileManager.default.fileExists(atPath: relativeFile), "a saved key named relatively is removed once it served")
        let rerun = try cli.run(["submit", demo, "--idempotency-key-file", retryFile], home: cli.gateway)
        #expect(rerun.code == 1 && rerun.output.contains("does not exist; nothing was sent") && rerun.output.contains("removed once its submission is answered"),
                "the retry run twice says why its key is gone: \(rerun.output)")
        // Where the request never left, there is no doubt and no key to keep.
        try String(contentsOfFile: cli.gateway + "/config.yaml", encoding: .utf8).replacingOccurrences(of: daemon.url, with: "https://127.0.0.1:1")
            .write(toFile: dyingRelay + "/config.yaml", atomically: true, encoding: .utf8)
        let neverSent = try cli.run(["submit", demo], home: dyingRelay)
        #expect(neverSent.code == 3 && neverSent.output.contains("nothing answers") && !neverSent.output.contains("idempotency")
                && !neverSent.output.contains("may or may not"), "\(neverSent.output)")

        let wrong = daemon.directory + "/wrong-passphrase"
        try "not the passphrase\n".write(toFile: wrong, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: wrong)
        let open = try cli.run(["keys", "--passphrase-file", wrong], home: cli.responder)
        let keyless = try cli.run(["inbox", "--passphrase-file", wrong, "--json"], home: cli.responder)
        #expect(keyless.code == 0 && keyless.output.contains("\"cases\""), "a command that opens no key takes the option and leaves the file alone: \(keyless.output)")
        #expect(open.code == 1 && open.output.contains("open to other users (mode 644)") && open.output.contains("chmod 600"), "\(open.output)")
        // The client certificate's key and the identity file are refused the same way when others may read them.
        let clientKey = cli.responder + "/key.pem", identityFile = cli.responder + "/identity.amane"
        for (file, what) in [(clientKey, "the client key"), (identityFile, "the identity file")] {
            try FileManager.default.setAttributes([.posixPermissions: 0o640], ofItemAtPath: file)
            let exposed = try cli.run(["keys"], home: cli.responder)
            #expect(exposed.code == 1 && exposed.output.contains("\(what) \(file) is open to other users (mode 640)"), "\(exposed.output)")
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file)
        }
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: wrong)
        // Timed against a right passphrase just before, since other suites share the machine.
        let unlockStarted = ContinuousClock.now
        #expect(try cli.run(["keys"], home: cli.responder).code == 0)
        let unlockTime = ContinuousClock.now - unlockStarted
        let started = ContinuousClock.now
        let locked = try cli.run(["keys", "--passphrase-file", wrong], home: cli.responder)
        #expect(locked.code == 4 && locked.output.contains("wrong passphrase"))
        #expect(ContinuousClock.now - started < unlockTime * 2 + .seconds(2), "a wrong passphrase is reported as fast as a right one is accepted")
        #expect(!locked.output.contains("not the passphrase"), "the passphrase is never echoed")

        try "amane-identity v1\nsuite: nonsense\n".write(toFile: offline + "/identity.amane", atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: offline + "/identity.amane")
        try (profile + "identity: identity.amane\n").write(toFile: offline + "/config.yaml", atomically: true, encoding: .utf8)
        let damaged = try cli.run(["keys", "--passphrase-file", wrong], home: offline)
        #expect(damaged.code == 4 && damaged.output.contains("damaged"), "\(damaged.output)")

        let existing = daemon.directory + "/already-here.txt"
        try "keep me".write(toFile: existing, atomically: true, encoding: .utf8)
        let overwrite = try cli.run(["show", "00000000", "--output", existing], home: cli.responder)
        #expect(overwrite.code == 1 && overwrite.output.contains("--force"))
        #expect(try String(contentsOfFile: existing, encoding: .utf8) == "keep me")
    }
}
}

/// A TCP listener on loopback that accepts and at once closes every connection, and counts them.
final class Dropper {
    private let process = Process()
    private let lines = Pipe()
    let port: Int

    /// With `tls`, a certificate and key, it completes the handshake and reads the request before it hangs up,
    /// as a relay killed mid-request would; or, with `answer`, sends that raw HTTP answer first.
    init(tls: (certificate: String, key: String)? = nil, answer: String? = nil) throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-u", "-c", """
            import socket, ssl, sys
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen(64)
            print(s.getsockname()[1])
            tls = None
            if len(sys.argv) > 2:
                tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                tls.load_cert_chain(sys.argv[1], sys.argv[2])
            n = 0
            while True:
                c, _ = s.accept()
                n += 1
                print(n)
                if tls:
                    try:
                        c = tls.wrap_socket(c, server_side=True)
                        c.recv(65536)
                        if len(sys.argv) > 3:
                            c.sendall(sys.argv[3].encode())
                    except (ssl.SSLError, OSError):
                        pass
                c.close()
            """] + (tls.map { [$0.certificate, $0.key] } ?? []) + (answer.map { [$0] } ?? [])
        process.standardOutput = lines
        try process.run()
        var first = Data()
        while !first.contains(UInt8(ascii: "\n")) {
            let chunk = lines.fileHandleForReading.availableData
            guard !chunk.isEmpty else {
                kill(process.processIdentifier, SIGKILL)
                throw CocoaError(.fileReadUnknown)
            }
            first += chunk
        }
        port = Int(String(decoding: first, as: UTF8.self).split(separator: "\n")[0])!
        pending = String(decoding: first, as: UTF8.self).split(separator: "\n").dropFirst().map(String.init)
    }

    private var pending: [String]

    /// The connections accepted so far; call after the client is done.
    func connections() -> Int {
        stop()
        let rest = String(decoding: lines.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        pending += rest.split(separator: "\n").map(String.init)
        return pending.compactMap { Int($0) }.max() ?? 0
    }

    func stop() {
        // SIGKILL: a child of the test runner starts with SIGTERM blocked.
        if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
    }
}
