import Foundation
import RelayTestSupport
import Testing

/// Runs a command on a pseudo-terminal, answering prompts, as a person at a keyboard would.
enum Terminal {
    static let driver = """
        import json, os, pty, select, signal, sys, time
        answers = json.loads(sys.argv[1]); command = sys.argv[2:]
        pid, fd = pty.fork()
        if pid == 0:
            os.execvpe(command[0], command, os.environ)
        output = b""
        deadline = time.time() + 30
        timed_out = True
        while time.time() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                timed_out = False
                break
            if not chunk:
                timed_out = False
                break
            output += chunk
            if answers and answers[0][0].encode() in output:
                reply = answers[0][1]
                os.write(fd, (reply if reply == "\\x03" else reply + "\\n").encode())
                output = output.replace(answers[0][0].encode(), b"<answered>", 1)
                answers.pop(0)
        if timed_out:
            os.kill(pid, signal.SIGKILL)
            output += b"TIMED OUT"
        _, status = os.waitpid(pid, 0)
        sys.stdout.write(output.decode("utf-8", "replace"))
        sys.exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
        """

    /// Runs amane with `arguments`; an answer "\u{3}" is Ctrl-C. `afterwards` is a shell command run next on the same terminal.
    static func run(_ arguments: [String], answers: [[String]] = [], environment: [String: String], afterwards: String? = nil) throws -> (Int32, String) {
        let answersJSON = String(decoding: try JSONSerialization.data(withJSONObject: answers), as: UTF8.self)
        let command = afterwards.map { ["/bin/sh", "-c", "trap : INT; \"$0\" \"$@\"; echo \"exit $?\"; \($0)", Build.cli] } ?? [Build.cli]
        return try Daemon.run("/usr/bin/env", ["python3", "-c", driver, answersJSON] + command + arguments, environment: environment)
    }
}

extension DaemonSuiteForCLI {
    @Suite(.timeLimit(.minutes(5))) struct CLITerminalTests {
        @Test func keygenAsksTwiceWithoutEchoAndWritesAPrivateKeyFile() throws {
            let home = FileManager.default.temporaryDirectory.appendingPathComponent("amane-keygen-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: home) }
            let secret = "correct horse battery staple"
            let (code, output) = try Terminal.run(["keygen"], answers: [["New passphrase:", secret], ["Repeat it:", secret]],
                                                  environment: ["AMANE_HOME": home, "PATH": "/usr/bin:/bin"])
            #expect(code == 0, "\(output)")
            #expect(output.contains("Fingerprint") && output.contains("amanepk1"))
            #expect(!output.contains(secret), "the passphrase is not echoed")
            let mode = try FileManager.default.attributesOfItem(atPath: home + "/identity.amane")[.posixPermissions] as? Int
            #expect(mode == 0o600)

            let mismatch = FileManager.default.temporaryDirectory.appendingPathComponent("amane-keygen-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: mismatch) }
            let (badCode, badOutput) = try Terminal.run(["keygen"], answers: [["New passphrase:", secret], ["Repeat it:", secret + "!"]],
                                                        environment: ["AMANE_HOME": mismatch, "PATH": "/usr/bin:/bin"])
            #expect(badCode == 1 && badOutput.contains("differ") && !FileManager.default.fileExists(atPath: mismatch + "/identity.amane"))
        }

        @Test func ctrlCAtAPassphrasePromptLeavesTheTerminalAsItWas() throws {
            let home = FileManager.default.temporaryDirectory.appendingPathComponent("amane-keygen-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: home) }
            let (_, output) = try Terminal.run(["keygen"], answers: [["New passphrase:", "\u{3}"]],
                                               environment: ["AMANE_HOME": home, "PATH": "/usr/bin:/bin"], afterwards: "stty -a")
            #expect(output.contains("exit 130") && output.contains(" echo ") && !output.contains("-echo "), "\(output)")
            #expect(!FileManager.default.fileExists(atPath: home + "/identity.amane"))
        }

        @Test func aDraftInTheEditorStaysInMemoryAndGoesWhenCancelledOrHungUp() async throws {
            let daemon = try await Daemon()
            defer { daemon.stop(); daemon.removeData() }
            let cli = CLI(daemon: daemon)
            let id = try #require((try cli.json(["submit", try daemon.demoFile(1)], home: cli.gateway) as? [String: Any])?["id"] as? String)
            #expect(try cli.run(["claim", id], home: cli.responder).code == 0)
            let drafts = daemon.directory + "/drafts.txt"
            func editor(_ name: String, _ body: String) throws -> String {
                let path = daemon.directory + "/\(name).sh"
                try "#!/bin/sh\ntrap '' INT HUP\necho \"$1\" >> \(drafts)\nprintf 'Brouillon: rendez-vous 14h\\n' > \"$1\"\n\(body)\n"
                    .write(toFile: path, atomically: true, encoding: .utf8)
                try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
                return path
            }
            var environment = ["AMANE_HOME": cli.responder, "PATH": "/usr/bin:/bin", "HOME": daemon.directory]
            // An editor owns the terminal while it runs, as vi does: it reads what is typed (in a process group of its own it would be stopped).
            let asking = daemon.directory + "/asking.sh"
            try "#!/bin/sh\nprintf 'Votre note: ' > /dev/tty\nread line < /dev/tty\necho \"$line\" > \"$1\"\n".write(toFile: asking, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: asking)
            environment["EDITOR"] = asking
            let typed = try Terminal.run(["note", id], answers: [["Votre note:", "Appel reçu, rappeler demain"]], environment: environment)
            #expect(typed.0 == 0 && typed.1.contains("Added a sealed note"), "\(typed.1)")
            let onTheCommandLine = try Terminal.run(["note", id, "-m", "Vu au centre"], environment: environment)
            #expect(onTheCommandLine.0 == 0 && onTheCommandLine.1.contains("can be seen by other users of this machine"),
                    "a person typing case text into a command line is told where it goes: \(onTheCommandLine.1)")
            environment["EDITOR"] = try editor("cancel", "kill -INT 0; sleep 0.5")
            let cancelled = try Terminal.run(["note", id], environment: environment)
            #expect(cancelled.0 == 128 + SIGINT && cancelled.1.contains("Cancelled: nothing was sent"), "amane dies of the Ctrl-C, as a shell expects: \(cancelled.1)")
            environment["EDITOR"] = try editor("hangup", "kill -HUP 0; sleep 2")
            let hungUp = try Terminal.run(["note", id], environment: environment)
            #expect(hungUp.0 == 129, "\(hungUp.1)")
            environment["EDITOR"] = try editor("refused", "")
            let refused = try Terminal.run(["note", "ffffffff"], environment: environment)
            #expect(refused.0 == 1 && refused.1.contains("was not sent") && refused.1.contains("Brouillon: rendez-vous 14h"),
                    "what was written is shown on the terminal to copy: \(refused.1)")

            // A draft folder that an amane killed outright left a day ago goes at the next edit; one of today stays (it may be in use).
            let root = (try #require(try String(contentsOfFile: drafts, encoding: .utf8).split(separator: "\n").first).description as NSString)
                .deletingLastPathComponent.replacingOccurrences(of: "/amane-draft-[^/]*$", with: "", options: .regularExpression)
            // Abandoned; in use for days (its text written today); new; and a folder of another program with a like name.
            let abandoned = root + "/amane-draft-\(UUID().uuidString)", longEdit = root + "/amane-draft-\(UUID().uuidString)"
            let recent = root + "/amane-draft-\(UUID().uuidString)", other = root + "/amane-draft-notes"
            for folder in [abandoned, longEdit, recent, other] {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
                try "Brouillon".write(toFile: folder + "/text.txt", atomically: false, encoding: .utf8)
            }
            defer { for folder in [longEdit, recent, other] { try? FileManager.default.removeItem(atPath: folder) } }
            let twoDaysAgo = Date().addingTimeInterval(-2 * 24 * 3600)
            for path in [abandoned, abandoned + "/text.txt", longEdit, other, other + "/text.txt"] {
                try FileManager.default.setAttributes([.modificationDate: twoDaysAgo], ofItemAtPath: path)
            }
            environment["EDITOR"] = asking
            #expect(try Terminal.run(["note", id], answers: [["Votre note:", "Rappel fait"]], environment: environment).0 == 0)
            #expect(!FileManager.default.fileExists(atPath: abandoned))
            #expect([longEdit, recent, other].allSatisfy { FileManager.default.fileExists(atPath: $0) }, "only abandoned drafts of amane go")

            let paths = try String(contentsOfFile: drafts, encoding: .utf8).split(separator: "\n").map(String.init)
            #expect(paths.count == 3)
            for path in paths {
                #expect(FileManager.default.fileExists(atPath: "/dev/shm") ? path.hasPrefix("/dev/shm/amane-draft-") : true, "drafts are kept in memory: \(path)")
                #expect(!FileManager.default.fileExists(atPath: (path as NSString).deletingLastPathComponent), "no draft is left behind: \(path)")
            }
            let entries = (try cli.json(["show", id], home: cli.responder) as! [String: Any])["entries"] as! [[String: Any]]
            #expect(!entries.contains { ($0["text"] as? String)?.contains("Brouillon") == true }, "nothing was sent")
            #expect(entries.contains { $0["text"] as? String == "Appel reçu, rappeler demain" })

            // The relay goes down while the reply is written (its process killed from the editor), and comes back on
            // the same port a moment later: amane sends the reply again, and it is stored once.
            // "Down" once its port refuses (curl's 7): while the process dies a connection may still be taken, then dropped unanswered.
            let untilRefused = "while curl -s -m 1 -o /dev/null http://127.0.0.1:\(daemon.port); [ $? -ne 7 ]; do sleep 0.05; done"
            let revived = daemon.directory + "/revived.pid"
            defer { if let pid = try? String(contentsOfFile: revived, encoding: .utf8), let pid = Int32(pid.trimmingCharacters(in: .whitespacesAndNewlines)) { kill(pid, SIGKILL) } }
            // Started with no descriptor of this one's: Foundation hears that a process ended only once all who inherited its socket have.
            environment["EDITOR"] = try editor("relay-back", """
                kill -9 \(daemon.process.processIdentifier)
                \(untilRefused)
                AMANE_SEEDS_DIRECTORY=\(Build.seeds) python3 -c 'import subprocess, sys; print(subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, \
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True).pid)' \(Build.daemon) serve --dev --data-dir \(daemon.directory) \
                    --listen 127.0.0.1:\(daemon.port) --ops-listen 127.0.0.1:0 > \(revived)
                """)
            let back = try Terminal.run(["reply", id], environment: environment)
            #expect(back.0 == 0 && back.1.contains("sending it again in 1 s") && back.1.contains("Sent a sealed reply"), "\(back.1)")
            let replies = ((try cli.json(["show", id], home: cli.responder) as? [String: Any])?["entries"] as? [[String: Any]] ?? [])
                .filter { $0["kind"] as? String == "reply" && $0["text"] as? String == "Brouillon: rendez-vous 14h" }
            #expect(replies.count == 1, "\(replies)")

            // Down for good: after trying again, amane says the reply certainly did not arrive.
            let pid = try #require(Int32(try String(contentsOfFile: revived, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
            environment["EDITOR"] = try editor("relay-down", """
                kill -9 \(pid)
                \(untilRefused)
                """)
            let down = try Terminal.run(["reply", id], environment: environment)
            #expect(down.0 == 3 && down.1.contains("What you wrote was not sent") && !down.1.contains("may have reached")
                    && down.1.contains("sending it again in 4 s") && down.1.contains("Brouillon: rendez-vous 14h"), "\(down.1)")
        }

        @Test func theInboxIsColouredOnATerminalUnlessNoColorIsSet() async throws {
            let daemon = try await Daemon()
            defer { daemon.stop(); daemon.removeData() }
            let cli = CLI(daemon: daemon)
            _ = try cli.json(["submit", try daemon.demoFile(1)], home: cli.gateway)
            let environment = ["AMANE_HOME": cli.responder, "PATH": "/usr/bin:/bin"]
            let coloured = try Terminal.run(["inbox"], environment: environment)
            #expect(coloured.0 == 0 && coloured.1.contains("\u{1B}[1;31m"), "immediate cases in red on a terminal")
            var plain = environment
            plain["NO_COLOR"] = "1"
            #expect(!(try Terminal.run(["inbox"], environment: plain)).1.contains("\u{1B}["))
        }
    }
}

/// CLI tests that start a daemon run one at a time, and `make test` runs them after the relay's `DaemonSuite`.
@Suite(.serialized, .timeLimit(.minutes(5))) enum DaemonSuiteForCLI {}

extension DaemonSuiteForCLI {
    @Suite struct CLIWorkflowTests {
        @Test func supervisorsAndFiltersAndEditorsWork() async throws {
            let daemon = try await Daemon()
            defer { daemon.stop(); daemon.removeData() }
            let cli = CLI(daemon: daemon)
            for index in [1, 7, 3] { _ = try cli.json(["submit", try daemon.demoFile(index)], home: cli.gateway) }
            let cases = (try cli.json(["inbox"], home: cli.responder) as! [String: Any])["cases"] as! [[String: Any]]
            let ids = cases.map { $0["id"] as! String }

            // A short prefix shared by all three lists the candidates.
            let ambiguous = try cli.run(["show", String(ids[0].prefix(4))], home: cli.responder)
            #expect(ambiguous.code == 1 && ids.allSatisfy { ambiguous.output.contains(String($0.suffix(8))) }, "\(ambiguous.output)")

            // Claim, then filter.
            let claimed = try cli.run(["claim", ids[1]], home: cli.responder)
            #expect(claimed.code == 0 && claimed.output.contains("claimed until 20") && claimed.output.contains("unless demo-responder opens the case"), "\(claimed.output)")
            let mine = (try cli.json(["inbox", "--mine"], home: cli.responder) as! [String: Any])["cases"] as! [[String: Any]]
            #expect(mine.map { $0["id"] as! String } == [ids[1]])
            let fresh = (try cli.json(["inbox", "--state", "new", "--urgency", "immediate"], home: cli.responder) as! [String: Any])["cases"] as! [[String: Any]]
            #expect(fresh.map { $0["id"] as! String } == [ids[0]])
            let paged = (try cli.json(["inbox", "--all", "--limit", "1"], home: cli.responder) as! [String: Any])["cases"] as! [[String: Any]]
            #expect(paged.count == 3)
            let firstPage = try cli.json(["inbox", "--limit", "1"], home: cli.responder) as! [String: Any]
            let next = try #require(firstPage["next"] as? String, "a page that is not the last says where the next starts")
            let secondPage = try cli.json(["inbox", "--limit", "1", "--after", next], home: cli.responder) as! [String: Any]
            #expect((secondPage["cases"] as! [[String: Any]]).map { $0["id"] as! String } == [ids[1]])
            #expect(try cli.run(["inbox", "--limit", "1"], home: cli.responder).output.contains("More cases follow"))

            // A note written in $EDITOR.
            let editor = daemon.directory + "/editor.sh"
            try "#!/bin/sh\nbasename \"$1\" > \"\(daemon.directory)/draft-name\"\nprintf 'Écrit dans l’éditeur / كتب في المحرر\\n' > \"$1\"\n"
                .write(toFile: editor, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: editor)
            let edited = try cli.run(["note", ids[1]], home: cli.responder, extraEnvironment: ["EDITOR": editor])
            #expect(edited.code == 0 && edited.output.contains("Added a sealed note to case \(ids[1].suffix(8))"), "\(edited.output)")
            let draftName = try String(contentsOfFile: daemon.directory + "/draft-name", encoding: .utf8)
            #expect(draftName == "note-on-case-\(ids[1]).txt\n", "the editor shows what the draft is for: \(draftName)")
            let noteFile = daemon.directory + "/note.txt"
            try "Note from a file.".write(toFile: noteFile, atomically: true, encoding: .utf8)
            #expect(try cli.run(["note", ids[1], "--file", noteFile], home: cli.responder).code == 0)
            #expect(try cli.run(["note", ids[1], "--file", "-"], home: cli.responder, input: "Note from standard input.\n").code == 0)
            let texts = ((try cli.json(["show", ids[1]], home: cli.responder) as! [String: Any])["entries"] as! [[String: Any]]).compactMap { $0["text"] as? String }
            #expect(texts.contains("Écrit dans l’éditeur / كتب في المحرر") && texts.contains("Note from a file.") && texts.contains("Note from standard input."))
            // Control characters in what people wrote reach the terminal inert: no erased line, no clipboard write, no forged line.
            let hostile = daemon.directory + "/hostile.txt"
            try "Line one\u{1B}[2K\u{1B}[1A\u{1B}]52;c;cHduZWQ=\u{07}\rFAKE: a forged line\u{9B}2J".write(toFile: hostile, atomically: true, encoding: .utf8)
            #expect(try cli.run(["note", ids[1], "--file", hostile], home: cli.responder).code == 0)
            let shown = try cli.run(["show", ids[1]], home: cli.responder).output
            #expect(!shown.unicodeScalars.contains { [0x1B, 0x07, 0x0D, 0x9B].contains($0.value) }, "\(shown.debugDescription)")
            #expect(shown.contains("Line one^[[2K^[[1A^[]52;c;cHduZWQ=^G^MFAKE: a forged line\\u{9b}2J"), "\(shown)")

            // Close, then the supervisor's tools.
            #expect(try cli.run(["close", ids[1], "--outcome", "support_provided", "--reason", "Family informed."], home: cli.responder).code == 0)
            // The reason is kept, sealed, as a note of the case.
            let closedCase = try cli.json(["show", ids[1]], home: cli.responder) as! [String: Any]
            #expect((closedCase["entries"] as! [[String: Any]]).contains { $0["kind"] as? String == "note" && $0["text"] as? String == "Closed (support_provided): Family informed." },
                    "\(closedCase)")
            // Closed cases leave the default listing, and come back when asked for.
            let open = (try cli.json(["inbox"], home: cli.responder) as! [String: Any])["cases"] as! [[String: Any]]
            #expect(open.map { $0["id"] as! String } == [ids[0], ids[2]])
            let closed = (try cli.json(["inbox", "--state", "closed"], home: cli.responder) as! [String: Any])["cases"] as! [[String: Any]]
            #expect(closed.map { $0["id"] as! String } == [ids[1]])
            let notHers = try cli.run(["reopen", ids[1]], home: cli.responder)
            #expect(notHers.code == 2 && notHers.output.contains("a responder may not reopen a case") && !notHers.output.contains("holds it")
                    && notHers.output.contains("That is a supervisor's to do"), "only a supervisor reopens, and the hint says so: \(notHers.output)")
            #expect(try cli.run(["reopen", ids[1]], home: cli.supervisor).code == 0)
            let assigned = try cli.json(["assign", ids[1], "demo-responder"], home: cli.supervisor) as! [String: Any]
            #expect(assigned["assignee"] as? String == "demo-responder" && assigned["state"] as? String == "claimed")
            // Assigned to someone who cannot open it yet, the supervisor hears so; not otherwise.
            // A case held by someone who cannot open it is a case no one works on: neither claimed nor assigned so.
            let nadia = try cli.newResponder("nadia")
            let keylessClaim = try cli.run(["claim", ids[2]], home: nadia)
            #expect(keylessClaim.code == 2 && keylessClaim.output.contains("you have no key for the epoch this case is sealed to")
                    && keylessClaim.output.contains("amane grant nadia") && keylessClaim.output.contains("amane keys")
                    && !keylessClaim.output.contains("amane release"), "\(keylessClaim.output)")
            let keyless = try cli.run(["assign", ids[2], "nadia"], home: cli.supervisor)
            #expect(keyless.code == 2 && keyless.output.contains("nadia has no key for the epoch this case is sealed to")
                    && keyless.output.contains("amane grant nadia") && keyless.output.contains("Assign it to a colleague who holds that key")
                    && !keyless.output.contains("the keys you hold"), "the hint speaks of nadia's key, not the supervisor's: \(keyless.output)")
            #expect(try cli.run(["assign", ids[0], "demo-responder"], home: cli.supervisor).code == 0)
            let takenOver = try cli.run(["assign", ids[0], "demo-supervisor"], home: cli.supervisor)
            #expect(takenOver.code == 0 && takenOver.output.contains("demo-responder held it until now: tell them it is no longer theirs"), "\(takenOver.output)")
            let trail = try cli.json(["audit", "--case", ids[0]], home: cli.supervisor) as! [[String: Any]]
            #expect((trail.last?["detail"] as? String)?.contains("\"previousAssignee\":\"demo-responder\"") == true, "\(trail.last ?? [:])")
            let held = try cli.run(["hold", ids[0], "--on"], home: cli.supervisor)
            #expect(held.output.hasPrefix("Put a legal hold on case \(ids[0].suffix(8))"), "\(held.output)")
            #expect(try cli.run(["inbox"], home: cli.supervisor).output.contains("legal hold"))
            #expect((try cli.json(["hold", ids[1], "--on"], home: cli.supervisor) as! [String: Any])["onHold"] as? Bool == true)
            #expect((try cli.json(["hold", ids[1], "--off"], home: cli.supervisor) as! [String: Any])["onHold"] as? Bool == false)
            #expect(try cli.run(["hold", ids[1]], home: cli.supervisor).code == 1, "--on or --off is required")

            // Statistics as CSV.
            let (csvCode, csv) = try cli.run(["stats", "--by", "urgency", "--csv"], home: cli.responder)
            #expect(csvCode == 0 && csv.hasPrefix("urgency,count\n") && csv.contains("immediate,1") && csv.contains("high,1"), "\(csv)")
            let (tableCode, table) = try cli.run(["stats", "--by", "outcome"], home: cli.responder)
            #expect(tableCode == 0 && table.hasPrefix("Cases of the queue national\nOUTCOME") && table.contains("CASES") && table.contains("(no outcome)"), "open cases have none: \(table)")
        }
    }
}
