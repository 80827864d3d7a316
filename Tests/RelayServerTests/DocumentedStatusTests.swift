import Foundation
import RelayCore
import RelayFormat
@testable import RelayServer
import RelayTestSupport
import Testing

/// Every status the OpenAPI document lists for a route is produced by a real request to that route.
extension DaemonSuite {
@Suite struct DocumentedStatusTests {
    static func documentedStatuses(_ yaml: String) -> [String: Set<Int>] {
        var result: [String: Set<Int>] = [:]
        var path = "", operation = ""
        for line in yaml.split(separator: "\n") {
            if let match = line.wholeMatch(of: #/\ \ (/v1/[^:]+):/#) { path = String(match.1) }
            if let match = line.wholeMatch(of: #/\ {4}(get|post):/#) { operation = "\(match.1.uppercased()) \(path)"; result[operation] = [] }
            if let match = line.wholeMatch(of: #/\ {8}"(\d{3})":/#) { result[operation]!.insert(Int(match.1)!) }
        }
        return result
    }

    /// The problem codes in the document's description of `code`, with their statuses: "`name` (400): …".
    static func documentedCodes(_ yaml: String) -> [String: Int] {
        Dictionary(yaml.matches(of: #/`([a-z_]+)` \((\d{3})\)/#).map { (String($0.1), Int($0.2)!) }, uniquingKeysWith: { first, _ in first })
    }

    @Test func everyDocumentedStatusOccurs() async throws {
        let daemon = try await Daemon(environment: ["AMANE_LIMITS_MAX_BODY_BYTES": "4096", "AMANE_LIMITS_MAX_ENVELOPE_BYTES": "8192"])
        defer { daemon.stop(); daemon.removeData() }
        let served = try daemon.get("/v1/openapi.yaml", as: daemon.gateway).text
        let documented = Self.documentedStatuses(served)
        #expect(documented.count == 23)
        let printed = try Daemon.run(Build.daemon, ["openapi"])
        #expect(printed.0 == 0 && printed.1 == served, "amane-relayd openapi prints what the relay serves")
        let epoch = try daemon.epochKey()
        let gatewayKey = try daemon.gatewayKey()
        var seen: [String: Set<Int>] = [:]
        var untitled: [String] = []
        // Each problem's code is one the document lists, with the status the document gives it.
        var uncoded: [String] = []
        let documentedCodes = Self.documentedCodes(try daemon.get("/v1/openapi.yaml", as: daemon.gateway).text)
        #expect(documentedCodes.count == 25 && documentedCodes["receipt_misheard"] == 400, "\(documentedCodes)")
        // Every answer in JSON is what the document says it is: its fields, their types, enums and date-times.
        let schemas = try OpenAPISchemaTests.schemas()
        var unlike: [String] = []
        func record(_ route: String, _ result: HTTPResult) {
            seen[route, default: []].insert(result.status)
            if result.status < 300, route != "GET /v1/openapi.yaml" {
                if let schema = try? OpenAPISchemaTests.answerSchema(route, status: result.status) {
                    unlike += OpenAPISchemaTests.violations(of: result.json, schema, schemas, at: "\(route) \(result.status)")
                } else {
                    unlike.append("\(route) \(result.status): the document gives no schema for it")
                }
            }
            if result.status >= 400, (result.json["title"] as? String)?.isEmpty != false { untitled.append("\(route) \(result.status): \(result.text)") }
            if result.status >= 400, (result.json["code"] as? String).flatMap({ documentedCodes[$0] }) != result.status {
                uncoded.append("\(route) \(result.status): \(result.text)")
            }
        }

        let g = daemon.gateway, r = daemon.responder, s = daemon.supervisor
        let json = "application/json"
        let unknownCase = UUID.v7().uuidString.lowercased()
        let huge = Data(repeating: 0x20, count: 200_000)

        // Success paths, in an order that builds on itself.
        let posted = try daemon.post("/v1/disclosures", as: g, json: Demo.body(narrative: "status walk"), headers: ["Idempotency-Key": Demo.key()])
        record("POST /v1/disclosures", posted)
        let id = posted.json["id"] as! String, receipt = posted.json["receipt"] as! String
        record("POST /v1/followups", try daemon.post("/v1/followups", as: g, json: ["receipt": receipt, "content": ["narrative": "more"]], headers: ["Idempotency-Key": Demo.key()]))
        record("GET /v1/queues/{queue}/sealing-key", try daemon.get("/v1/queues/national/sealing-key", as: g))
        record("GET /v1/queue", try daemon.get("/v1/queue", as: r))
        record("GET /v1/disclosures/{id}", try daemon.get("/v1/disclosures/\(id)", as: r))
        record("POST /v1/disclosures/{id}/claim", try daemon.post("/v1/disclosures/\(id)/claim", as: r, json: [:]))
        let noteID = UUID.v7()
        let caseID = UUID(uuidString: id)!
        let note: [String: Any] = ["id": noteID.uuidString.lowercased(),
                                   "sealed": Data(try Envelope.seal(Array("n".utf8), to: epoch.publicKey, kind: .note, objectID: noteID, caseID: caseID)).base64EncodedString()]
        record("POST /v1/disclosures/{id}/notes", try daemon.post("/v1/disclosures/\(id)/notes", as: r, json: note))
        record("POST /v1/disclosures/{id}/notes", try daemon.post("/v1/disclosures/\(id)/notes", as: r, json: note))
        let replyID = UUID.v7()
        let reply: [String: Any] = [
            "id": replyID.uuidString.lowercased(),
            "sealed": Data(try Envelope.seal(Array("r".utf8), to: epoch.publicKey, kind: .reply, objectID: replyID, caseID: caseID)).base64EncodedString(),
            "gatewaySealed": Data(try Envelope.seal(Array("r".utf8), to: gatewayKey.publicKey, kind: .reply, objectID: replyID, caseID: caseID)).base64EncodedString(),
        ]
        record("POST /v1/disclosures/{id}/replies", try daemon.post("/v1/disclosures/\(id)/replies", as: r, json: reply))
        record("POST /v1/disclosures/{id}/replies", try daemon.post("/v1/disclosures/\(id)/replies", as: r, json: reply))
        record("GET /v1/disclosures/{id}/reply-key", try daemon.get("/v1/disclosures/\(id)/reply-key", as: r))
        record("POST /v1/replies/fetch", try daemon.post("/v1/replies/fetch", as: g, json: ["receipt": receipt]))
        record("POST /v1/disclosures/{id}/transition", try daemon.post("/v1/disclosures/\(id)/transition", as: r, json: ["action": "start"]))
        record("POST /v1/disclosures/{id}/release", try daemon.post("/v1/disclosures/\(id)/release", as: r, json: [:]))
        record("POST /v1/disclosures/{id}/assign", try daemon.post("/v1/disclosures/\(id)/assign", as: s, json: ["to": "demo-responder"]))
        record("POST /v1/disclosures/{id}/hold", try daemon.post("/v1/disclosures/\(id)/hold", as: s, json: ["on": true]))
        record("GET /v1/grants", try daemon.get("/v1/grants", as: r))
        let responderKey = try SealingPublicKey(text: (try daemon.get("/v1/members", as: s).json["members"] as! [[String: Any]])
            .first { $0["name"] as? String == "demo-responder" }!["sealingKey"] as! String)
        record("GET /v1/members", try daemon.get("/v1/members", as: s))
        record("POST /v1/grants", try daemon.post("/v1/grants", as: s, json: [
            "epoch": epoch.id.uuidString.lowercased(), "grants": ["demo-responder": Data(try Grant.seal(epoch, to: responderKey)).base64EncodedString()]]))
        record("GET /v1/stats", try daemon.get("/v1/stats?by=urgency", as: r))
        record("GET /v1/audit", try daemon.get("/v1/audit", as: s))
        record("GET /v1/me", try daemon.get("/v1/me", as: r))
        record("GET /v1/taxonomy", try daemon.get("/v1/taxonomy", as: g))
        record("GET /v1/openapi.yaml", try daemon.get("/v1/openapi.yaml", as: r))
        let next = SealingPrivateKey.generate()
        record("POST /v1/epochs", try daemon.post("/v1/epochs", as: r, json: [
            "publicKey": next.publicKey.text, "grants": ["demo-responder": Data(try Grant.seal(next, to: responderKey)).base64EncodedString()]]))

        // Refusals. A certificate from the relay's CA that names no enrolled principal is refused on the routes every role may call.
        let ca = try CertificateAuthority(certificatePEM: String(contentsOfFile: daemon.ca, encoding: .utf8),
                                          keyPEM: String(contentsOfFile: daemon.directory + "/pki/ca-key.pem", encoding: .utf8))
        let unknown = try ca.issue(commonName: "nobody", usage: .client)
        let stranger = ClientIdentity(certificate: daemon.directory + "/stranger-cert.pem", key: daemon.directory + "/stranger-key.pem")
        try unknown.certificate.write(toFile: stranger.certificate, atomically: true, encoding: .utf8)
        try unknown.key.write(toFile: stranger.key, atomically: true, encoding: .utf8)
        for route in documented.keys.sorted() {
            let parts = route.split(separator: " ")
            let method = String(parts[0])
            let template = String(parts[1])
            let path = template.replacingOccurrences(of: "{id}", with: id).replacingOccurrences(of: "{queue}", with: "national")
            let statuses = documented[route]!
            let isGateway = template.hasPrefix("/v1/disclosures") && template.count < 16 || ["/v1/followups", "/v1/replies/fetch"].contains(template) || template.contains("sealing-key")
            let allowed = isGateway ? g : (template.contains("assign") || template.contains("hold") || template == "/v1/audit" ? s : r)
            if statuses.contains(403) {
                let wrong = ["/v1/me", "/v1/taxonomy", "/v1/openapi.yaml"].contains(template) ? stranger : isGateway ? r : g
                record(route, try daemon.request(method, path, as: wrong, body: method == "POST" ? Data("{}".utf8) : nil, contentType: method == "POST" ? json : nil))
            }
            if statuses.contains(415) { record(route, try daemon.request(method, path, as: allowed, body: Data("{}".utf8), contentType: "text/plain", headers: ["Idempotency-Key": Demo.key()])) }
            if statuses.contains(413) { record(route, try daemon.request(method, path, as: allowed, body: huge, headers: ["Idempotency-Key": Demo.key()])) }
            if statuses.contains(400) {
                if method == "POST" {
                    record(route, try daemon.request(method, path, as: allowed, body: Data("{".utf8), headers: ["Idempotency-Key": Demo.key()]))
                } else {
                    let query = template == "/v1/stats" ? "?by=weekday" : template == "/v1/audit" ? "?after=yesterday" : "?state=lost"
                    record(route, try daemon.request(method, path + query, as: allowed, contentType: nil))
                }
            }
        }
        let missingCase: [(String, String, Any)] = [
            ("GET /v1/disclosures/{id}", "", [:]), ("POST /v1/disclosures/{id}/claim", "/claim", [:]),
            ("POST /v1/disclosures/{id}/release", "/release", [:]), ("POST /v1/disclosures/{id}/transition", "/transition", ["action": "start"]),
            ("POST /v1/disclosures/{id}/notes", "/notes", note), ("POST /v1/disclosures/{id}/replies", "/replies", reply),
            ("POST /v1/disclosures/{id}/assign", "/assign", ["to": "demo-responder"]), ("POST /v1/disclosures/{id}/hold", "/hold", ["on": true]),
            ("GET /v1/disclosures/{id}/reply-key", "/reply-key", [:]),
        ]
        for (route, suffix, body) in missingCase {
            let identity = route.contains("assign") || route.contains("hold") ? s : r
            record(route, route.hasPrefix("GET") ? try daemon.get("/v1/disclosures/\(unknownCase)\(suffix)", as: identity)
                                                 : try daemon.post("/v1/disclosures/\(unknownCase)\(suffix)", as: identity, json: body))
        }
        let wellFormedUnknown = Receipt.generate().digits
        record("POST /v1/followups", try daemon.post("/v1/followups", as: g, json: ["receipt": wellFormedUnknown, "content": ["narrative": "x"]], headers: ["Idempotency-Key": Demo.key()]))
        record("POST /v1/replies/fetch", try daemon.post("/v1/replies/fetch", as: g, json: ["receipt": wellFormedUnknown]))
        record("GET /v1/queues/{queue}/sealing-key", try daemon.get("/v1/queues/elsewhere/sealing-key", as: g))
        let stray = SealingPrivateKey.generate()
        record("POST /v1/epochs", try daemon.post("/v1/epochs", as: r, json: [
            "queue": "elsewhere", "publicKey": stray.publicKey.text,
            "grants": ["demo-responder": Data(try Grant.seal(stray, to: responderKey)).base64EncodedString()]]))

        // Conflicts: a reused idempotency key, a claim on a claimed case, a release of a new one, a closed case, a reused object id.
        let key = Demo.key()
        _ = try daemon.post("/v1/disclosures", as: g, json: Demo.body(narrative: "a"), headers: ["Idempotency-Key": key])
        record("POST /v1/disclosures", try daemon.post("/v1/disclosures", as: g, json: Demo.body(narrative: "b"), headers: ["Idempotency-Key": key]))
        let second = try daemon.post("/v1/disclosures", as: g, json: Demo.body(narrative: "c"), headers: ["Idempotency-Key": Demo.key()]).json["id"] as! String
        record("POST /v1/disclosures/{id}/release", try daemon.post("/v1/disclosures/\(second)/release", as: r, json: [:]))
        record("POST /v1/disclosures/{id}/transition", try daemon.post("/v1/disclosures/\(second)/transition", as: r, json: ["action": "start"]))
        _ = try daemon.post("/v1/disclosures/\(second)/claim", as: r, json: [:])
        record("POST /v1/disclosures/{id}/claim", try daemon.post("/v1/disclosures/\(second)/claim", as: s, json: [:]))
        _ = try daemon.post("/v1/disclosures/\(second)/transition", as: r, json: ["action": "close", "outcome": "duplicate"])
        record("POST /v1/disclosures/{id}/assign", try daemon.post("/v1/disclosures/\(second)/assign", as: s, json: ["to": "demo-responder"]))
        let followupID = UUID.v7()
        let sealedFollowup: [String: Any] = [
            "receipt": receipt, "id": followupID.uuidString.lowercased(),
            "sealed": Data(try Envelope.seal(Array("again".utf8), to: next.publicKey, kind: .followup, objectID: followupID, caseID: caseID)).base64EncodedString(),
        ]
        let followupKey = ["Idempotency-Key": Demo.key()]
        record("POST /v1/followups", try daemon.post("/v1/followups", as: g, json: sealedFollowup, headers: followupKey))
        record("POST /v1/followups", try daemon.post("/v1/followups", as: g, json: ["receipt": receipt, "content": ["narrative": "other"]], headers: followupKey))
        record("POST /v1/epochs", try daemon.post("/v1/epochs", as: r, json: [
            "publicKey": next.publicKey.text, "grants": ["demo-responder": Data(try Grant.seal(next, to: responderKey)).base64EncodedString()]]))
        record("POST /v1/grants", try daemon.post("/v1/grants", as: r, json: [
            "epoch": next.id.uuidString.lowercased(), "grants": ["nobody-here": Data(try Grant.seal(next, to: responderKey)).base64EncodedString()]]))

        // A hold comes too late for a purged case: closed long ago (aged in the file), swept when the relay starts.
        let old = try daemon.post("/v1/disclosures", as: g, json: Demo.body(narrative: "long closed"), headers: ["Idempotency-Key": Demo.key()]).json["id"] as! String
        #expect(try daemon.post("/v1/disclosures/\(old)/claim", as: r, json: [:]).status == 200)
        #expect(try daemon.post("/v1/disclosures/\(old)/transition", as: r, json: ["action": "close", "outcome": "duplicate"]).status == 200)
        #expect(daemon.stop() == 0)
        let age = "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); db.execute('UPDATE disclosure SET closedAt = closedAt - 400 * 86400 WHERE id = ?', (sys.argv[2],)); db.commit()"
        #expect(try Daemon.run("/usr/bin/env", ["python3", "-c", age, daemon.directory + "/relay.sqlite", old]).0 == 0)
        let swept = try await daemon.restarted()
        defer { swept.stop() }
        #expect(try await eventually {
            let metrics = try Daemon.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(swept.opsPort)/metrics"]).1
            return metrics.contains("\namane_retention_purged_cases_total 1\n") && !metrics.contains("\namane_retention_last_sweep_timestamp_seconds 0")
        }, "ops see the sweep")
        let late = try swept.post("/v1/disclosures/\(old)/hold", as: swept.supervisor, json: ["on": true])
        #expect(late.status == 409 && late.text.contains("purged"), "\(late.text)")
        record("POST /v1/disclosures/{id}/hold", late)
        let purgedReply = try swept.get("/v1/disclosures/\(old)/reply-key", as: swept.supervisor)
        #expect(purgedReply.status == 409 && purgedReply.text.contains("purged"), "\(purgedReply.text)")
        record("GET /v1/disclosures/{id}/reply-key", purgedReply)
        // Listed no more, yet its short id still resolves (`amane show SHORT`): its labels remain.
        let listed = try swept.get("/v1/queue?state=closed", as: swept.supervisor).json["cases"] as? [[String: Any]] ?? []
        let resolved = try swept.get("/v1/queue?idMatch=\(old.suffix(12))", as: swept.supervisor).json["cases"] as? [[String: Any]] ?? []
        #expect(!listed.contains { $0["id"] as? String == old } && resolved.map { $0["id"] as? String } == [old]
                && resolved.first?["purged"] as? Bool == true, "\(listed) \(resolved)")

        // Too many requests: a tight bucket for the same principal across routes.
        let tight = try await Daemon(environment: ["AMANE_LIMITS_REQUESTS_PER_MINUTE": "2"])
        defer { tight.stop(); tight.removeData() }
        for route in documented.keys.sorted() where documented[route]!.contains(429) {
            let parts = route.split(separator: " ")
            let template = String(parts[1])
            let path = template.replacingOccurrences(of: "{id}", with: unknownCase).replacingOccurrences(of: "{queue}", with: "national")
            let identity = ["/v1/disclosures", "/v1/followups", "/v1/replies/fetch"].contains(template) || template.contains("sealing-key") ? tight.gateway : tight.supervisor
            for _ in 0..<3 {
                let result = try tight.request(String(parts[0]), path, as: identity, body: parts[0] == "POST" ? Data("{}".utf8) : nil,
                                               contentType: parts[0] == "POST" ? json : nil)
                if result.status == 429 {
                    #expect(result.headers.lowercased().contains("retry-after:"))
                    record(route, result)
                    break
                }
            }
        }

        let slowedDown = tight.stderr.value.split(separator: "\n").filter { $0.contains("relay.status=429") }
        #expect(!slowedDown.isEmpty && slowedDown.allSatisfy { $0.contains("relay.principal=demo-supervisor") }, "the log says who was slowed down: \(slowedDown)")

        // No sealing key yet: a production relay before the first `amane rotate`.
        let fresh = try await productionRelayWithoutEpoch()
        defer { fresh.daemon.stop(); fresh.daemon.removeData() }
        let noKey = try fresh.daemon.post("/v1/disclosures", as: fresh.gateway, json: Demo.body(narrative: "x"), headers: ["Idempotency-Key": Demo.key()])
        #expect(noKey.text.contains("no sealing key"))
        // Ready all the same (responders must reach it to make the key), and ops are told what it waits for.
        let waiting = "no sealing key that an active member holds for the queue national: intake answers 503 until a member runs `amane rotate`"
        let ready = try Daemon.run("/usr/bin/curl", ["-s", "-w", " %{http_code}", "http://127.0.0.1:\(fresh.daemon.opsPort)/readyz"]).1
        #expect(ready == "ready; \(waiting)\n 200", "\(ready)")
        let metrics = try Daemon.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(fresh.daemon.opsPort)/metrics"]).1
        #expect(metrics.contains("amane_sealing_key_missing_queues 1"), "\(metrics)")
        #expect(try await eventually { fresh.daemon.stderr.value.contains(waiting) }, "\(fresh.daemon.stderr.value)")
        record("POST /v1/disclosures", noKey)
        record("GET /v1/queues/{queue}/sealing-key", try fresh.daemon.get("/v1/queues/national/sealing-key", as: fresh.gateway))
        // Once no active member holds the key, a follow-up is refused too, rather than sealed to a key no one can open.
        for member in ["demo-responder", "demo-supervisor"] { #expect(try swept.admin(["admin", "revoke", member]).0 == 0) }
        let unheld = try swept.post("/v1/followups", as: swept.gateway, json: ["receipt": receipt, "content": ["narrative": "more"]], headers: ["Idempotency-Key": Demo.key()])
        #expect(unheld.json["code"] as? String == "no_sealing_key", "\(unheld.text)")
        record("POST /v1/followups", unheld)

        var missing: [String] = []
        for (route, statuses) in documented.sorted(by: { $0.key < $1.key }) {
            for status in statuses.sorted() where !(seen[route]?.contains(status) ?? false) { missing.append("\(route) \(status)") }
        }
        #expect(missing == [], "documented but never produced")
        var undocumented: [String] = []
        for (route, statuses) in seen.sorted(by: { $0.key < $1.key }) {
            for status in statuses.sorted() where !(documented[route]?.contains(status) ?? false) { undocumented.append("\(route) \(status)") }
        }
        #expect(undocumented == [], "produced but not documented")
        #expect(untitled == [], "every problem body has a title")
        #expect(uncoded == [], "every problem body has a documented code for its status")
        #expect(unlike == [], "every answer as documented")
        #expect(seen.values.reduce(0) { $0 + $1.filter { $0 < 300 }.count } >= 23, "answers checked: \(seen)")
    }
}

}

/// `amane-relayd init` plus an enrolled gateway, started without --dev: no epoch yet.
func productionRelayWithoutEpoch() async throws -> (daemon: Daemon, gateway: ClientIdentity) {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("amane-prod-\(UUID().uuidString)").path
    let env = Build.relaydEnvironment()
    let (initStatus, initOutput) = try Daemon.run(Build.daemon, ["init", "--data-dir", directory, "--hostname", "localhost", "--hostname", "127.0.0.1"], environment: env)
    #expect(initStatus == 0, "\(initOutput)")
    let key = SealingPrivateKey.generate(suite: .x25519ChaChaPoly).publicKey.text
    let (enrollStatus, enrollOutput) = try Daemon.run(Build.daemon, ["admin", "enroll-gateway", "kiosk-1", "--sealing-key", key, "--out", directory + "/kiosk", "--data-dir", directory], environment: env)
    #expect(enrollStatus == 0, "\(enrollOutput)")
    let daemon = try await Daemon(directory: directory, dev: false)
    return (daemon, ClientIdentity(certificate: directory + "/kiosk/kiosk-1-cert.pem", key: directory + "/kiosk/kiosk-1-key.pem"))
}
