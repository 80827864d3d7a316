import Foundation
import RelayAPI
import RelayCore
import RelayFormat
import RelayStore
import RelayTestSupport
import Testing

extension DaemonSuite {
@Suite struct IntakeAndRelayTests {
    @Test func aGatewayPostsWithCurlAndTheResponderOpensTheSealedCase() async throws {
        let daemon = try await Daemon()
        defer { daemon.stop(); daemon.removeData() }
        let demo = try Demo.disclosure(6)
        let key = Demo.key()
        let first = try daemon.post("/v1/disclosures", as: daemon.gateway, json: demo, headers: ["Idempotency-Key": key])
        #expect(first.status == 201)
        let id = try #require(first.json["id"] as? String)
        let receipt = try #require(first.json["receipt"] as? String)
        #expect(try Receipt(parsing: receipt).digits.count == 16)
        let receivedAt = try #require(first.json["receivedAt"] as? String)
        #expect(receivedAt.wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:00Z/) != nil, "RFC 3339 in UTC, to the minute, as the API document says: \(receivedAt)")

        let retry = try daemon.post("/v1/disclosures", as: daemon.gateway, json: demo, headers: ["Idempotency-Key": key])
        #expect(retry.status == 201 && retry.json["id"] as? String == id && retry.json["receipt"] as? String == receipt,
                "\(retry.status) \(retry.text) curl exit \(retry.curlExit)")
        let reordered = Demo.key()
        let bodyA = #"{"urgency":"low","category":"other","language":"fr","channel":"kiosk","content":{"narrative":"ordre"}}"#
        let bodyB = #"{"content":{"narrative":"ordre"},"channel":"kiosk","language":"fr","category":"other","urgency":"low"}"#
        let a = try daemon.request("POST", "/v1/disclosures", as: daemon.gateway, body: Data(bodyA.utf8), headers: ["Idempotency-Key": reordered])
        let b = try daemon.request("POST", "/v1/disclosures", as: daemon.gateway, body: Data(bodyB.utf8), headers: ["Idempotency-Key": reordered])
        #expect(a.status == 201 && b.status == 201 && a.json["id"] as? String == b.json["id"] as? String, "the same disclosure with its keys reordered")

        // The same request sent eight times at once, as a gateway's impatient retries might: one case, one answer.
        let together = Demo.key()
        let answers = try daemon.postAtOnce(8, "/v1/disclosures", as: daemon.gateway, json: Demo.body(narrative: "sent at once"),
                                            headers: ["Idempotency-Key": together])
        let answered = Set(answers.map { "\($0.status) \($0.body)" })
        #expect(answers.count == 8 && answered.count == 1 && answers[0].status == 201, "\(answers)")

        var changed = demo
        changed["urgency"] = "low"
        let conflict = try daemon.post("/v1/disclosures", as: daemon.gateway, json: changed, headers: ["Idempotency-Key": key])
        let unknown = try daemon.get("/v1/nothing-here", as: daemon.gateway)
        for answer in [first, conflict, unknown] {
            #expect(answer.headers.lowercased().contains(/request-id: [0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/), "every answer names its request: \(answer.status) \(answer.headers)")
        }
        #expect(conflict.status == 409 && conflict.headers.lowercased().contains("content-type: application/problem+json")
                && conflict.json["code"] as? String == "idempotency_key_reused", "\(conflict.text)")

        let metrics = try Daemon.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(daemon.opsPort)/metrics"]).1
        #expect(metrics.contains(#"amane_http_requests_total{method="POST",route="/v1/disclosures",status="201"} 12"#), "\(metrics)")
        #expect(metrics.contains(#"amane_http_requests_total{method="POST",route="/v1/disclosures",status="409"} 1"#))
        #expect(metrics.contains("amane_intake_duration_seconds_count") && metrics.contains("amane_group_commit_batch_writes_count"))
        #expect(metrics.contains(#"amane_queue_depth_cases{queue="national",urgency="immediate"} 1"#) && metrics.contains("amane_sla_breaches_cases"))
        #expect(metrics.contains("amane_sealing_key_missing_queues 0"))
        #expect(!metrics.contains("demo-gateway") && !metrics.contains(id), "metrics carry no identities or ids")
        #expect(try Daemon.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(daemon.opsPort)/healthz"]).1 == "ok\n")
        #expect(try Daemon.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(daemon.opsPort)/readyz"]).1 == "ready\n")

        let queue = try daemon.get("/v1/queue", as: daemon.responder)
        let cases = try #require(queue.json["cases"] as? [[String: Any]])
        let togetherID = try JSONSerialization.jsonObject(with: Data(answers[0].body.utf8)) as? [String: Any]
        #expect(Set(cases.map { $0["id"] as? String }) == [id, a.json["id"] as? String, togetherID?["id"] as? String], "stored once each")
        let file = try daemon.get("/v1/disclosures/\(id)", as: daemon.responder)
        #expect(file.status == 200)
        let sealed = try #require((file.json["disclosure"] as? [String: Any])?["sealed"] as? String)
        #expect(cases.first?["id"] as? String == id, "immediate before low")
        let plaintext = try Envelope.open(Data(base64Encoded: sealed)!, with: try daemon.epochKey(), kind: .disclosure, objectID: UUID(uuidString: id)!)
        let content = try JSONSerialization.jsonObject(with: Data(plaintext)) as! [String: Any]
        #expect(content["narrative"] as? String == (demo["content"] as! [String: Any])["narrative"] as? String)
    }

    @Test func aGatewayCanSealOnItsSideSoTheRelayNeverSeesPlaintext() async throws {
        let daemon = try await Daemon()
        defer { daemon.stop(); daemon.removeData() }
        let info = try daemon.get("/v1/queues/national/sealing-key", as: daemon.gateway)
        #expect(info.status == 200)
        let key = try SealingPublicKey(text: try #require(info.json["publicKey"] as? String))
        let id = UUID.v7()
        let canary = "sealed-by-gateway-\(UUID().uuidString)"
        let envelope = try Envelope.seal(try JSONSerialization.data(withJSONObject: ["narrative": canary]), to: key, kind: .disclosure, objectID: id)
        var body = Demo.body(narrative: "")
        body["content"] = nil
        body["sealed"] = Data(envelope).base64EncodedString()
        let posted = try daemon.post("/v1/disclosures", as: daemon.gateway, json: body, headers: ["Idempotency-Key": Demo.key()])
        #expect(posted.status == 201 && posted.json["id"] as? String == id.uuidString.lowercased())
        // The same envelope under a new key is not a retry: the id is taken, and the answer says what to do.
        let again = try daemon.post("/v1/disclosures", as: daemon.gateway, json: body, headers: ["Idempotency-Key": Demo.key()])
        #expect(again.status == 409 && again.json["code"] as? String == "duplicate" && (again.json["detail"] as? String ?? "").contains("seal a new one"),
                "\(again.text)")
        let file = try daemon.get("/v1/disclosures/\(id.uuidString.lowercased())", as: daemon.responder)
        let sealed = try #require((file.json["disclosure"] as? [String: Any])?["sealed"] as? String)
        #expect(Data(base64Encoded: sealed) == Data(envelope), "the relay stores a gateway-sealed envelope untouched")
        var tagged = Demo.body(narrative: "plain")
        tagged["contentTag"] = String(repeating: "A", count: 43)
        let refused = try daemon.post("/v1/disclosures", as: daemon.gateway, json: tagged, headers: ["Idempotency-Key": Demo.key()])
        #expect(refused.status == 400 && refused.text.contains("contentTag"), "a content tag stands only for a sealed envelope: \(refused.text)")
        #expect(!(try await daemon.stoppedLog()).contains(canary))
    }

    /// A case past its SLA pages whoever sla.notifyCommand reaches, with the urgency, the count and the queue only: one waiting
    /// unclaimed, and one referred whose holder has left the reporter's follow-up unopened.
    @Test func aCasePastItsSLARunsTheNotifyCommand() async throws {
        let pager = FileManager.default.temporaryDirectory.appendingPathComponent("pager-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: pager, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: pager) }
        try "#!/bin/sh\necho pager-says-hello\necho pager-complains >&2\necho \"$@\" >> \(pager)/paged\nenv > \(pager)/environment\n".write(toFile: pager + "/page", atomically: true, encoding: .utf8)
        #expect(chmod(pager + "/page", 0o755) == 0)
        var daemon = try await Daemon(environment: ["AMANE_SLA_NOTIFY_COMMAND": pager + "/page", "RELAY_ONLY_SECRET": "not-for-the-pager"])
        defer { daemon.stop(); daemon.removeData() }
        let posted = try daemon.post("/v1/disclosures", as: daemon.gateway, json: Demo.body(narrative: "waiting too long"), headers: ["Idempotency-Key": Demo.key()])
        #expect(posted.status == 201)
        let referred = try daemon.post("/v1/disclosures", as: daemon.gateway, json: Demo.body(narrative: "referred"), headers: ["Idempotency-Key": Demo.key()])
        let referredID = try #require(referred.json["id"] as? String)
        #expect(try daemon.post("/v1/disclosures/\(referredID)/claim", as: daemon.responder, json: [:]).status == 200)
        let refer = try daemon.post("/v1/disclosures/\(referredID)/transition", as: daemon.responder, json: ["action": "refer", "referral": "police"])
        #expect(refer.status == 200, "\(refer.text)")
        let followup = try daemon.post("/v1/followups", as: daemon.gateway, json: ["receipt": try #require(referred.json["receipt"] as? String),
                                                                                    "content": ["narrative": "he came back"]],
                                       headers: ["Idempotency-Key": Demo.key()])
        #expect(followup.status == 201, "\(followup.text)")
        let flagged = try #require((daemon.get("/v1/queue", as: daemon.responder).json["cases"] as? [[String: Any]])?.first { $0["id"] as? String == referredID })
        #expect(flagged["state"] as? String == "referred" && flagged["updated"] as? Bool == true
                && abs((Timestamp.parse(flagged["slaDueAt"] as? String ?? "")?.timeIntervalSinceNow ?? 0) - 120 * 60) < 120,
                "due 120 minutes (high) after the follow-up: \(flagged)")
        #expect(!FileManager.default.fileExists(atPath: pager + "/paged"), "nothing is past its SLA yet")
        // Three hours old (high: 120 minutes); the monitor's first look, at start, finds them.
        daemon.stop()
        let age = """
            import sqlite3, sys; db = sqlite3.connect(sys.argv[1], timeout=30)
            db.execute('UPDATE disclosure SET receivedAt = receivedAt - 10800, unopenedSince = unopenedSince - 10800'); db.commit()
            """
        #expect(try Daemon.run("/usr/bin/env", ["python3", "-c", age, daemon.directory + "/relay.sqlite"]).0 == 0)
        daemon = try await daemon.restarted()
        #expect(try await eventually { (try? String(contentsOfFile: pager + "/paged", encoding: .utf8)) == "high 2 national\n" },
                "\(String(describing: try? String(contentsOfFile: pager + "/paged", encoding: .utf8)))")
        #expect(try await eventually(within: 10) { daemon.stderr.value.contains("relay.count=2 relay.queue=national relay.unopened_followups=1") },
                "\(daemon.stderr.value)")
        let listed = try daemon.get("/v1/queue?overdue=true", as: daemon.supervisor)
        #expect(Set((listed.json["cases"] as? [[String: Any]])?.compactMap { $0["id"] as? String } ?? [])
                == [try #require(posted.json["id"] as? String), referredID], "what the page is about: \(listed.text)")
        #expect(try daemon.get("/v1/queue?overdue=yes", as: daemon.supervisor).status == 400)
        for path in ["/v1/queue?overdue=true&overdue=false", "/v1/stats?by=month&by=region", "/v1/audit?limit=5&limit=6"] {
            let twice = try daemon.get(path, as: daemon.supervisor)
            #expect(twice.status == 400 && twice.text.contains("is given more than once"), "\(path): \(twice.text)")
        }
        #expect(try daemon.get("/v1/queue?state=new&state=referred&overdue=true", as: daemon.supervisor).json["cases"] as? [[String: Any]] != nil,
                "state may be repeated")
        let environment = try String(contentsOfFile: pager + "/environment", encoding: .utf8)
        #expect(!environment.contains("not-for-the-pager") && !environment.contains("AMANE_"), "the pager gets no part of the relay's environment: \(environment)")
        #expect(!daemon.stdout.value.contains("pager-says") && !daemon.stderr.value.contains("pager-complains"), "its output is not mixed into the relay's log")
    }

    /// A case its reporter reopens shows the deadline of the reopening, not of its first arrival ten days before.
    @Test func aReopenedCaseShowsTheDeadlineOfItsReopening() async throws {
        let daemon = try await Daemon()
        defer { daemon.stop(); daemon.removeData() }
        let posted = try daemon.post("/v1/disclosures", as: daemon.gateway, json: Demo.body(narrative: "first contact"), headers: ["Idempotency-Key": Demo.key()])
        let id = try #require(posted.json["id"] as? String)
        let receipt = try #require(posted.json["receipt"] as? String)
        #expect(try daemon.post("/v1/disclosures/\(id)/claim", as: daemon.responder, json: [:]).status == 200)
        let closed = try daemon.post("/v1/disclosures/\(id)/transition", as: daemon.responder, json: ["action": "close", "outcome": "no_further_action"])
        #expect(closed.status == 200, "\(closed.text)")
        let age = "import sqlite3, sys; db = sqlite3.connect(sys.argv[1], timeout=30); db.execute('UPDATE disclosure SET receivedAt = receivedAt - 864000'); db.commit()"
        #expect(try Daemon.run("/usr/bin/env", ["python3", "-c", age, daemon.directory + "/relay.sqlite"]).0 == 0)
        let followup = try daemon.post("/v1/followups", as: daemon.gateway, json: ["receipt": receipt, "content": ["narrative": "I am back"]],
                                       headers: ["Idempotency-Key": Demo.key()])
        #expect(followup.status == 201, "\(followup.text)")
        let reopened = try #require((daemon.get("/v1/queue", as: daemon.responder).json["cases"] as? [[String: Any]])?.first { $0["id"] as? String == id })
        let received = try #require(Timestamp.parse(reopened["receivedAt"] as? String ?? ""))
        let due = try #require(Timestamp.parse(reopened["slaDueAt"] as? String ?? ""))
        #expect(reopened["state"] as? String == "new" && due.timeIntervalSince(received) > 9 * 86_400
                && abs(due.timeIntervalSinceNow - 120 * 60) < 120, "due 120 minutes (high) after the reopening: \(reopened)")
    }

    @Test func followupsAndRepliesTravelBothWaysAndStayWithTheirGateway() async throws {
        let daemon = try await Daemon(environment: ["AMANE_LIMITS_RECEIPT_MISSES_PER_HOUR": "3", "AMANE_LIMITS_RECEIPT_LOOKUPS_PER_MINUTE": "100"])
        defer { daemon.stop(); daemon.removeData() }
        let posted = try daemon.post("/v1/disclosures", as: daemon.gateway, json: Demo.body(narrative: "first contact"), headers: ["Idempotency-Key": Demo.key()])
        let id = try #require(posted.json["id"] as? String)
        let receipt = try #require(posted.json["receipt"] as? String)
        // An unclaimed case says when it passes its SLA (seeds/policy.yaml: high, 120 minutes); a claimed one does not.
        let waiting = try #require((daemon.get("/v1/queue", as: daemon.responder).json["cases"] as? [[String: Any]])?.first { $0["id"] as? String == id })
        let received = try #require(Timestamp.parse(waiting["receivedAt"] as? String ?? ""))
        #expect(Timestamp.parse(waiting["slaDueAt"] as? String ?? "") == received.addingTimeInterval(120 * 60), "\(waiting)")
        let claimed = try daemon.post("/v1/disclosures/\(id)/claim", as: daemon.responder, json: [:])
        #expect(claimed.status == 200 && claimed.json["slaDueAt"] == nil, "\(claimed.text)")

        let file = try daemon.get("/v1/disclosures/\(id)", as: daemon.responder)
        let gatewayKey = try SealingPublicKey(text: try #require(file.json["gatewayKey"] as? String))
        let epoch = try daemon.epochKey()
        let replyID = UUID.v7()
        let caseID = try #require(UUID(uuidString: id))
        let text = "Nous pouvons vous aider. / يمكننا مساعدتك."
        let reply: [String: Any] = [
            "id": replyID.uuidString.lowercased(),
            "sealed": Data(try Envelope.seal(Array(text.utf8), to: epoch.publicKey, kind: .reply, objectID: replyID, caseID: caseID)).base64EncodedString(),
            "gatewaySealed": Data(try Envelope.seal(Array(text.utf8), to: gatewayKey, kind: .reply, objectID: replyID, caseID: caseID)).base64EncodedString(),
        ]
        #expect(try daemon.post("/v1/disclosures/\(id)/replies", as: daemon.responder, json: reply).status == 201)

        let fetched = try daemon.post("/v1/replies/fetch", as: daemon.gateway, json: ["receipt": receipt])
        #expect(fetched.status == 200)
        #expect(fetched.json["caseId"] as? String == id, "the gateway learns the case its replies and follow-ups are bound to")
        let replies = try #require(fetched.json["replies"] as? [[String: Any]])
        let opened = try Envelope.open(Data(base64Encoded: replies[0]["sealed"] as! String)!, with: try daemon.gatewayKey(), kind: .reply,
                                       objectID: replyID, caseID: caseID)
        #expect(String(decoding: opened, as: UTF8.self) == text)

        // A follow-up the relay seals, and one the gateway seals itself, are both bound to the case.
        // Each is retried with its key, as a gateway does after a timeout: the first answer comes back and nothing doubles.
        let key = ["Idempotency-Key": Demo.key()]
        let followup = try daemon.post("/v1/followups", as: daemon.gateway, json: ["receipt": receipt, "content": ["narrative": "one more thing"]], headers: key)
        #expect(followup.status == 201)
        let respaced = receipt.filter(\.isNumber).enumerated().map { $0.offset == 8 ? "-\($0.element)" : String($0.element) }.joined()
        let retried = try daemon.post("/v1/followups", as: daemon.gateway, json: ["content": ["narrative": "one more thing"], "receipt": respaced], headers: key)
        #expect(retried.status == 201 && retried.json["id"] as? String == followup.json["id"] as? String
                && retried.json["receivedAt"] as? String == followup.json["receivedAt"] as? String, "\(retried.text)")
        #expect(try daemon.post("/v1/followups", as: daemon.gateway, json: ["receipt": receipt, "content": ["narrative": "another thing"]], headers: key)
                    .json["code"] as? String == "idempotency_key_reused")
        #expect(try daemon.post("/v1/followups", as: daemon.gateway, json: ["receipt": receipt, "content": ["narrative": "no key"]]).status == 400)
        let sealingKey = try SealingPublicKey(text: try #require(daemon.get("/v1/queues/national/sealing-key", as: daemon.gateway).json["publicKey"] as? String))
        let ownID = UUID.v7()
        let ownKey = ["Idempotency-Key": Demo.key()]
        for _ in 0..<2 {
            // The retry is sealed afresh (other bytes), as a gateway that kept only the text and the id would.
            let own = try Envelope.seal(Array(#"{"narrative":"sealed at the gateway"}"#.utf8), to: sealingKey, kind: .followup, objectID: ownID, caseID: caseID)
            let sealed = try daemon.post("/v1/followups", as: daemon.gateway, json: [
                "receipt": receipt, "id": ownID.uuidString.lowercased(), "sealed": Data(own).base64EncodedString()], headers: ownKey)
            #expect(sealed.status == 201 && sealed.json["id"] as? String == ownID.uuidString.lowercased(), "\(sealed.text)")
        }
        // Without its id, a sealed follow-up under a used key would pass for that key's retry and be dropped unseen.
        let another = try Envelope.seal(Array(#"{"narrative":"something else"}"#.utf8), to: sealingKey, kind: .followup, objectID: UUID.v7(), caseID: caseID)
        let idless = try daemon.post("/v1/followups", as: daemon.gateway, json: ["receipt": receipt, "sealed": Data(another).base64EncodedString()], headers: ownKey)
        #expect(idless.status == 400 && idless.json["detail"] as? String == "field 'id' is required with 'sealed': the envelope's object id", "\(idless.text)")
        let updated = try daemon.get("/v1/queue", as: daemon.responder).json["cases"] as! [[String: Any]]
        #expect(updated.first?["updated"] as? Bool == true)
        let items = try #require(daemon.get("/v1/disclosures/\(id)", as: daemon.responder).json["items"] as? [[String: Any]])
        let followups = items.filter { $0["kind"] as? String == "followup" }
        #expect(followups.count == 2)
        for item in followups {
            let envelope = try #require(Data(base64Encoded: item["sealed"] as? String ?? ""))
            let objectID = try #require(UUID(uuidString: item["id"] as? String ?? ""))
            #expect(try Envelope.open(envelope, with: epoch, kind: .followup, objectID: objectID, caseID: caseID).count > 10)
            #expect(throws: FormatError(.openFailed), "a follow-up moved to another case does not open") {
                try Envelope.open(envelope, with: epoch, kind: .followup, objectID: objectID, caseID: UUID.v7())
            }
        }

        // Another gateway, enrolled by the admin, cannot use this receipt. Each try counts against its limit of three
        // unknown receipts an hour; a misheard one (its check digit) does not, since guessing gains nothing from it.
        let other = try otherGateway(daemon)
        let misheard = String(receipt.dropLast()) + String((Int(String(receipt.last!))! + 1) % 10)
        for _ in 0..<5 {
            let told = try daemon.post("/v1/replies/fetch", as: other, json: ["receipt": misheard])
            #expect(told.status == 400 && told.json["code"] as? String == "receipt_misheard", "\(told.text)")
        }
        #expect(try daemon.post("/v1/followups", as: other, json: ["receipt": receipt, "content": ["narrative": "x"]], headers: ["Idempotency-Key": Demo.key()])
                    .json["code"] as? String == "unknown_receipt", "another gateway's receipt is unknown here")
        // Guesses sent at once cannot pass the limit together.
        let atOnce = try daemon.postAtOnce(6, "/v1/replies/fetch", as: other, json: ["receipt": receipt]).map(\.status)
        #expect(atOnce.sorted() == [404, 404, 429, 429, 429, 429], "\(atOnce)")
        let limited = try daemon.post("/v1/replies/fetch", as: other, json: ["receipt": receipt])
        #expect(limited.status == 429 && limited.headers.lowercased().contains("retry-after:") && limited.json["code"] as? String == "unknown_receipts_limited")
        #expect(try daemon.post("/v1/replies/fetch", as: other, json: ["receipt": misheard]).status == 400, "a misheard receipt is told so even then")

        // Past its limit, a gateway still gets its reporters' replies and follow-ups through: unknown receipts do not lock them out.
        let unknown = Receipt.generate().grouped
        for _ in 0..<3 {
            let miss = try daemon.post("/v1/replies/fetch", as: daemon.gateway, json: ["receipt": unknown])
            #expect(miss.status == 404 && miss.json["code"] as? String == "unknown_receipt", "\(miss.text)")
        }
        #expect(try daemon.post("/v1/replies/fetch", as: daemon.gateway, json: ["receipt": unknown]).json["code"] as? String == "unknown_receipts_limited")
        #expect(try daemon.post("/v1/replies/fetch", as: daemon.gateway, json: ["receipt": receipt]).status == 200)
        #expect(try daemon.post("/v1/followups", as: daemon.gateway, json: ["receipt": receipt, "content": ["narrative": "still here"]],
                                headers: ["Idempotency-Key": Demo.key()]).status == 201)
        #expect(try daemon.post("/v1/replies/fetch", as: daemon.gateway, json: ["receipt": unknown]).json["code"] as? String == "unknown_receipts_limited")
        let refused = try Daemon.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(daemon.opsPort)/metrics"]).1
        #expect(refused.contains("amane_receipt_misses_refused_total 7"), "five from the other gateway, two from this one\n\(refused)")
        #expect(try daemon.post("/v1/replies/fetch", as: daemon.gateway, json: ["receipt": "1234"]).status == 400)
    }

    /// What a reporter tells later may make the case more urgent: the follow-up raises it, never lowers it.
    @Test func aFollowupTellingOfMoreDangerRaisesTheCaseAndNeverLowersIt() async throws {
        let daemon = try await Daemon()
        defer { daemon.stop(); daemon.removeData() }
        let posted = try daemon.post("/v1/disclosures", as: daemon.gateway, json: Demo.body(narrative: "first contact"), headers: ["Idempotency-Key": Demo.key()])
        let id = try #require(posted.json["id"] as? String)
        let receipt = try #require(posted.json["receipt"] as? String)
        func waiting() throws -> [String: Any] {
            try #require((daemon.get("/v1/queue", as: daemon.responder).json["cases"] as? [[String: Any]])?.first { $0["id"] as? String == id })
        }
        func followup(_ body: [String: Any], key: String = Demo.key()) throws -> HTTPResult {
            try daemon.post("/v1/followups", as: daemon.gateway, json: body, headers: ["Idempotency-Key": key])
        }
        #expect(try waiting()["urgency"] as? String == "high")

        let bogus = try followup(["receipt": receipt, "content": ["narrative": "come quickly"], "urgency": "urgent"])
        #expect(bogus.status == 400 && bogus.json["detail"] as? String == "field 'urgency' must be one of immediate, high, normal, low", "\(bogus.text)")
        #expect(try followup(["receipt": receipt, "content": ["narrative": "it is calmer now"], "urgency": "low"]).status == 201)
        let namedInTheClear = try followup(["receipt": receipt, "id": UUID.v7().uuidString, "content": ["narrative": "x"]])
        #expect(namedInTheClear.status == 400 && namedInTheClear.json["detail"] as? String == "field 'id' goes only with 'sealed'", "\(namedInTheClear.text)")
        #expect(try waiting()["urgency"] as? String == "high", "a follow-up never lowers a case's urgency")

        // In the clear: raised, and due within immediate's wait from now rather than late already. A retry must repeat it.
        let key = Demo.key()
        var danger: [String: Any] = ["receipt": receipt, "content": ["narrative": "he is coming back tonight"], "urgency": "immediate"]
        let raisedAt = Date()
        let first = try followup(danger, key: key)
        #expect(first.status == 201, "\(first.text)")
        let raised = try waiting()
        #expect(raised["urgency"] as? String == "immediate" && raised["updated"] as? Bool == true, "\(raised)")
        let due = try #require(Timestamp.parse(raised["slaDueAt"] as? String ?? ""), "\(raised)")
        #expect(abs(due.timeIntervalSince(raisedAt) - 15 * 60) < 90, "due within immediate's wait from the raise: \(raised)")
        let retried = try followup(danger, key: key)
        #expect(retried.status == 201 && retried.json["id"] as? String == first.json["id"] as? String, "\(retried.text)")
        danger["urgency"] = "high"
        #expect(try followup(danger, key: key).status == 409, "another urgency under the same key is another request")

        // Sealed at the gateway, the urgency rides beside the envelope, and a retry under its key must repeat it too.
        let sealingKey = try SealingPublicKey(text: try #require(daemon.get("/v1/queues/national/sealing-key", as: daemon.gateway).json["publicKey"] as? String))
        let ownID = UUID.v7()
        let caseID = try #require(UUID(uuidString: id))
        let envelope = try Envelope.seal(Array(#"{"narrative":"he came back"}"#.utf8), to: sealingKey, kind: .followup, objectID: ownID, caseID: caseID)
        let sealedKey = Demo.key()
        var sealed: [String: Any] = ["receipt": receipt, "id": ownID.uuidString.lowercased(), "sealed": Data(envelope).base64EncodedString(), "urgency": "high"]
        #expect(try followup(sealed, key: sealedKey).status == 201)
        sealed["urgency"] = "immediate"
        #expect(try followup(sealed, key: sealedKey).status == 409)
        #expect(try waiting()["urgency"] as? String == "immediate")

        let trail = try #require(daemon.get("/v1/audit", as: daemon.supervisor).json["entries"] as? [[String: Any]])
        let details = trail.filter { $0["action"] as? String == "followup" }.map { $0["detail"] as? String ?? "" }
        #expect(details.map { $0.contains(#""urgency":"immediate""#) } == [false, true, false], "only a raise is recorded: \(details)")
        let file = try #require(daemon.get("/v1/disclosures/\(id)", as: daemon.supervisor).json["items"] as? [[String: Any]])
        let followups = file.filter { $0["kind"] as? String == "followup" }
        #expect(followups.map { $0["raisedUrgency"] as? String } == [nil, "immediate", nil], "the case file says which follow-up raised it: \(followups)")
    }

    /// A kiosk shows the labels it may send, in the reporter's language, in the order given.
    @Test func theTaxonomyIsServedWithItsLabels() async throws {
        let daemon = try await Daemon()
        defer { daemon.stop(); daemon.removeData() }
        let listing = try daemon.get("/v1/taxonomy", as: daemon.gateway)
        let labels = try #require(listing.json["labels"] as? [String: [[String: String]]], "\(listing.text)")
        #expect(Set(labels.keys) == ["category", "urgency", "referral", "outcome", "language", "channel", "region"])
        #expect(labels["urgency"]?.map { $0["code"] } == ["immediate", "high", "normal", "low"])
        #expect(labels["region"]?.count == 12, "Morocco's twelve regions")
        #expect(labels["category"]?.first { $0["code"] == "sexual_abuse" }?["ar"] == "الاعتداء الجنسي")
        // What it lists is what intake takes.
        let body: [String: Any] = [
            "urgency": labels["urgency"]![0]["code"]!, "category": labels["category"]!.last!["code"]!, "language": labels["language"]![0]["code"]!,
            "channel": labels["channel"]![0]["code"]!, "region": labels["region"]!.last!["code"]!, "content": ["narrative": "from the listing"]]
        let posted = try daemon.post("/v1/disclosures", as: daemon.gateway, json: body, headers: ["Idempotency-Key": Demo.key()])
        #expect(posted.status == 201, "\(posted.text)")
    }

    /// Receipt lookups that find nothing go at a person's pace per gateway: what bounds guessing. Lookups that
    /// name a case give their turn back, so a gateway's many reporters are not held to one person's pace.
    /// A gateway that floods the store (a stolen kiosk certificate) is held to its bytes for the day, while a retry of
    /// what it stored before still gets its first answer.
    @Test func aGatewayIsHeldToItsStorageQuota() async throws {
        let daemon = try await Daemon(environment: ["AMANE_LIMITS_GATEWAY_BYTES_PER_DAY": "16000", "AMANE_LIMITS_MAX_ENVELOPE_BYTES": "8192",
                                                    "AMANE_LIMITS_MAX_BODY_BYTES": "8192"])
        defer { daemon.stop(); daemon.removeData() }
        let narrative = String(repeating: "Il a peur de rentrer chez lui. ", count: 170)
        let firstKey = Demo.key()
        var statuses: [Int] = []
        var refusal: HTTPResult?
        var first: [String: Any] = [:]
        // About 7.5 KB each, sealed and stored: two fit in 16,000 bytes. The second post is a retry of the first, whose
        // bytes are given back: what a retry stores is nothing.
        for attempt in 0..<8 where refusal == nil {
            let answer = try daemon.post("/v1/disclosures", as: daemon.gateway, json: Demo.body(narrative: narrative),
                                         headers: ["Idempotency-Key": attempt <= 1 ? firstKey : Demo.key()])
            statuses.append(answer.status)
            if attempt == 0 { first = answer.json }
            if answer.status == 429 { refusal = answer }
        }
        #expect(statuses == [201, 201, 201, 429], "\(statuses)")
        let refused = try #require(refusal)
        #expect(refused.json["code"] as? String == "storage_quota_exceeded" && refused.headers.lowercased().contains("retry-after:")
                && refused.text.contains("under the same idempotency key"), "\(refused.text)")
        let retried = try daemon.post("/v1/disclosures", as: daemon.gateway, json: Demo.body(narrative: narrative), headers: ["Idempotency-Key": firstKey])
        #expect(retried.status == 201 && retried.json["id"] as? String == first["id"] as? String, "\(retried.text)")
        let small = try daemon.post("/v1/followups", as: daemon.gateway, json: ["receipt": first["receipt"]!, "content": ["narrative": narrative]],
                                    headers: ["Idempotency-Key": Demo.key()])
        #expect(small.status == 429 && small.json["code"] as? String == "storage_quota_exceeded", "follow-ups count too: \(small.text)")
        // What was refused was not stored: two cases, and the first with no follow-up.
        #expect(daemon.stop() == 0)
        let db = try RelayDatabase(directory: daemon.directory)
        defer { try? db.close() }
        #expect(try await db.disclosureIDs().count == 2)
        #expect(try await db.caseSummary(id: try #require(first["id"] as? String)).updated == false, "no follow-up flagged it")
    }

    @Test func receiptLookupsAreHeldToAPersonsPace() async throws {
        let daemon = try await Daemon(environment: ["AMANE_LIMITS_RECEIPT_LOOKUPS_PER_MINUTE": "2"])
        defer { daemon.stop(); daemon.removeData() }
        let receipt = try #require(daemon.post("/v1/disclosures", as: daemon.gateway, json: Demo.body(narrative: "paced"),
                                               headers: ["Idempotency-Key": Demo.key()]).json["receipt"] as? String)
        let misheard = String(receipt.dropLast()) + String((Int(String(receipt.last!))! + 1) % 10)
        #expect(try daemon.post("/v1/replies/fetch", as: daemon.gateway, json: ["receipt": misheard]).status == 400, "not counted")
        for _ in 0..<4 { #expect(try daemon.post("/v1/replies/fetch", as: daemon.gateway, json: ["receipt": receipt]).status == 200) }
        #expect(try daemon.post("/v1/followups", as: daemon.gateway, json: ["receipt": receipt, "content": ["narrative": "more"]],
                                headers: ["Idempotency-Key": Demo.key()]).status == 201, "found receipts leave the pace alone")
        for _ in 0..<2 { #expect(try daemon.post("/v1/replies/fetch", as: daemon.gateway, json: ["receipt": Receipt.generate().grouped]).status == 404) }
        let paced = try daemon.post("/v1/replies/fetch", as: daemon.gateway, json: ["receipt": receipt])
        #expect(paced.status == 429 && paced.json["code"] as? String == "receipt_lookups_limited" && paced.headers.lowercased().contains("retry-after:"),
                "past the pace a guess that would hit waits too: \(paced.text)")
        #expect(try daemon.post("/v1/replies/fetch", as: daemon.gateway, json: ["receipt": misheard]).status == 400, "a misheard receipt is told so even then")
        #expect(try daemon.post("/v1/replies/fetch", as: try otherGateway(daemon), json: ["receipt": receipt]).status == 404, "each gateway has its own pace")
    }

    func otherGateway(_ daemon: Daemon) throws -> ClientIdentity {
        let out = daemon.directory + "/other"
        let key = SealingPrivateKey.generate(suite: .x25519ChaChaPoly).publicKey.text
        let (status, output) = try daemon.admin(["admin", "enroll-gateway", "helpline-2", "--sealing-key", key, "--out", out])
        #expect(status == 0, "\(output)")
        return ClientIdentity(certificate: out + "/helpline-2-cert.pem", key: out + "/helpline-2-key.pem")
    }

    /// The store dates a case to the minute; a log line dated to the second with the kiosk's name would undo that.
    @Test func aGatewaysRequestsAreLoggedAsATallyNotOneByOne() async throws {
        let daemon = try await Daemon()
        defer { daemon.removeData() }
        for _ in 0..<2 {
            let posted = try daemon.post("/v1/disclosures", as: daemon.gateway, json: Demo.body(narrative: "x"), headers: ["Idempotency-Key": Demo.key()])
            #expect(posted.status == 201)
        }
        let miss = try daemon.post("/v1/replies/fetch", as: daemon.gateway, json: ["receipt": "1111 2222 3333 4444"]).status
        #expect(miss == 400, "the check digit of 1111 2222 3333 4444 is wrong")
        #expect(try daemon.get("/v1/queue", as: daemon.responder).status == 200)
        let log = try await daemon.stoppedLog()
        let lines = log.split(separator: "\n")
        #expect(!lines.contains { $0.contains("relay.principal=demo-gateway") && $0.contains("relay.route=") }, "\(lines)")
        let tally = lines.filter { $0.contains("requests since the last tally") }
        #expect(tally.count == 1 && tally[0].contains("relay.principal=demo-gateway")
                && tally[0].contains("relay.requests=POST /v1/disclosures 201 ×2, POST /v1/replies/fetch 400 receipt_misheard ×1"),
                "\(tally)")
        #expect(!log.contains("1111 2222") && !log.contains("11112222"), "no receipt, even a wrong one, in the log")
        #expect(lines.contains { $0.contains("relay.route=GET /v1/queue") && $0.contains("relay.principal=demo-responder") }, "a responder's requests are logged one by one")
    }

    @Test func aCanaryInADisclosureReachesNoLogAndNoFile() async throws {
        let daemon = try await Daemon(environment: ["AMANE_LOG_LEVEL": "trace"])
        defer { daemon.removeData() }
        let canary = "CANARY-\(UUID().uuidString)"
        let posted = try daemon.post("/v1/disclosures", as: daemon.gateway, json: Demo.body(narrative: "il a dit: \(canary)"), headers: ["Idempotency-Key": Demo.key()])
        #expect(posted.status == 201)
        let receipt = try #require(posted.json["receipt"] as? String)
        let followup = try daemon.post("/v1/followups", as: daemon.gateway, json: ["receipt": receipt, "content": ["narrative": "encore \(canary)"]],
                                       headers: ["Idempotency-Key": Demo.key()])
        #expect(followup.status == 201, "\(followup.text)")
        // A query names part of a case id, and the log must not: it logs the route's pattern only.
        let caseID = try #require(posted.json["id"] as? String)
        let idMatch = String(caseID.suffix(8))
        #expect(try daemon.get("/v1/queue?idMatch=\(idMatch)", as: daemon.responder).status == 200)
        #expect(daemon.stop() == 0)
        #expect(try await eventually { daemon.stderr.value.contains("stopped; every acknowledged write is committed") })
        let logs = daemon.stdout.value + daemon.stderr.value
        #expect(!logs.contains(idMatch) && !logs.contains("idMatch"), "the query reached the log")
        #expect(logs.contains("POST /v1/disclosures"), "the request was logged")
        #expect(!logs.contains(canary))
        #expect(!logs.contains(receipt) && !logs.contains(receipt.replacingOccurrences(of: " ", with: "")))
        let requestLines = logs.split(separator: "\n").filter { $0.contains("relay.route=") }
        #expect(requestLines.count >= 3 && requestLines.contains { $0.contains("demo-gateway") } && requestLines.allSatisfy { !$0.contains("127.0.0.1") && $0.contains("relay.principal=demo-") },
                "request lines name the principal and never the client address")
        let files = FileManager.default.enumerator(atPath: daemon.directory)!.compactMap { $0 as? String }
        var scanned = 0
        for file in files {
            guard let data = FileManager.default.contents(atPath: daemon.directory + "/" + file) else { continue }
            scanned += 1
            #expect(data.range(of: Data(canary.utf8)) == nil, "canary in \(file)")
        }
        #expect(scanned > 5)
    }
}
}
