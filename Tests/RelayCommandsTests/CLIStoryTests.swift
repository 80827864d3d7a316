import Foundation
import RelayCore
import RelayFormat
import RelayTestSupport
import Testing

/// Runs the real `amane` binary with a profile, as a responder would.
struct CLI {
    let daemon: Daemon

    func run(_ arguments: [String], home: String, extraEnvironment: [String: String] = [:], input: String? = nil) throws -> (code: Int32, output: String) {
        try Daemon.run(Build.cli, arguments, environment: environment(home: home).merging(extraEnvironment) { $1 }, input: input.map { Data($0.utf8) })
    }

    /// A command's `--json` answer: standard output alone holds it, and nothing goes to standard error.
    func json(_ arguments: [String], home: String, input: String? = nil) throws -> Any {
        let result = try Daemon.run(Build.cli, arguments + ["--json"], environment: environment(home: home), input: input.map { Data($0.utf8) }, separatingErrors: true)
        #expect(result.code == 0 && result.errors.isEmpty, "\(arguments): \(result.errors)")
        return try JSONSerialization.jsonObject(with: Data(result.output.utf8))
    }

    /// A JSON answer that comes with a failure: the JSON on standard output, the error on standard error.
    func json(_ arguments: [String], home: String, failingWith expected: Int32) throws -> (json: Any, errors: String) {
        let result = try Daemon.run(Build.cli, arguments + ["--json"], environment: environment(home: home), separatingErrors: true)
        #expect(result.code == expected, "\(arguments): \(result.errors)")
        return (try JSONSerialization.jsonObject(with: Data(result.output.utf8)), result.errors)
    }

    /// The profile's home, and no colour.
    func environment(home: String) -> [String: String] { Build.environment(["AMANE_HOME": home, "NO_COLOR": "1"]) }

    var gateway: String { daemon.dev + "/gateway" }
    var responder: String { daemon.dev + "/responder" }
    var supervisor: String { daemon.dev + "/supervisor" }

    /// A new responder: keygen on their machine, enrollment by the admin, and a profile.
    func newResponder(_ name: String, enrolling options: [String] = []) throws -> String {
        let home = daemon.directory + "/people/" + name
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        let passphrase = home + "/../\(name).passphrase"
        try "a long enough passphrase for \(name)\n".write(toFile: passphrase, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: passphrase)
        let key = try json(["keygen", "--passphrase-file", passphrase], home: home) as! [String: Any]
        try (key["fingerprint"] as! String).write(toFile: home + "/../\(name).fingerprint", atomically: true, encoding: .utf8)
        // A lost keygen output is printed again from the identity file, without the passphrase; a second keygen replaces nothing.
        let shown = try json(["keygen", "--show"], home: home) as! [String: Any]
        #expect(shown["publicKey"] as? String == key["publicKey"] as? String && shown["fingerprint"] as? String == key["fingerprint"] as? String)
        let again = try run(["keygen", "--passphrase-file", passphrase], home: home)
        #expect(again.code == 1 && again.output.contains("refusing to replace") && again.output.contains("amane keygen --show"), "\(again)")
        #expect(try json(["keygen", "--show"], home: home) as? [String: String] == shown as? [String: String])
        let (code, output) = try daemon.admin(["admin", "enroll-responder", name, "--sealing-key", key["publicKey"] as! String, "--out", home] + options)
        #expect(code == 0, "\(output)")
        try """
            relay: \(daemon.url)
            ca: \(daemon.ca)
            certificate: \(name)-cert.pem
            key: \(name)-key.pem
            passphraseFile: \(passphrase)
            """.write(toFile: home + "/config.yaml", atomically: true, encoding: .utf8)
        return home
    }
}

extension Daemon {
    /// The demo narrative of `seeds/demo`, numbered from 1.
    func demoFile(_ index: Int) throws -> String {
        let files = try FileManager.default.contentsOfDirectory(atPath: Build.seeds + "/demo").filter { $0.hasSuffix(".json") }.sorted()
        return Build.seeds + "/demo/" + files[index - 1]
    }
}

extension DaemonSuiteForCLI {
@Suite struct CLIStoryTests {
    /// A donor report counts the cases of the months it asks for, by the month they were received.
    @Test func statisticsCountTheMonthsAReportAsksFor() async throws {
        let daemon = try await Daemon()
        defer { daemon.stop(); daemon.removeData() }
        let cli = CLI(daemon: daemon)
        var ids: [String] = []
        for file in 1...3 {
            ids.append(try #require((try cli.json(["submit", try daemon.demoFile(file)], home: cli.gateway) as? [String: Any])?["id"] as? String))
        }
        // Two were received in October 2026 (moved back in the file; 2026-10-31 23:30 UTC is the month's edge).
        let moved = "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); db.executemany('UPDATE disclosure SET receivedAt = ? WHERE id = ?', [(1793489400, sys.argv[2]), (1790812800, sys.argv[3])]); db.commit()"
        #expect(try Daemon.run("/usr/bin/env", ["python3", "-c", moved, daemon.directory + "/relay.sqlite", ids[0], ids[1]]).0 == 0)
        let october = try #require(try cli.json(["stats", "--by", "month", "--from", "2026-10", "--to", "2026-10"], home: cli.responder) as? [String: Any])
        #expect((october["rows"] as? [[String: Any]])?.map { "\($0["key"]!)=\($0["count"]!)" } == ["2026-10=2"]
                && october["from"] as? String == "2026-10" && october["to"] as? String == "2026-10", "\(october)")
        let everything = try #require(try cli.json(["stats", "--by", "month"], home: cli.responder) as? [String: Any])
        #expect((everything["rows"] as? [[String: Any]])?.count == 2 && everything["from"] == nil, "\(everything)")
        let (code, table) = try cli.run(["stats", "--by", "category", "--from", "2026-11"], home: cli.responder)
        #expect(code == 0 && table.contains("Cases of the queue national received 2026-11 to now (UTC months)"), "\(table)")
        let counted = table.split(separator: "\n").dropFirst(2).compactMap { $0.split(separator: " ").last.flatMap { Int($0) } }.reduce(0, +)
        #expect(counted == 1, "only the case received this month: \(table)")

        let (badCode, bad) = try cli.run(["stats", "--from", "2026-13"], home: cli.responder)
        #expect(badCode == 1 && bad.contains("--from takes a month as YYYY-MM"), "\(bad)")
        let (backwardsCode, backwards) = try cli.run(["stats", "--from", "2026-11", "--to", "2026-10"], home: cli.responder)
        #expect(backwardsCode == 1 && backwards.contains("--to 2026-10 comes before --from 2026-11"), "\(backwards)")
        let refused = try daemon.get("/v1/stats?by=month&from=october", as: daemon.responder)
        #expect(refused.status == 400 && refused.text.contains("YYYY-MM"), "\(refused.text)")
    }

    /// Two organisations on one relay: Bayti's queue is made with its first enrolment, and its cases, key, members
    /// and statistics are its own. The national queue's members see none of them, nor Bayti's theirs.
    @Test func aSecondOrganisationHasAQueueOfItsOwn() async throws {
        let pager = FileManager.default.temporaryDirectory.appendingPathComponent("pager-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: pager, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: pager) }
        try "#!/bin/sh\necho \"$@\" >> \(pager)/paged\n".write(toFile: pager + "/page", atomically: true, encoding: .utf8)
        #expect(chmod(pager + "/page", 0o755) == 0)
        var daemon = try await Daemon(environment: ["AMANE_SLA_NOTIFY_COMMAND": pager + "/page"])
        defer { daemon.stop(); daemon.removeData() }
        let cli = CLI(daemon: daemon)
        let handover = daemon.directory + "/kiosk-bayti"
        let kioskKey = SealingPrivateKey.generate(suite: .x25519ChaChaPoly).publicKey.text
        func enrollKiosk(_ queue: [String]) throws -> (Int32, String) {
            try daemon.admin(["admin", "enroll-gateway", "kiosk-bayti", "--sealing-key", kioskKey, "--out", handover, "--queue"] + queue)
        }
        let (misspelt, misspeltText) = try enrollKiosk(["Bayti"])
        #expect(misspelt == 64 && misspeltText.contains("--queue: 'Bayti' is not a queue name"), "\(misspeltText)")
        let (unknown, unknownText) = try enrollKiosk(["bayti"])
        #expect(unknown == 1 && unknownText.contains("no queue named bayti (this relay has national)") && unknownText.contains("--new-queue")
                && !FileManager.default.fileExists(atPath: handover), "a typo makes no queue and signs nothing: \(unknownText)")
        let (bare, bareText) = try daemon.admin(["admin", "enroll-gateway", "kiosk-bayti", "--sealing-key", kioskKey, "--out", handover, "--new-queue"])
        #expect(bare == 64 && bareText.contains("--new-queue creates the queue --queue names"), "\(bareText)")
        let (national, nationalText) = try enrollKiosk(["national", "--new-queue"])
        #expect(national == 1 && nationalText.contains("a queue named national exists already: to enroll them in it, leave out --new-queue")
                && !FileManager.default.fileExists(atPath: handover), "no one joins a queue by creating it: \(nationalText)")
        func keyHolders() throws -> [String] {
            try Daemon.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(daemon.opsPort)/metrics"]).1.split(separator: "\n")
                .filter { $0.hasPrefix("amane_queue_key_holders{") }.map(String.init).sorted()
        }
        let (created, createdText) = try enrollKiosk(["bayti", "--new-queue"])
        #expect(created == 0 && createdText.contains("Enrolled kiosk-bayti as gateway in queue bayti.") && createdText.contains("Created the queue bayti")
                && createdText.contains("enroll its first responder (`admin enroll-responder NAME --queue bayti`), who then runs `amane rotate`"), "\(createdText)")
        let holders = try keyHolders()
        #expect(holders == ["amane_queue_key_holders{queue=\"bayti\"} 0.0", "amane_queue_key_holders{queue=\"national\"} 2.0"], "\(holders)")
        let kiosk = ClientIdentity(certificate: handover + "/kiosk-bayti-cert.pem", key: handover + "/kiosk-bayti-key.pem")
        func submit(_ urgency: String) throws -> HTTPResult {
            try daemon.post("/v1/disclosures", as: kiosk, json: Demo.body(narrative: "synthetic: a boy at the Bayti centre", urgency: urgency),
                            headers: ["Idempotency-Key": Demo.key()])
        }
        let unsealed = try submit("high")
        #expect(unsealed.status == 503 && unsealed.text.contains("bayti"), "Bayti's queue has no key yet: \(unsealed.text)")

        let nadia = try cli.newResponder("nadia", enrolling: ["--supervisor", "--queue", "bayti"])
        let keyless = try cli.run(["keys"], home: nadia)
        #expect(keyless.code == 0 && keyless.output.contains("no member holds a key of your queue either: `amane rotate` makes its first one"), "\(keyless.output)")
        let rotated = try cli.run(["rotate"], home: nadia)
        #expect(rotated.code == 0 && rotated.output.contains(", granted to you only.\nOnly you hold it") && !rotated.output.contains("Left out"),
                "Bayti's first key goes to Bayti's members only: \(rotated.output)")
        let posted = try submit("low")
        let baytiCase = try #require(posted.json["id"] as? String, "\(posted.text)")
        let nationalCase = try #require((try cli.json(["submit", try daemon.demoFile(1)], home: cli.gateway) as? [String: Any])?["id"] as? String)
        func inbox(_ home: String) throws -> [String] {
            ((try cli.json(["inbox"], home: home) as! [String: Any])["cases"] as! [[String: Any]]).compactMap { $0["id"] as? String }
        }
        #expect(try inbox(nadia) == [baytiCase] && inbox(cli.responder) == [nationalCase] && inbox(cli.supervisor) == [nationalCase])
        let opened = try cli.run(["show", baytiCase], home: nadia)
        #expect(opened.code == 0 && opened.output.contains("synthetic: a boy at the Bayti centre"), "\(opened.output)")
        let elsewhere = try cli.run(["show", baytiCase], home: cli.supervisor)
        #expect(elsewhere.code == 2 && elsewhere.output.contains("no case \(baytiCase)") && !elsewhere.output.contains("Bayti centre"),
                "to the other queue's members it does not exist: \(elsewhere.output)")
        func counted(_ home: String) throws -> [String] {
            ((try cli.json(["stats", "--by", "urgency"], home: home) as! [String: Any])["rows"] as! [[String: Any]]).map { "\($0["key"]!)=\($0["count"]!)" }
        }
        #expect(try counted(nadia) == ["low=1"] && counted(cli.responder) == ["immediate=1"], "each queue counts its own cases")
        #expect(try cli.run(["stats"], home: nadia).output.hasPrefix("Cases of the queue bayti\n"))

        // The audit trail is one chain: each queue's supervisors verify all of it, and read only their own queue's entries.
        func trail(_ home: String) throws -> [[String: Any]] { try cli.json(["audit"], home: home) as! [[String: Any]] }
        let baytiTrail = try trail(nadia), nationalTrail = try trail(cli.supervisor)
        #expect(baytiTrail.contains { $0["subject"] as? String == baytiCase && $0["action"] as? String == "intake" }
                && baytiTrail.contains { $0["subject"] as? String == "kiosk-bayti" && $0["action"] as? String == "principal.enroll" })
        #expect(!baytiTrail.contains { "\($0)".contains(nationalCase) || "\($0)".contains("demo-") }, "\(baytiTrail)")
        #expect(nationalTrail.contains { $0["subject"] as? String == nationalCase }
                && !nationalTrail.contains { "\($0)".contains(baytiCase) || "\($0)".contains("bayti") || "\($0)".contains("nadia") }, "\(nationalTrail)")
        let baytiVerified = try cli.run(["audit", "--verify"], home: nadia), nationalVerified = try cli.run(["audit", "--verify"], home: cli.supervisor)
        let heads = [baytiVerified, nationalVerified].map { $0.output.firstMatch(of: /Head: (\d+:[0-9a-f]{64})/).map { String($0.1) } }
        #expect(baytiVerified.code == 0 && nationalVerified.code == 0 && heads[0] != nil && heads[0] == heads[1]
                && baytiVerified.output.contains("of them are about other queues: withheld from you, they were checked by their links only"),
                "\(baytiVerified.output)\n\(nationalVerified.output)")
        let (revoked, revokedText) = try daemon.admin(["admin", "revoke", "nadia"])
        #expect(revoked == 0 && revokedText.contains("Warning: no active member holds the current key of the queue bayti"), "\(revokedText)")
        #expect(try daemon.get("/v1/queues/national/sealing-key", as: kiosk).status == 404)
        let members = try daemon.get("/v1/members", as: daemon.responder).json["members"] as? [[String: Any]]
        #expect(members?.contains { $0["name"] as? String == "nadia" } == false, "\(String(describing: members))")
        let listed = try daemon.admin(["admin", "list"]).1.split(separator: "\n")
        #expect(listed.contains { $0.hasPrefix("nadia ") && $0.contains("bayti") } && listed.contains { $0.hasPrefix("kiosk-bayti ") && $0.contains("bayti") },
                "\(listed)")

        // Each organisation's pager hears of its own late cases, and the metrics count each queue apart.
        func caseCounts() throws -> [String] {
            let series = try Daemon.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(daemon.opsPort)/metrics"]).1.split(separator: "\n")
                .filter { $0.hasPrefix("amane_queue_depth_cases{") || $0.hasPrefix("amane_sla_breaches_cases{") }
            #expect(series.count == 2 * 2 * Urgency.allCases.count, "each queue and urgency, zeros included: \(series)")
            return series.filter { !$0.hasSuffix(" 0.0") }.map(String.init).sorted()
        }
        let counted = try caseCounts()
        #expect(counted == [#"amane_queue_depth_cases{queue="bayti",urgency="low"} 1.0"#,
                            #"amane_queue_depth_cases{queue="national",urgency="immediate"} 1.0"#], "\(counted)")
        #expect(!FileManager.default.fileExists(atPath: pager + "/paged"), "nothing is past its SLA yet")
        daemon.stop()
        let age = "import sqlite3, sys; db = sqlite3.connect(sys.argv[1], timeout=30); db.execute('UPDATE disclosure SET receivedAt = receivedAt - 345600'); db.commit()"
        #expect(try Daemon.run("/usr/bin/env", ["python3", "-c", age, daemon.directory + "/relay.sqlite"]).0 == 0)
        daemon = try await daemon.restarted()
        #expect(try await eventually { (try? String(contentsOfFile: pager + "/paged", encoding: .utf8))?.split(separator: "\n").count == 2 })
        let paged = try String(contentsOfFile: pager + "/paged", encoding: .utf8).split(separator: "\n").sorted()
        #expect(paged == ["immediate 1 national", "low 1 bayti"], "one page for each queue, naming it: \(paged)")
        #expect(try await eventually(within: 10) {
            let log = daemon.stderr.value
            return log.contains("relay.count=1 relay.queue=bayti relay.unopened_followups=0 relay.urgency=low [RelayServer] cases past their SLA")
                && log.contains("relay.count=1 relay.queue=national relay.unopened_followups=0 relay.urgency=immediate [RelayServer] cases past their SLA")
        }, "\(daemon.stderr.value)")
        let late = try caseCounts()
        #expect(late == [#"amane_queue_depth_cases{queue="bayti",urgency="low"} 1.0"#,
                         #"amane_queue_depth_cases{queue="national",urgency="immediate"} 1.0"#,
                         #"amane_sla_breaches_cases{queue="bayti",urgency="low"} 1.0"#,
                         #"amane_sla_breaches_cases{queue="national",urgency="immediate"} 1.0"#], "\(late)")
    }

    @Test func aResponderDayFromIntakeToRevocation() async throws {
        var daemon = try await Daemon()
        defer { daemon.stop(); daemon.removeData() }
        var cli = CLI(daemon: daemon)

        // 1. A gateway submits three disclosures: Arabic, French, and one sealed on the client.
        var receipts: [String: String] = [:]
        for (index, seal) in [(1, false), (7, false), (3, true)] {
            let receipt = try cli.json(["submit", try daemon.demoFile(index)] + (seal ? ["--seal"] : []), home: cli.gateway) as! [String: Any]
            receipts[receipt["id"] as! String] = receipt["receipt"] as? String
        }
        #expect(receipts.count == 3)

        // 2. The inbox shows them urgent first.
        let inbox = (try cli.json(["inbox"], home: cli.responder) as! [String: Any])["cases"] as! [[String: Any]]
        #expect(inbox.map { $0["urgency"] as! String } == ["immediate", "high", "normal"])
        #expect(inbox.map { $0["language"] as! String } == ["ar", "fr", "ar"])
        let arabic = inbox[0]["id"] as! String
        let short = String(arabic.suffix(8))
        let (tableCode, table) = try cli.run(["inbox"], home: cli.responder)
        #expect(tableCode == 0 && table.contains(short) && !table.contains("\u{1B}["), "no colour with NO_COLOR")
        // Unclaimed cases show their SLA (seeds/policy.yaml): due for now, overdue once the wait for their urgency has passed.
        let normal = inbox[2]["id"] as! String
        #expect(table.split(separator: "\n").first { $0.contains(short) }?.contains(/due in 1[0-4]m/) == true, "immediate: 15 minutes from the minute it came, less the time since\n\(table)")
        let aged = try Daemon.run("/usr/bin/env", ["python3", "-c", """
            import sqlite3, sys
            db = sqlite3.connect(sys.argv[1], timeout=30)
            db.execute("UPDATE disclosure SET receivedAt = receivedAt - 2 * 86400 WHERE id = ?", (sys.argv[2],))
            db.commit()
            """, daemon.directory + "/relay.sqlite", normal])
        #expect(aged.0 == 0, "\(aged.1)")
        let overdue = try cli.run(["inbox"], home: cli.responder).output
        #expect(overdue.split(separator: "\n").first { $0.contains(normal.suffix(8)) }?.contains("overdue 24h") == true, "normal: one day\n\(overdue)")
        let onlyOverdue = (try cli.json(["inbox", "--overdue"], home: cli.responder) as! [String: Any])["cases"] as! [[String: Any]]
        #expect(onlyOverdue.map { $0["id"] as! String } == [normal], "what an SLA page is about: \(onlyOverdue)")
        let overdueText = try cli.run(["inbox", "--overdue"], home: cli.responder).output
        #expect(overdueText.contains(normal.suffix(8)) && !overdueText.contains("A held case is overdue"), "unclaimed only: no word on holders\n\(overdueText)")
        let noneOverdue = try cli.run(["inbox", "--overdue", "--urgency", "immediate"], home: cli.responder)
        #expect(noneOverdue.code == 0 && noneOverdue.output.contains("No case is past its SLA"), "\(noneOverdue.output)")
        // Ids start with their time: four digits name all three cases, and the CLI asks for more.
        let ambiguous = try cli.run(["show", String(arabic.prefix(4))], home: cli.responder)
        #expect(ambiguous.code == 1 && ambiguous.output.contains("matches 3 cases") && ambiguous.output.contains(short), "\(ambiguous.output)")
        let unknown = try cli.run(["show", "ffffffff"], home: cli.responder)
        #expect(unknown.code == 1 && unknown.output.contains("no case id starts or ends with 'ffffffff'")
                && unknown.output.contains("amane inbox --state closed --all"), "the hint names where closed cases are listed: \(unknown.output)")

        // 3. The responder claims one; another responder cannot.
        // A whole id copied without its dashes names the case too.
        let claimed = try cli.json(["claim", arabic.replacingOccurrences(of: "-", with: "").uppercased()], home: cli.responder) as! [String: Any]
        #expect(claimed["id"] as? String == arabic, "\(claimed)")
        let youssef = try cli.newResponder("youssef")
        let (refusedCode, refused) = try cli.run(["claim", short], home: youssef)
        #expect(refusedCode == 2 && refused.contains("cannot claim a case that is claimed; demo-responder holds it until 20") && !refused.contains("idempotency"), "\(refused)")
        let (refusedJSON, refusedErrors) = try cli.json(["claim", short], home: youssef, failingWith: 2)
        #expect(((refusedJSON as? [String: Any])?["error"] as? String ?? "").contains("cannot claim") && (refusedJSON as? [String: Any])?["exitCode"] as? Int == 2
                && (refusedJSON as? [String: Any])?["code"] as? String == "conflict"
                && refusedErrors.isEmpty, "with --json a failure is JSON on standard output too: \(refusedJSON) \(refusedErrors)")

        // 4. Shown decrypted, the text is what was submitted, Arabic intact.
        let demo = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: try daemon.demoFile(1)))) as! [String: Any]
        let narrative = (demo["content"] as! [String: Any])["narrative"] as! String
        let reading = try cli.json(["show", short], home: cli.responder) as! [String: Any]
        let entries = reading["entries"] as! [[String: Any]]
        #expect(entries.first?["kind"] as? String == "disclosure" && entries.first?["text"] as? String == narrative)
        let (_, plain) = try cli.run(["show", short], home: cli.responder)
        #expect(plain.contains(narrative.split(separator: " ").prefix(4).joined(separator: " ")))
        let sealedCase = try #require(receipts.keys.first { $0 != arabic && inbox[2]["id"] as? String == $0 })
        let sealedReading = try cli.json(["show", String(sealedCase.suffix(8))], home: cli.responder) as! [String: Any]
        let sealedDemo = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: try daemon.demoFile(3)))) as! [String: Any]
        let sealedNarrative = (sealedDemo["content"] as! [String: Any])["narrative"] as! String
        #expect((sealedReading["entries"] as! [[String: Any]]).first?["text"] as? String == sealedNarrative, "a client-sealed case opens to what was sealed")

        // 5. Note, reply and refer.
        #expect(try cli.run(["note", short, "-m", "Rappel: appeler l'école demain."], home: cli.responder).code == 0)
        let reply = "Nous sommes là pour toi. / نحن هنا من أجلك."
        #expect(try cli.run(["reply", short, "-m", reply], home: cli.responder).code == 0)
        // The gateway's key is pinned at the first reply through it; another key under its name is refused later.
        let principals = try JSONSerialization.jsonObject(with: Data(try daemon.admin(["admin", "list", "--json"]).1.utf8)) as? [[String: Any]] ?? []
        let gatewayFingerprint = try #require(principals.first { $0["name"] as? String == "demo-gateway" }?["sealingKeyFingerprint"] as? String)
        let gatewayPins = cli.responder + "/gateways"
        let gatewayPinned = try String(contentsOfFile: gatewayPins, encoding: .utf8)
        #expect(gatewayPinned.contains("\ndemo-gateway \(gatewayFingerprint.lowercased().filter { !$0.isWhitespace })\n"), "\(gatewayPinned)")
        try gatewayPinned.replacingOccurrences(of: gatewayFingerprint.lowercased().filter { !$0.isWhitespace }, with: "amane1-aaaa-aaaa-aaaa-aaaa-aaaa-aaaa")
            .write(toFile: gatewayPins, atomically: true, encoding: .utf8)
        let swapped = try cli.run(["reply", short, "-m", "not to be sealed"], home: cli.responder)
        #expect(swapped.code == 6 && swapped.output.contains("not the one it gave when you first replied through demo-gateway")
                && swapped.output.contains("nothing was sealed"), "\(swapped.output)")
        try gatewayPinned.write(toFile: gatewayPins, atomically: true, encoding: .utf8)
        chmod(gatewayPins, 0o600)
        // A refused move leaves no reason note behind; the accepted one does (5b counts two notes).
        let typo = try cli.run(["refer", short, "--to", "helth", "--reason", "Needs a doctor"], home: cli.responder)
        #expect(typo.code == 2 && typo.output.contains("unknown referral 'helth' (known: ") && typo.output.contains("health, legal"), "\(typo.output)")
        #expect(try cli.run(["refer", short, "--to", "health", "--reason-file", "-"], home: cli.responder, input: "Needs a doctor\n").code == 0,
                "a reason can stay off the command line")

        // 5b. A relay that moves the note to another case in its database cannot make it read there.
        let move = """
            import sqlite3, sys
            db = sqlite3.connect(sys.argv[1], timeout=30)
            db.execute("UPDATE sealedObject SET disclosureID = ? WHERE disclosureID = ? AND kind = 'note'", (sys.argv[3], sys.argv[2]))
            db.commit()
            print(db.total_changes)
            """
        let moved = try Daemon.run("/usr/bin/env", ["python3", "-c", move, daemon.directory + "/relay.sqlite", arabic, sealedCase])
        #expect(moved.0 == 0 && moved.1.trimmingCharacters(in: .whitespacesAndNewlines) == "2", "the note and the referral's note: \(moved.1)")
        let (movedJSON, movedErrors) = try cli.json(["show", String(sealedCase.suffix(8))], home: cli.responder, failingWith: 6)
        #expect(movedErrors.contains("did not open: 2 altered, moved from another case"), "\(movedErrors)")
        let elsewhere = movedJSON as! [String: Any]
        let movedNotes = (elsewhere["entries"] as! [[String: Any]]).filter { $0["kind"] as? String == "note" }
        #expect(movedNotes.count == 2 && movedNotes.allSatisfy { $0["text"] == nil && ($0["error"] as? String)?.contains("another case") == true },
                "\(movedNotes)")
        let movedBack = try Daemon.run("/usr/bin/env", ["python3", "-c", move, daemon.directory + "/relay.sqlite", sealedCase, arabic])
        #expect(movedBack.1.trimmingCharacters(in: .whitespacesAndNewlines) == "2", "\(movedBack.1)")
        // An envelope of a format version this amane does not know asks for an upgrade, not a tampering alarm.
        let setVersion = """
            import sqlite3, sys
            db = sqlite3.connect(sys.argv[1], timeout=30)
            rowid, envelope = db.execute("SELECT rowid, envelope FROM sealedObject WHERE disclosureID = ? AND kind = 'note' ORDER BY rowid LIMIT 1", (sys.argv[2],)).fetchone()
            db.execute("UPDATE sealedObject SET envelope = ? WHERE rowid = ?", (envelope[:4] + bytes([int(sys.argv[3])]) + envelope[5:], rowid))
            db.commit()
            print(envelope[4])
            """
        let (setCode, original) = try Daemon.run("/usr/bin/env", ["python3", "-c", setVersion, daemon.directory + "/relay.sqlite", arabic, "9"])
        #expect(setCode == 0, "\(original)")
        let (_, newerErrors) = try cli.json(["show", short], home: cli.responder, failingWith: 4)
        #expect(newerErrors.contains("1 sealed in a format this amane does not read") && newerErrors.contains("Upgrade amane"), "\(newerErrors)")
        let restore = original.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try Daemon.run("/usr/bin/env", ["python3", "-c", setVersion, daemon.directory + "/relay.sqlite", arabic, restore]).1.hasPrefix("9"))

        // 6. The gateway reads the reply with the receipt; the reporter follows up and the case shows updated.
        let receipt = receipts[arabic]!
        let replies = try cli.json(["replies"], home: cli.gateway, input: receipt + "\n") as! [[String: Any]]
        #expect(replies.map { $0["text"] as? String } == [reply])
        #expect(try cli.run(["reply", short, "-m", "Bien reçu\u{1B}]52;c;eA==\u{07}"], home: cli.responder).code == 0)
        let repliesText = try cli.run(["replies"], home: cli.gateway, input: receipt + "\n").output
        #expect(!repliesText.contains("\u{1B}") && repliesText.contains("Bien reçu^[]52;c;eA==^G"), "a reporter's screen runs no escape sequence: \(repliesText)")
        #expect(try daemon.post("/v1/followups", as: daemon.gateway, json: ["receipt": receipt, "content": ["narrative": "J'ai encore peur."]], headers: ["Idempotency-Key": Demo.key()]).status == 201)
        // A follow-up sealed at the kiosk, bound to the receipt's case, and retried with its key: sealed afresh, one follow-up.
        let followupFile = daemon.directory + "/followup.json"
        try JSONSerialization.data(withJSONObject: ["receipt": receipt, "content": ["narrative": "Scellé au kiosque."]]).write(to: URL(fileURLWithPath: followupFile))
        let followupKey = "story-followup-\(UUID().uuidString)"
        let sealedFollowup = try cli.json(["followup", followupFile, "--seal", "--idempotency-key", followupKey], home: cli.gateway) as! [String: Any]
        let retriedFollowup = try cli.json(["followup", followupFile, "--seal", "--idempotency-key", followupKey], home: cli.gateway) as! [String: Any]
        #expect(sealedFollowup["id"] is String && retriedFollowup["id"] as? String == sealedFollowup["id"] as? String, "\(sealedFollowup) \(retriedFollowup)")
        let updated = (try cli.json(["inbox"], home: cli.responder) as! [String: Any])["cases"] as! [[String: Any]]
        #expect(updated.first { $0["id"] as? String == arabic }?["updated"] as? Bool == true)
        // Its holder cannot close it unread; a reply asks only for the gateway's key, so the follow-up stays unread.
        #expect(try cli.run(["reply", short, "-m", "On lit ton message."], home: cli.responder).code == 0)
        let unread = try cli.run(["close", short, "--outcome", "support_provided"], home: cli.responder)
        #expect(unread.code == 2 && unread.output.contains("follow-up that you have not opened yet: open the case before you close it"), "\(unread.output)")
        // An hour on (immediate: 15 minutes), the referred case is overdue for its holder, and whoever is paged is told what to do.
        let unopenedAnHour = "import sqlite3, sys; db = sqlite3.connect(sys.argv[1], timeout=30); db.execute('UPDATE disclosure SET unopenedSince = unopenedSince - 3600 WHERE id = ?', (sys.argv[2],)); db.commit()"
        #expect(try Daemon.run("/usr/bin/env", ["python3", "-c", unopenedAnHour, daemon.directory + "/relay.sqlite", arabic]).0 == 0)
        let paged = try cli.run(["inbox", "--overdue"], home: cli.supervisor).output
        #expect(paged.split(separator: "\n").first { $0.contains(short) }?.contains("overdue 4") == true
                && paged.contains("until its holder opens the reporter's follow-up") && paged.contains("amane reopen ID"), "\(paged)")
        let openedReferred = try cli.run(["show", short], home: cli.responder).output
        #expect(openedReferred.contains("  state referred, assigned to demo-responder, referred to health\n"), "\(openedReferred)")
        #expect(!(try cli.run(["inbox", "--overdue"], home: cli.supervisor).output.contains(short)), "opened by its holder, it waits on no one")
        let read = (try cli.json(["inbox"], home: cli.responder) as! [String: Any])["cases"] as! [[String: Any]]
        #expect(read.first { $0["id"] as? String == arabic }?["updated"] as? Bool == false, "opened, the follow-up is read")
        // Another responder's reply is refused before it is written, and opens nothing: the trail shows no fetch of theirs.
        let refusedReply = try cli.run(["reply", short, "-m", "x"], home: youssef)
        #expect(refusedReply.code == 2 && refusedReply.output.contains("the case is referred: only its holder, or a supervisor, adds a reply now"), "\(refusedReply.output)")
        #expect((try cli.json(["audit", "--case", short, "--actor", "youssef"], home: cli.supervisor) as! [[String: Any]]).isEmpty)
        // A gateway that seals on its side is told of an empty narrative before sealing: the relay could not look.
        let blankFile = daemon.directory + "/blank.json"
        var blank = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: try daemon.demoFile(1)))) as! [String: Any]
        blank["content"] = ["narrative": "  \n"]
        try JSONSerialization.data(withJSONObject: blank).write(to: URL(fileURLWithPath: blankFile))
        let casesBefore = ((try cli.json(["inbox", "--all"], home: cli.supervisor) as! [String: Any])["cases"] as! [[String: Any]]).count
        let blankSealed = try cli.run(["submit", blankFile, "--seal"], home: cli.gateway)
        #expect(blankSealed.code == 1 && blankSealed.output.contains("content.narrative' holds no text; nothing was sent"), "\(blankSealed.output)")
        // The relay's limits for plaintext hold for sealed content too, checked here with the limits the relay names.
        for (content, refusal) in [(["narrative": String(repeating: "x", count: 65_537)], "content.narrative' holds 65537 bytes; it may hold 65536; nothing was sent"),
                                   (["narrative": "x", "answers": ["details": String(repeating: "y", count: 300_000)]],
                                    "the content holds 300042 bytes as JSON; the relay takes 262144; nothing was sent")] {
            blank["content"] = content
            try JSONSerialization.data(withJSONObject: blank).write(to: URL(fileURLWithPath: blankFile))
            let tooLarge = try cli.run(["submit", blankFile, "--seal"], home: cli.gateway)
            #expect(tooLarge.code == 1 && tooLarge.output.contains(refusal), "\(tooLarge.output)")
        }
        #expect(((try cli.json(["inbox", "--all"], home: cli.supervisor) as! [String: Any])["cases"] as! [[String: Any]]).count == casesBefore)

        // 7. The new responder is granted the keys and can read old cases. Until then the inbox says which cases they cannot open.
        func inboxLine(_ home: String) throws -> String {
            try #require(try cli.run(["inbox"], home: home).output.split(separator: "\n").first { $0.hasPrefix(short) }.map(String.init))
        }
        let keylessLine = try inboxLine(youssef), holderLine = try inboxLine(cli.responder)
        #expect(keylessLine.hasSuffix("no key") && !holderLine.contains("no key"), "\(keylessLine)\n\(holderLine)")
        let (beforeJSON, beforeErrors) = try cli.json(["show", short], home: youssef, failingWith: 4)
        let before = beforeJSON as! [String: Any]
        let unopened = before["entries"] as! [[String: Any]]
        #expect(!unopened.isEmpty && unopened.allSatisfy { $0["text"] == nil && $0["error"] != nil }, "\(unopened)")
        #expect(beforeErrors.contains("key you do not hold") && beforeErrors.contains("amane grant"), "\(beforeErrors)")
        // Without the queue key a reason cannot be sealed, so nothing moves.
        let keyless = try cli.run(["refer", short, "--to", "legal", "--reason", "R"], home: youssef)
        #expect(keyless.code == 4 && keyless.output.contains("no key for the queue's current epoch") && !keyless.output.contains("Referred case"),
                "\(keyless.output)")
        let responderFingerprint = try #require(try cli.run(["keygen", "--show"], home: cli.responder).output
            .firstMatch(of: /amane1(-[0-9a-z]{4}){6}/).map { String($0.output.0) })
        let keylessGrant = try cli.run(["grant", "demo-responder", "--fingerprint", responderFingerprint], home: youssef)
        #expect(keylessGrant.code == 0 && keylessGrant.output.contains("You hold no queue key, so none was granted"), "\(keylessGrant.output)")
        let unconfirmed = try cli.run(["grant", "youssef"], home: cli.responder)
        #expect(unconfirmed.code == 1 && unconfirmed.output.contains("confirm youssef's key first"), "\(unconfirmed.output)")
        #expect(!unconfirmed.output.contains(try String(contentsOfFile: youssef + "/../youssef.fingerprint", encoding: .utf8)),
                "the served fingerprint is not offered for copying: \(unconfirmed.output)")
        let fingerprint = try String(contentsOfFile: youssef + "/../youssef.fingerprint", encoding: .utf8)
        let listed = try JSONSerialization.jsonObject(with: Data(try daemon.admin(["admin", "list", "--json"]).1.utf8)) as? [[String: Any]] ?? []
        #expect(listed.first { $0["name"] as? String == "youssef" }?["sealingKeyFingerprint"] as? String == fingerprint.trimmingCharacters(in: .whitespacesAndNewlines),
                "the admin's list gives, for scripts, the fingerprint people compare: \(listed)")
        let mistaken = try cli.run(["grant", "youssef", "--fingerprint", "amane1-aaaa-aaaa-aaaa-aaaa-aaaa-aaaa"], home: cli.responder)
        #expect(mistaken.code == 6 && mistaken.output.contains("nothing was sealed") && !mistaken.output.contains(fingerprint.trimmingCharacters(in: .whitespacesAndNewlines)),
                "a mistyped fingerprint is not answered with the relay's, to copy: \(mistaken.output)")
        #expect(try cli.run(["grant", "youssef", "--fingerprint", fingerprint.uppercased()], home: cli.responder).code == 0)
        let grantedLine = try inboxLine(youssef)
        #expect(!grantedLine.contains("no key"), "\(grantedLine)")
        let again = try cli.run(["grant", "youssef"], home: cli.responder)
        #expect(again.code == 0 && again.output.contains("youssef holds every queue key you hold already (1); nothing was changed"),
                "a responder's grant does not replace one held: \(again.output)")
        let againJSON = try cli.json(["grant", "youssef"], home: cli.responder) as? [String: Any]
        #expect(againJSON?["name"] as? String == "youssef" && againJSON?["granted"] as? Int == 0 && againJSON?["held"] as? Int == 1, "\(String(describing: againJSON))")
        // A grant that does not open (a key holder's doing: the relay cannot tell) is named by youssef's tools, and a
        // supervisor's grant mends it.
        let spoil = """
            import sqlite3, sys
            db = sqlite3.connect(sys.argv[1], timeout=30)
            current = "(SELECT currentEpochID FROM queue WHERE name = 'national')"
            other = db.execute("SELECT sealed FROM \\"grant\\" WHERE epochID = " + current + " AND principalID = (SELECT id FROM principal WHERE name = 'demo-responder')").fetchone()[0]
            db.execute("UPDATE \\"grant\\" SET sealed = ? WHERE epochID = " + current + " AND principalID = (SELECT id FROM principal WHERE name = 'youssef')", (other,))
            db.commit()
            """
        #expect(try Daemon.run("/usr/bin/env", ["python3", "-c", spoil, daemon.directory + "/relay.sqlite"]).0 == 0)
        let spoiled = try cli.run(["keys"], home: youssef)
        #expect(spoiled.output.contains("Your grant of the current epoch") && spoiled.output.contains("does not open with your key")
                && spoiled.output.contains("a supervisor's grant replaces one") && !spoiled.output.contains("ask a colleague"), "\(spoiled.output)")
        let unsealed = try cli.run(["note", short, "-m", "never sealed"], home: youssef)
        #expect(unsealed.code == 4 && unsealed.output.contains("your grant of the queue's current key does not open"), "\(unsealed.output)")
        let mended = try cli.run(["grant", "youssef", "--fingerprint", fingerprint], home: cli.supervisor)
        #expect(mended.code == 0 && mended.output.contains("Granted"), "\(mended.output)")
        #expect(!(try cli.run(["keys"], home: youssef).output.contains("does not open")), "a supervisor's grant replaces it")
        let pins = cli.responder + "/members"
        #expect(try String(contentsOfFile: pins, encoding: .utf8).contains("youssef \(fingerprint)"))
        #expect(try FileManager.default.attributesOfItem(atPath: pins)[.posixPermissions] as? Int == 0o600)

        // 7b. A relay that swaps a confirmed colleague's key for one it holds is refused by grant and rotate alike.
        let swap = """
            import sqlite3, sys
            db = sqlite3.connect(sys.argv[1], timeout=30)
            old = db.execute("SELECT sealingKey FROM principal WHERE name = 'youssef'").fetchone()[0]
            db.execute("UPDATE principal SET sealingKey = ? WHERE name = 'youssef'", (sys.argv[2],))
            db.commit()
            print(old)
            """
        let gatewayKey = try #require(try Daemon.run("/usr/bin/env", ["python3", "-c", "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"SELECT sealingKey FROM principal WHERE role = 'gateway' LIMIT 1\").fetchone()[0])", daemon.directory + "/relay.sqlite"]).1
            .split(separator: "\n").first.map(String.init))
        let (swapCode, youssefKey) = try Daemon.run("/usr/bin/env", ["python3", "-c", swap, daemon.directory + "/relay.sqlite", gatewayKey])
        #expect(swapCode == 0, "\(youssefKey)")
        let epochsBefore = try cli.json(["keys"], home: cli.responder) as! [[String: Any]]
        let swappedGrant = try cli.run(["grant", "youssef"], home: cli.responder)
        #expect(swappedGrant.code == 6 && swappedGrant.output.contains("not the one you confirmed"), "\(swappedGrant.output)")
        let swappedPin = try cli.run(["grant", "youssef", "--fingerprint", try SealingPublicKey(text: gatewayKey).fingerprint], home: cli.responder)
        #expect(swappedPin.code == 6 && swappedPin.output.contains("never changes"), "a confirmed fingerprint is never replaced: \(swappedPin.output)")
        let swappedRotate = try cli.run(["rotate"], home: cli.responder)
        #expect(swappedRotate.code == 6 && swappedRotate.output.contains("not the one you confirmed"), "\(swappedRotate.output)")
        #expect((try cli.json(["keys"], home: cli.responder) as! [[String: Any]]).count == epochsBefore.count, "no epoch was created")
        let restored = youssefKey.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try Daemon.run("/usr/bin/env", ["python3", "-c", swap, daemon.directory + "/relay.sqlite", restored]).0 == 0)
        let after = try cli.json(["show", short], home: youssef) as! [String: Any]
        #expect((after["entries"] as! [[String: Any]]).first?["text"] as? String == narrative)
        let texts = (after["entries"] as! [[String: Any]]).compactMap { $0["text"] as? String }
        #expect(texts.contains(reply) && texts.contains("J'ai encore peur.") && texts.filter { $0 == "Scellé au kiosque." }.count == 1, "\(texts)")
        #expect(texts.contains("Rappel: appeler l'école demain.") && texts.contains("Referred to health: Needs a doctor"), "notes open in their own case: \(texts)")

        // 8. Revoked, then a rotation: new cases are sealed to an epoch Youssef never had; his CLI says so.
        let (revokeCode, revokeOutput) = try daemon.admin(["admin", "revoke", "youssef"])
        #expect(revokeCode == 0 && revokeOutput.contains("have a member of the queue national who holds its key run `amane rotate`"), "\(revokeOutput)")
        let toRevoked = try cli.run(["grant", "youssef"], home: cli.responder)
        #expect(toRevoked.code == 2 && toRevoked.output.contains("A revoked member gets no keys"), "\(toRevoked.output)")
        let oldEpoch = (try cli.json(["keys"], home: cli.responder) as! [[String: Any]]).first { $0["current"] as? Bool == true }?["epoch"] as? String
        let confirmedOnly = try cli.json(["rotate"], home: cli.responder) as! [String: Any]
        #expect(confirmedOnly["skipped"] as? [String] == ["demo-supervisor"], "the supervisor was never confirmed: \(confirmedOnly)")
        #expect(confirmedOnly["granted"] as? [String] == ["demo-responder"], "\(confirmedOnly)")
        func keyHolders() throws -> String? {
            try Daemon.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(daemon.opsPort)/metrics"]).1.split(separator: "\n")
                .first { $0.hasPrefix("amane_queue_key_holders{queue=\"national\"} ") }.map { String($0.split(separator: " ").last!) }
        }
        #expect(try keyHolders().flatMap(Double.init) == 1, "ops see that one member alone holds the key")
        let supervisorKeys = (try cli.json(["keys"], home: cli.supervisor) as! [[String: Any]]).map { $0["epoch"] as? String }
        #expect(confirmedOnly["id"] is String && !supervisorKeys.contains(confirmedOnly["id"] as? String), "left out means not granted")
        let supervisorView = try cli.run(["keys"], home: cli.supervisor)
        #expect(supervisorView.code == 0 && supervisorView.output.contains("Your own key: amane1-")
                && supervisorView.output.contains("no key for the queue's current epoch"), "the supervisor learns it: \(supervisorView.output)")
        let rotated = try cli.json(["rotate", "--include-unconfirmed"], home: cli.responder) as! [String: Any]
        #expect((rotated["unconfirmed"] as? [String: String])?.keys.sorted() == ["demo-supervisor"], "\(rotated)")
        #expect(try rotated["granted"] as? [String] == ["demo-responder", "demo-supervisor"] && keyHolders().flatMap(Double.init) == 2, "\(rotated)")
        let newEpoch = (try cli.json(["keys"], home: cli.responder) as! [[String: Any]]).first { $0["current"] as? Bool == true }?["epoch"] as? String
        #expect(oldEpoch != nil && newEpoch != nil && oldEpoch != newEpoch)
        // Sealed on the gateway's side and retried with its key: sealed afresh, yet the first answer comes back.
        let key = "story-retry-\(UUID().uuidString)"
        let fresh = try cli.json(["submit", try daemon.demoFile(2), "--seal", "--idempotency-key", key], home: cli.gateway) as! [String: Any]
        let retried = try cli.json(["submit", try daemon.demoFile(2), "--seal", "--idempotency-key", key], home: cli.gateway) as! [String: Any]
        #expect(retried["id"] as? String == fresh["id"] as? String && retried["receipt"] as? String == fresh["receipt"] as? String)
        let (reusedCode, reused) = try cli.run(["submit", try daemon.demoFile(4), "--seal", "--idempotency-key", key], home: cli.gateway)
        #expect(reusedCode == 2 && reused.contains("HTTP 409") && reused.contains("if this is the same disclosure, it is stored already") && reused.contains("Other content needs a new key"), "other content under the same key is refused: \(reused)")
        let freshFile = try daemon.get("/v1/disclosures/\(fresh["id"] as! String)", as: daemon.responder).json
        #expect((freshFile["disclosure"] as? [String: Any])?["epoch"] as? String == newEpoch)
        let (revokedCode, revokedOutput) = try cli.run(["inbox"], home: youssef)
        #expect(revokedCode == 2 && revokedOutput.contains("revoked"), "\(revokedOutput)")

        // Reopened, the case says where it was referred, not that it is referred now.
        #expect(try cli.run(["reopen", short], home: cli.supervisor).code == 0)
        let reopenedText = try cli.run(["show", short], home: cli.responder).output
        #expect(reopenedText.contains("  state new") && reopenedText.contains(", was referred to health\n"), "\(reopenedText)")
        // 9. One case's entries, or one principal's, by the short id; the trail verifies and prints its head; a cut at the end shows against that head.
        let trail = try cli.json(["audit"], home: cli.supervisor) as! [[String: Any]]
        let aboutArabic = try cli.json(["audit", "--case", short], home: cli.supervisor) as! [[String: Any]]
        #expect(!aboutArabic.isEmpty && aboutArabic.allSatisfy { $0["subject"] as? String == arabic }
                && aboutArabic.count == trail.filter { $0["subject"] as? String == arabic }.count, "\(aboutArabic)")
        #expect(Set(aboutArabic.compactMap { $0["action"] as? String }).isSuperset(of: ["intake", "claim", "fetch"]), "\(aboutArabic)")
        let byYoussef = try cli.json(["audit", "--actor", "youssef"], home: cli.supervisor) as! [[String: Any]]
        #expect(!byYoussef.isEmpty && byYoussef.count == trail.filter { $0["actor"] as? String == "youssef" }.count
                && byYoussef.allSatisfy { $0["actor"] as? String == "youssef" }, "\(byYoussef)")
        let (caseText, caseTextOutput) = try cli.run(["audit", "--case", short, "--actor", "nobody"], home: cli.supervisor)
        #expect(caseText == 0 && caseTextOutput.contains("No entry of the \(trail.count) in the audit trail that you may read is about case \(arabic) and by nobody"), "\(caseTextOutput)")
        let (filteredVerify, filteredVerifyOutput) = try cli.run(["audit", "--verify", "--case", short], home: cli.supervisor)
        #expect(filteredVerify == 1 && filteredVerifyOutput.contains("--verify checks the whole trail"), "\(filteredVerifyOutput)")
        let (verifyCode, verifyOutput) = try cli.run(["audit", "--verify"], home: cli.supervisor)
        #expect(verifyCode == 0 && verifyOutput.contains("intact"), "\(verifyOutput)")
        let head = try #require(verifyOutput.firstMatch(of: /Head: (\d+:[0-9a-f]{64})/)?.1).description
        #expect(try cli.run(["audit", "--verify", "--expect-head", head], home: cli.supervisor).code == 0)
        let (headCode, headOutput) = try daemon.admin(["admin", "audit", "verify", "--json", "--expect-head", head])
        let adminResult = try JSONSerialization.jsonObject(with: Data(headOutput.utf8)) as? [String: Any]
        #expect(headCode == 0 && adminResult?["intact"] as? Bool == true && (adminResult?["verified"] as? Int ?? 0) >= Int(head.prefix { $0 != ":" })!, "\(headOutput)")
        // Backups go outside the data directory, as backup requires.
        let beforeCut = daemon.directory + "-backups-before-cut"
        defer { try? FileManager.default.removeItem(atPath: beforeCut) }
        #expect(try daemon.admin(["backup", "--to", beforeCut]).0 == 0)
        // What responders wrote, and what the gateway sealed itself, never reached the relay in clear: not its files,
        // not its backups, not its log. What the relay sealed on intake is on disk only sealed.
        var written = [Data(try await daemon.stoppedLog().utf8)]
        for folder in [daemon.directory, beforeCut] {
            for file in FileManager.default.enumerator(atPath: folder)?.compactMap({ $0 as? String }) ?? [] {
                if let data = FileManager.default.contents(atPath: folder + "/" + file) { written.append(data) }
            }
        }
        #expect(written.count > 4)
        for secret in ["Rappel: appeler l'école demain.", "Nous sommes là pour toi.", "Needs a doctor", String(sealedNarrative.prefix(40)), String(narrative.prefix(40))] {
            #expect(!written.contains { $0.range(of: Data(secret.utf8)) != nil }, "in clear at the relay: \(secret)")
        }
        // Cut as someone careful would: the guard dropped, then put back.
        let cut = """
            import sqlite3, sys
            db = sqlite3.connect(sys.argv[1])
            guard = db.execute("SELECT sql FROM sqlite_master WHERE name = 'audit_append_only_delete'").fetchone()[0]
            db.executescript("DROP TRIGGER audit_append_only_delete; DELETE FROM audit WHERE seq > (SELECT MAX(seq) - 2 FROM audit);" + guard + ";")
            db.commit()
            """
        #expect(try Daemon.run("/usr/bin/env", ["python3", "-c", cut, daemon.directory + "/relay.sqlite"]).0 == 0)
        daemon = try await daemon.restarted()
        cli = CLI(daemon: daemon)
        #expect(try cli.run(["audit", "--verify"], home: cli.supervisor).code == 0, "a cut trail still links up")
        let caught = try cli.run(["audit", "--verify", "--expect-head", head], home: cli.supervisor)
        #expect(caught.code == 6 && caught.output.contains("earlier"), "\(caught.output)")
        let (adminCaughtCode, adminCaught) = try daemon.admin(["admin", "audit", "verify", "--json", "--expect-head", head])
        let adminBreak = try JSONSerialization.jsonObject(with: Data(adminCaught.utf8)) as? [String: Any]
        #expect(adminCaughtCode == 6 && adminBreak?["intact"] as? Bool == false && (adminBreak?["reason"] as? String ?? "").contains("ends before this earlier head"),
                "the admin sees the cut too, in JSON for scripts: \(adminCaught)")
        #expect(try daemon.admin(["admin", "audit", "verify"]).0 == 0, "without a head kept elsewhere, a careful cut passes")
        let (cutBackupCode, cutBackup) = try daemon.admin(["backup", "--to", beforeCut])
        #expect(cutBackupCode == 6 && cutBackup.contains("ends before this earlier head") && cutBackup.contains("kept apart"),
                "the next backup holds the trail to the last backup's head: \(cutBackup)")
        let copies = try FileManager.default.contentsOfDirectory(atPath: beforeCut).filter { $0 != ".backup.lock" }
        #expect(copies.count == 2 && copies.allSatisfy { $0.hasSuffix(".sqlite") }, "each copy is one file, and reading one leaves nothing beside it: \(copies)")

        // It fails where a row was edited in the database file.
        #expect(daemon.stop() == 0)
        let database = daemon.directory + "/relay.sqlite"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: database))
        let needle = Data(#""referral":"health""#.utf8)
        let range = try #require(bytes.range(of: needle))
        bytes.replaceSubrange(range, with: Data(#""referral":"police""#.utf8))
        try bytes.write(to: URL(fileURLWithPath: database))
        daemon = try await daemon.restarted()
        cli = CLI(daemon: daemon)
        let (brokenCode, brokenOutput) = try cli.run(["audit", "--verify"], home: cli.supervisor)
        #expect(brokenCode == 6 && brokenOutput.contains("broken at entry"), "\(brokenOutput)")
        let (brokenJSON, _) = try cli.json(["audit", "--verify"], home: cli.supervisor, failingWith: 6)
        #expect((brokenJSON as? [String: Any])?["intact"] as? Bool == false && ((brokenJSON as? [String: Any])?["brokenAt"] as? Int ?? 0) > 0,
                "scripts get the break as JSON, as from the admin's verify: \(brokenJSON)")
        // The admin's tools agree, and a backup of a broken trail is not kept.
        let (adminCode, adminOutput) = try daemon.admin(["admin", "audit", "verify"])
        #expect(adminCode == 6 && adminOutput.contains("BROKEN at entry"), "\(adminOutput)")
        let backups = daemon.directory + "-backups"
        defer { try? FileManager.default.removeItem(atPath: backups) }
        let (backupCode, backupOutput) = try daemon.admin(["backup", "--to", backups])
        #expect(backupCode == 6 && backupOutput.contains("BROKEN at entry") && backupOutput.contains("kept apart"), "\(backupOutput)")
        let kept = try FileManager.default.contentsOfDirectory(atPath: backups).filter { $0 != ".backup.lock" }
        #expect(kept.count == 1 && kept.allSatisfy { $0.hasPrefix("broken-") && $0.hasSuffix(".sqlite") }, "kept apart from the regular copies: \(kept)")
    }
}
}
