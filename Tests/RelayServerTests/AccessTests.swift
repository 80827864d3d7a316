import Foundation
import RelayCore
import RelayFormat
import RelayStore
@testable import RelayServer
import RelayTestSupport
import Testing
import X509

extension DaemonSuite {
@Suite struct AccessTests {
    @Test func connectionsWithoutAGoodCertificateGetNoHTTPAnswer() async throws {
        let daemon = try await Daemon()
        defer { daemon.stop(); daemon.removeData() }
        #expect(try await eventually { daemon.stderr.value.contains("development profiles ready") }, "a line to wait for in the log")
        let scratch = daemon.directory + "/strangers"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)

        let none = try daemon.request("GET", "/v1/me", as: nil, contentType: nil)
        #expect(none.status == 0 && none.curlExit != 0, "no client certificate")

        let foreign = try CertificateAuthority.create(name: "Some other CA").issue(commonName: "demo-gateway", usage: .client)
        let foreignIdentity = try write(foreign, to: scratch, name: "foreign")
        let fromElsewhere = try daemon.request("GET", "/v1/me", as: foreignIdentity, contentType: nil)
        #expect(fromElsewhere.status == 0 && fromElsewhere.curlExit != 0, "a certificate from another CA")

        let ca = try CertificateAuthority(certificatePEM: String(contentsOfFile: daemon.ca, encoding: .utf8),
                                          keyPEM: String(contentsOfFile: daemon.directory + "/pki/ca-key.pem", encoding: .utf8))
        let expired = try ca.issue(commonName: "old", usage: .client, now: Date().addingTimeInterval(-30 * 86_400), validity: 86_400)
        let expiredResult = try daemon.request("GET", "/v1/me", as: try write(expired, to: scratch, name: "expired"), contentType: nil)
        #expect(expiredResult.status == 0 && expiredResult.curlExit != 0, "an expired certificate")

        let unknown = try ca.issue(commonName: "nobody", usage: .client)
        let unenrolled = try daemon.request("GET", "/v1/me", as: try write(unknown, to: scratch, name: "unknown"), contentType: nil)
        #expect(unenrolled.status == 403 && unenrolled.json["code"] as? String == "not_enrolled", "a valid certificate that is not enrolled")
        // A common name that is no principal's name stays out of the log.
        let oddlyNamed = try ca.issue(commonName: "no body\nrelay.principal=admin", usage: .client)
        #expect(try daemon.request("GET", "/v1/me", as: try write(oddlyNamed, to: scratch, name: "odd"), contentType: nil).status == 403)

        #expect(try daemon.get("/v1/me", as: daemon.gateway).json["role"] as? String == "gateway")
        #expect(try daemon.get("/v1/metrics", as: daemon.gateway).status == 404)
        // A good connection that the client drops without a TLS close is not a failed handshake.
        let dropsWithoutClosing = """
            import socket, ssl, sys
            port, ca, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
            context = ssl.create_default_context(cafile=ca)
            context.load_cert_chain(cert, key)
            for _ in range(3):
                tls = context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
                tls.sendall(b"GET /v1/me HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n")
                print(tls.recv(12).decode())
                tls.close()
            # A port check: connects and hangs up before any handshake.
            socket.create_connection(("127.0.0.1", port)).close()
            # A client whose profile names another CA refuses the relay's certificate.
            other = ssl.create_default_context(cafile=sys.argv[5])
            try:
                other.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
            except ssl.SSLError:
                print("refused the relay")
            """
        let otherCA = try CertificateAuthority.create(name: "Not the relay's CA")
        try (try otherCA.certificatePEM).write(toFile: scratch + "/other-ca.pem", atomically: true, encoding: .utf8)
        let dropped = try Daemon.run("/usr/bin/env", ["python3", "-c", dropsWithoutClosing, String(daemon.port), daemon.ca,
                                                       daemon.gateway.certificate, daemon.gateway.key, scratch + "/other-ca.pem"])
        #expect(dropped.0 == 0 && dropped.1.components(separatedBy: "HTTP/1.1 200").count == 4 && dropped.1.contains("refused the relay"), "\(dropped.1)")
        let plain = try Daemon.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(daemon.port)/v1/me"])
        #expect(plain.0 != 0)
        // A client refusing the relay's certificate is not counted as a refused client certificate, even when it is
        // OpenSSL's (Python's here), whose alert comes unencrypted. The relay may count the last hang-up a moment after it.
        let expectedFailures = ["no_certificate": 1, "certificate_refused": 2, "not_tls": 1, "abandoned": 1, "server_certificate_refused": 1,
                                "other": 0, "protocol": 0]
        var metrics = ""
        func failures(_ reason: String) -> Int? {
            metrics.split(separator: "\n").first { $0.hasPrefix("amane_tls_handshake_failures_total{reason=\"\(reason)\"} ") }
                .flatMap { Int($0.split(separator: " ")[1]) }
        }
        #expect(try await eventually(within: 10) {
            metrics = try Daemon.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(daemon.opsPort)/metrics"]).1
            return expectedFailures.allSatisfy { failures($0.key) == $0.value }
        }, "\(metrics)")
        // Anyone holding a certificate of the CA could flood the journal with refused requests: they are tallied, not logged one by one.
        for _ in 0..<3 { _ = try daemon.request("GET", "/v1/me", as: try write(unknown, to: scratch, name: "unknown"), contentType: nil) }
        #expect(daemon.stop() == 0)
        #expect(try await eventually { daemon.stderr.value.contains("stopped; every acknowledged write is committed\n") },
                "a stop shows in the journal, last: \(daemon.stderr.value.split(separator: "\n").suffix(3))")
        let lines = daemon.stderr.value.split(separator: "\n")
        #expect(!lines.contains { $0.contains("relay.route=") && $0.contains("relay.principal=-") }, "\(lines)")
        #expect(lines.contains { $0.contains("requests since the last tally") && $0.contains("relay.principal=-")
                                 && $0.contains("GET /v1/me 403 not_enrolled (a certificate issued to nobody) ×4")
                                 && $0.contains("GET /v1/me 403 not_enrolled ×1") && $0.contains("TLS handshake failed: no client certificate ×1") }, "\(lines)")
        #expect(!daemon.stderr.value.contains("no body"), "\(lines)")
    }

    func write(_ issued: (certificate: String, key: String), to directory: String, name: String) throws -> ClientIdentity {
        let identity = ClientIdentity(certificate: "\(directory)/\(name)-cert.pem", key: "\(directory)/\(name)-key.pem")
        try issued.certificate.write(toFile: identity.certificate, atomically: true, encoding: .utf8)
        try issued.key.write(toFile: identity.key, atomically: true, encoding: .utf8)
        return identity
    }

    /// A TLS session resumed from its ticket is not verified again: the certificate it began with is held to its
    /// dates at every request, so that a saved ticket does not outlive it.
    @Test func aSessionResumedAfterItsCertificateEndedIsRefused() async throws {
        let daemon = try await Daemon()
        defer { daemon.stop(); daemon.removeData() }
        let ca = try CertificateAuthority(certificatePEM: String(contentsOfFile: daemon.ca, encoding: .utf8),
                                          keyPEM: String(contentsOfFile: daemon.directory + "/pki/ca-key.pem", encoding: .utf8))
        // The demo gateway's enrolled key, in a certificate that ends in a few seconds.
        let key = try Certificate.PrivateKey(pemEncoded: String(contentsOfFile: daemon.gateway.key, encoding: .utf8))
        let validity: TimeInterval = 10
        let ends = Date().addingTimeInterval(validity)
        let shortLived = ClientIdentity(certificate: daemon.directory + "/short-cert.pem", key: daemon.gateway.key)
        try ca.issue(commonName: "demo-gateway", usage: .client, for: key.publicKey, validity: validity)
            .write(toFile: shortLived.certificate, atomically: true, encoding: .utf8)
        let resumes = """
            import socket, ssl, sys, time
            port, ca, cert, key, ends = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
            context = ssl.create_default_context(cafile=ca)
            context.load_cert_chain(cert, key)
            def ask(session=None):
                tls = context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost", session=session)
                tls.sendall(b"GET /v1/me HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n")
                answer = b""
                while chunk := tls.recv(65536):
                    answer += chunk
                saved, reused = tls.session, tls.session_reused
                tls.close()
                return answer.decode(errors="replace"), saved, reused
            answer, session, _ = ask()
            print("before:", answer.split("\\r\\n")[0])
            time.sleep(max(0, ends - time.time() + 1.5))
            try:
                print("fresh:", ask()[0].split("\\r\\n")[0] or "refused")
            except (ssl.SSLError, OSError):
                print("fresh: refused")
            answer, _, reused = ask(session)
            print("resumed:", reused, answer.split("\\r\\n")[0], answer.split("\\r\\n\\r\\n", 1)[-1])
            """
        let (status, output) = try Daemon.run("/usr/bin/env", ["python3", "-c", resumes, String(daemon.port), daemon.ca, shortLived.certificate,
                                                               shortLived.key, String(ends.timeIntervalSince1970)])
        let lines = output.split(separator: "\n").map(String.init)
        #expect(status == 0 && lines.count == 3, "\(output)")
        #expect(lines.first == "before: HTTP/1.1 200 OK" && lines.dropFirst().first == "fresh: refused", "\(output)")
        #expect(lines.last?.hasPrefix("resumed: True HTTP/1.1 403 Forbidden ") == true && lines.last?.contains("\"code\":\"certificate_expired\"") == true,
                "the ticket outlived the certificate: \(output)")
    }

    /// A revoked principal gets 403 on the very connection it already had open.
    @Test func revocationBitesAtOnceOnAnOpenConnection() async throws {
        let daemon = try await Daemon()
        defer { daemon.stop(); daemon.removeData() }
        let (client, input, output) = try daemon.openConnection(as: daemon.responder)
        defer { client.terminate() }
        let request = Data("GET /v1/me HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8)
        input.fileHandleForWriting.write(request)
        #expect(try await eventually { output.value.components(separatedBy: "HTTP/1.1 ").count == 2 }, "\(output.value)")
        #expect(output.value.contains("HTTP/1.1 200"))

        // The admin hears what became of the cases it held: none is left with no one.
        var held: [String] = []
        for _ in 0..<2 {
            let submitted = try daemon.post("/v1/disclosures", as: daemon.gateway, json: Demo.body(narrative: "held when revoked"), headers: ["Idempotency-Key": Demo.key()])
            held.append(try #require(submitted.json["id"] as? String))
            #expect(try daemon.post("/v1/disclosures/\(held.last!)/claim", as: daemon.responder, json: [:]).status == 200)
        }
        #expect(try daemon.post("/v1/disclosures/\(held[1])/transition", as: daemon.responder, json: ["action": "refer", "referral": "police"]).status == 200)
        let (status, text) = try daemon.admin(["admin", "revoke", "demo-responder"])
        #expect(status == 0 && text.contains("run `amane rotate`") && text.contains("Back in the queue (new), as demo-responder had claimed them: \(held[0]).")
                && text.contains("Still assigned to demo-responder, referred: \(held[1]).") && text.contains("`amane assign ID --to NAME`"), "\(text)")
        input.fileHandleForWriting.write(request)
        // The body that names the refusal may come in a read of its own.
        #expect(try await eventually { output.value.components(separatedBy: "HTTP/1.1 ").count == 3 && output.value.contains("revoked") }, "\(output.value)")
        #expect(output.value.components(separatedBy: "HTTP/1.1 ").last?.hasPrefix("403") == true)
        #expect(try await eventually { daemon.stderr.value.split(separator: "\n").contains { $0.contains("relay.status=403") && $0.contains("relay.problem=revoked") && $0.contains("relay.principal=demo-responder") } },
                "the log names who was refused: \(daemon.stderr.value)")

        // Revoked while its body was on the way: its certificate passed with the headers, and the store refuses it as revoked.
        let gateway = try daemon.openConnection(as: daemon.gateway)
        defer { gateway.client.terminate() }
        let body = try JSONSerialization.data(withJSONObject: Demo.body(narrative: "sent as the gateway was revoked"))
        gateway.input.fileHandleForWriting.write(Data("""
            POST /v1/disclosures HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nIdempotency-Key: \(Demo.key())\r\n\
            Content-Length: \(body.count)\r\n\r\n
            """.utf8) + body.prefix(10))
        try await Task.sleep(for: .seconds(1))
        let (gatewayStatus, gatewayText) = try daemon.admin(["admin", "revoke", "demo-gateway"])
        #expect(gatewayStatus == 0 && gatewayText.contains("nothing needs rotating") && !gatewayText.contains("amane rotate"), "\(gatewayText)")
        gateway.input.fileHandleForWriting.write(body.dropFirst(10))
        #expect(try await eventually { gateway.output.value.contains("\"code\":\"revoked\"") }, "\(gateway.output.value)")
        #expect(gateway.output.value.hasPrefix("HTTP/1.1 403"), "\(gateway.output.value)")
        #expect(daemon.stop() == 0)
        let db = try RelayDatabase(directory: daemon.directory)
        defer { try? db.close() }
        #expect(try await db.disclosureIDs() == Set(held), "nothing of the refused disclosure was stored")
    }


    /// A reissued certificate works at once and the old one gets 403; the responder keeps their grants.
    @Test func reissuingACertificateRetiresTheOldOne() async throws {
        let daemon = try await Daemon()
        defer { daemon.stop(); daemon.removeData() }
        let grants = try daemon.get("/v1/grants", as: daemon.responder).json["grants"] as? [[String: Any]]
        let out = daemon.directory + "/reissued"
        let (status, text) = try daemon.admin(["admin", "reissue", "demo-responder", "--out", out])
        #expect(status == 0 && text.contains("no longer works"), "\(text)")
        let fresh = ClientIdentity(certificate: out + "/demo-responder-cert.pem", key: out + "/demo-responder-key.pem")
        let attributes = try FileManager.default.attributesOfItem(atPath: fresh.key)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let me = try daemon.get("/v1/me", as: fresh)
        #expect(me.status == 200 && me.json["name"] as? String == "demo-responder", "\(me.text)")
        #expect((try daemon.get("/v1/grants", as: fresh).json["grants"] as? [[String: Any]])?.count == grants?.count)
        #expect(try daemon.get("/v1/me", as: daemon.responder).status == 403)
        let again = try daemon.admin(["admin", "reissue", "demo-responder", "--out", out])
        #expect(again.0 != 0 && again.1.contains("exists"), "the files of the last one are never overwritten: \(again.1)")
        let audit = try daemon.get("/v1/audit", as: daemon.supervisor).text
        #expect(audit.contains("principal.reissue"))
        // The log's tally says the old one is a retired certificate (perhaps a lost one), not someone to enroll.
        #expect(daemon.stop() == 0)
        #expect(try await eventually { daemon.stderr.value.contains("stopped; every acknowledged write is committed\n") })
        #expect(daemon.stderr.value.contains("GET /v1/me 403 not_enrolled (a retired certificate of demo-responder) ×1"), "\(daemon.stderr.value)")
    }

    /// With a request made by `amane request-certificate`, the client key is made on the person's machine and stays
    /// there: the handover holds only certificates, the fingerprint read back shows the request was not swapped, a
    /// renewal keeps the key only when told to, a retired key never comes back, and a wrong request is refused.
    @Test func aCertificateRequestKeepsTheClientKeyOnThePersonsMachine() async throws {
        let daemon = try await Daemon()
        defer { daemon.stop(); daemon.removeData() }
        let home = daemon.directory + "/nadia-laptop"
        func amane(_ arguments: [String], home: String = home) throws -> (Int32, String) {
            let env = Build.environment(["AMANE_HOME": home])
            return try Daemon.run(Build.cli, arguments, environment: env)
        }
        func requestInfo(_ output: String) throws -> [String: Any] {
            try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any], "\(output)")
        }
        func principals() throws -> String { try daemon.admin(["admin", "list", "--json"]).1 }
        let (made, madeOutput) = try amane(["request-certificate", "nadia", "--out", home + "-nadia.csr", "--json"])
        let first = try requestInfo(madeOutput)
        let key = home + "/client-key.pem"
        #expect(made == 0 && first["keyCreated"] as? Bool == true && first["key"] as? String == key, "\(madeOutput)")
        #expect((try FileManager.default.attributesOfItem(atPath: key)[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let request = try String(contentsOfFile: home + "-nadia.csr", encoding: .utf8)
        #expect(request.hasPrefix("-----BEGIN CERTIFICATE REQUEST-----") && request.hasSuffix("-----\n") && !request.contains("PRIVATE KEY"))
        let fingerprint = try #require(first["fingerprint"] as? String)
        // A request written here by a relative --out is named by its whole path, as the key is.
        let inHome = Build.environment(["AMANE_HOME": home])
        let (_, hereOutput) = try Daemon.run("/bin/sh", ["-c", #"cd "$1" && exec "$2" request-certificate nadia --json --out nadia-here.csr"#, "sh", daemon.directory, Build.cli],
                                             environment: inHome)
        #expect(try requestInfo(hereOutput)["request"] as? String == daemon.directory + "/nadia-here.csr", "\(hereOutput)")

        let handover = daemon.directory + "/handover-nadia"
        let sealingKey = SealingPrivateKey.generate().publicKey.text
        // Read back before signing: a request whose key is not the one she read out is refused with nothing written.
        let (swapped, swappedText) = try daemon.admin(["admin", "enroll-responder", "nadia", "--sealing-key", sealingKey, "--csr", home + "-nadia.csr",
                                                       "--csr-fingerprint", String(repeating: "ab", count: 10), "--out", handover])
        #expect(swapped != 0 && swappedText.contains("not what they read you") && !FileManager.default.fileExists(atPath: handover), "\(swappedText)")
        let (enrolled, enrolledText) = try daemon.admin(["admin", "enroll-responder", "nadia", "--sealing-key", sealingKey, "--csr", home + "-nadia.csr",
                                                         "--csr-fingerprint", SPKIFingerprint.spoken(fingerprint), "--out", handover])
        #expect(enrolled == 0 && enrolledText.contains("stays on their machine") && enrolledText.contains(SPKIFingerprint.spoken(fingerprint)),
                "the admin reads back what nadia's amane printed: \(enrolledText)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: handover).sorted() == ["ca-cert.pem", "nadia-cert.pem"],
                "no private key is written on the relay's side")
        let nadia = ClientIdentity(certificate: handover + "/nadia-cert.pem", key: key)
        let me = try daemon.get("/v1/me", as: nadia)
        #expect(me.status == 200 && me.json["name"] as? String == "nadia", "\(me.text)")
        // Her amane uses the key where the request put it, with the lines it told her to add.
        try "relay: \(daemon.url)\nca: \(handover)/ca-cert.pem\ncertificate: \(handover)/nadia-cert.pem\nkey: client-key.pem\n"
            .write(toFile: home + "/config.yaml", atomically: true, encoding: .utf8)
        let inbox = try amane(["inbox", "--json"])
        #expect(inbox.0 == 0, "\(inbox.1)")

        // A renewal asks for the key she has; the relay keeps it only when the admin says so, and access then lasts
        // until the later of the two certificates' ends.
        let (again, againText) = try amane(["request-certificate", "nadia", "--out", home + "-nadia-renewal.csr"])
        #expect(again == 0 && againText.contains("The request is for the key you have") && againText.contains("--keep-key")
                && againText.contains(SPKIFingerprint.spoken(fingerprint)) && againText.contains("put it in place of \(handover)/nadia-cert.pem")
                && !againText.contains("relay: https"), "a renewal's profile lacks nothing: \(againText)")
        let before = try principals()
        let renewed = daemon.directory + "/handover-nadia-renewal"
        let (unsaid, unsaidText) = try daemon.admin(["admin", "reissue", "nadia", "--csr", home + "-nadia-renewal.csr", "--out", renewed])
        #expect(unsaid != 0 && unsaidText.contains("--keep-key") && !FileManager.default.fileExists(atPath: renewed + "/nadia-cert.pem"), "\(unsaidText)")
        #expect(try principals() == before, "a refused reissue changes nothing")
        let (reissued, reissuedText) = try daemon.admin(["admin", "reissue", "nadia", "--csr", home + "-nadia-renewal.csr", "--keep-key",
                                                         "--out", renewed, "--valid-days", "90"])
        #expect(reissued == 0 && reissuedText.contains("old certificate also works until it ends"), "\(reissuedText)")
        #expect(try daemon.get("/v1/me", as: ClientIdentity(certificate: renewed + "/nadia-cert.pem", key: key)).status == 200)
        #expect(try daemon.get("/v1/me", as: nadia).status == 200)
        let ends = (try JSONSerialization.jsonObject(with: Data(try principals().utf8)) as? [[String: Any]])?
            .first { $0["name"] as? String == "nadia" }?["certificateEndsAt"] as? Int
        #expect(ends.map { abs($0 - Int(Date().timeIntervalSince1970) - 730 * 86_400) < 600 } == true, "the first certificate still works that long")

        // Where the request cannot be written, --new-key leaves the key as it was, with nothing beside it.
        let keyBefore = try Data(contentsOf: URL(fileURLWithPath: key))
        let (unwritten, unwrittenOutput) = try amane(["request-certificate", "nadia", "--new-key", "--out", daemon.directory + "/no-such-folder/nadia.csr"])
        #expect(unwritten == 1 && unwrittenOutput.contains("cannot write") && unwrittenOutput.contains("your key is unchanged"), "\(unwrittenOutput)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: key)) == keyBefore)
        #expect(try FileManager.default.contentsOfDirectory(atPath: home).filter { $0.hasPrefix("client-key") } == ["client-key.pem"])
        // A key that may be known: a new one retires the old, whose certificates stop at once and never come back.
        let (fresh, freshOutput) = try amane(["request-certificate", "nadia", "--new-key", "--out", home + "-nadia-new.csr", "--json"])
        let third = try requestInfo(freshOutput)
        let replaced = try #require(third["replacedKey"] as? String, "\(freshOutput)")
        #expect(fresh == 0 && third["keyCreated"] as? Bool == true && third["fingerprint"] as? String != fingerprint
                && FileManager.default.fileExists(atPath: replaced), "\(freshOutput)")
        let (stale, staleOutput) = try amane(["inbox"])
        #expect(stale == 1 && staleOutput.contains("is not for the client key") && staleOutput.contains("nothing was sent"),
                "a certificate for the old key is named locally, not as the relay's TLS failure: \(staleOutput)")
        let moved = daemon.directory + "/handover-nadia-new"
        let (rekeyed, rekeyedText) = try daemon.admin(["admin", "reissue", "nadia", "--csr", home + "-nadia-new.csr", "--out", moved])
        #expect(rekeyed == 0 && rekeyedText.contains("retired (never enrolled again)"), "\(rekeyedText)")
        #expect(try daemon.get("/v1/me", as: ClientIdentity(certificate: moved + "/nadia-cert.pem", key: key)).status == 200)
        #expect(try daemon.get("/v1/me", as: ClientIdentity(certificate: handover + "/nadia-cert.pem", key: replaced)).json["code"] as? String == "not_enrolled")
        let (back, backText) = try daemon.admin(["admin", "reissue", "nadia", "--csr", home + "-nadia.csr", "--out", daemon.directory + "/back"])
        #expect(back != 0 && backText.contains("retired") && !FileManager.default.fileExists(atPath: daemon.directory + "/back"), "\(backText)")
        #expect(try daemon.get("/v1/me", as: ClientIdentity(certificate: moved + "/nadia-cert.pem", key: key)).status == 200, "the refusal changed nothing")
        #expect(try daemon.get("/v1/me", as: ClientIdentity(certificate: handover + "/nadia-cert.pem", key: replaced)).json["code"] as? String == "not_enrolled")
        let reissues = (try daemon.get("/v1/audit", as: daemon.supervisor).json["entries"] as? [[String: Any]])?
            .filter { $0["action"] as? String == "principal.reissue" && $0["subject"] as? String == "nadia" }.map { "\($0["detail"] ?? "")" }
        #expect(reissues?.count == 2 && reissues?[0].contains("kept") == true && reissues?[1].contains("new") == true, "\(reissues ?? [])")

        // Refused before anything is signed or written: a request for someone else, one naming no one or two, one
        // altered where it is signed, another kind of key, a certificate, a private key.
        func openssl(_ arguments: [String]) throws {
            let (code, output) = try Daemon.run("/usr/bin/openssl", arguments)
            #expect(code == 0, "openssl \(arguments): \(output)")
        }
        func opensslRequest(_ file: String, subject: String, key: [String] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]) throws -> String {
            let path = daemon.directory + "/" + file
            try openssl(["req", "-new"] + key + ["-nodes", "-keyout", path + "-key.pem", "-subj", subject, "-out", path])
            return path
        }
        var altered = Array(Data(base64Encoded: request.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined())!)
        let named = try #require(altered.firstRange(of: Array("nadia".utf8)))
        altered[named.upperBound - 1] = UInt8(ascii: "b")
        let alteredRequest = daemon.directory + "/altered.csr"
        try "-----BEGIN CERTIFICATE REQUEST-----\n\(Data(altered).base64EncodedString(options: .lineLength64Characters))\n-----END CERTIFICATE REQUEST-----\n"
            .write(toFile: alteredRequest, atomically: true, encoding: .utf8)
        let listed = try principals()
        let refusals = [("youssef", home + "-nadia-new.csr", "is for 'nadia', not 'youssef'"),
                        ("nadib", alteredRequest, "signature does not verify"),
                        ("kiosk-rsa", try opensslRequest("rsa.csr", subject: "/CN=kiosk-rsa", key: ["-newkey", "rsa:2048"]), "not an ECDSA P-256 or P-384 key"),
                        ("kiosk-none", try opensslRequest("none.csr", subject: "/O=Bayti"), "names 0"),
                        ("kiosk-two", try opensslRequest("two.csr", subject: "/CN=kiosk-two/CN=kiosk-other"), "names 2"),
                        ("nadia-3", handover + "/nadia-cert.pem", "this is a certificate"),
                        ("nadia-4", key, "holds a private key"),
                        ("nadia-5", daemon.directory + "/no-such.csr", "no readable file")]
        for (name, file, reason) in refusals {
            let out = daemon.directory + "/refused-" + name
            let (code, text) = try daemon.admin(["admin", "enroll-responder", name, "--sealing-key", SealingPrivateKey.generate().publicKey.text,
                                                 "--csr", file, "--out", out])
            #expect(code != 0 && text.contains(reason) && !FileManager.default.fileExists(atPath: out), "\(name): \(text)")
        }
        #expect(try principals() == listed, "no refusal enrolled anyone")

        // A kiosk vendor's own tools do as well: an openssl P-256 request, here in DER, its key never seen by the relay.
        let kioskRequest = try opensslRequest("kiosk.csr", subject: "/CN=kiosk-tanger")
        try openssl(["req", "-in", kioskRequest, "-outform", "DER", "-out", kioskRequest + ".der"])
        // The guide's openssl line gives the fingerprint to compare, pasted as sha256sum prints it.
        let (_, kioskFingerprint) = try Daemon.run("/bin/sh", ["-c", "openssl req -inform DER -in '\(kioskRequest).der' -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum"])
        #expect(kioskFingerprint.hasSuffix("  -\n"), "\(kioskFingerprint)")
        let (kiosk, kioskText) = try daemon.admin(["admin", "enroll-gateway", "kiosk-tanger", "--sealing-key", SealingPrivateKey.generate().publicKey.text,
                                                   "--csr", kioskRequest + ".der", "--csr-fingerprint", kioskFingerprint.trimmingCharacters(in: .newlines),
                                                   "--out", daemon.directory + "/handover-kiosk"])
        #expect(kiosk == 0, "\(kioskText)")
        let kioskMe = try daemon.get("/v1/me", as: ClientIdentity(certificate: daemon.directory + "/handover-kiosk/kiosk-tanger-cert.pem",
                                                                   key: kioskRequest + "-key.pem"))
        #expect(kioskMe.status == 200 && kioskMe.json["role"] as? String == "gateway", "\(kioskMe.text)")

        // amane makes requests only for keys the relay signs, and to standard output with --out -.
        try FileManager.default.createDirectory(atPath: home + "-placeholder", withIntermediateDirectories: true)
        try "relay: https://…   (the address your admin gives you)\nca: \(daemon.ca)\ncertificate: \(moved)/nadia-cert.pem\nkey: \(key)\n"
            .write(toFile: home + "-placeholder/config.yaml", atomically: true, encoding: .utf8)
        let rsaHome = daemon.directory + "/rsa-laptop"
        try FileManager.default.createDirectory(atPath: rsaHome, withIntermediateDirectories: true)
        try "key: \(daemon.directory)/rsa.csr-key.pem\n".write(toFile: rsaHome + "/config.yaml", atomically: true, encoding: .utf8)
        let (placeholder, placeholderOutput) = try amane(["inbox"], home: home + "-placeholder")
        #expect(placeholder == 1 && placeholderOutput.contains("is not an address"), "the line printed for her to fill in, pasted as is: \(placeholderOutput)")
        try "relay: https://…\n".write(toFile: home + "-placeholder/config.yaml", atomically: true, encoding: .utf8)
        let (bare, bareOutput) = try amane(["inbox"], home: home + "-placeholder")
        #expect(bare == 1 && bareOutput.contains("is not an address"), "the placeholder alone: \(bareOutput)")
        let (rsaCode, rsaOutput) = try amane(["request-certificate", "rsa-user"], home: rsaHome)
        #expect(rsaCode == 1 && rsaOutput.contains("not an ECDSA P-256 or P-384 key") && rsaOutput.contains("--new-key"), "\(rsaOutput)")
        let piped = try Daemon.run(Build.cli, ["request-certificate", "nadia", "--out", "-"], environment: ["AMANE_HOME": home], separatingErrors: true)
        #expect(piped.code == 0 && piped.output.hasPrefix("-----BEGIN CERTIFICATE REQUEST-----") && piped.errors.contains("standard output"), "\(piped)")
    }

    /// Who may call what, written out here as the API's design gives it (ARCHITECTURE §7), not read from the code.
    static let expectedRoles: [String: Set<Role>] = {
        let gateway: Set<Role> = [.gateway], members: Set<Role> = [.responder, .supervisor], supervisors: Set<Role> = [.supervisor]
        return [
            "POST /v1/disclosures": gateway, "POST /v1/followups": gateway, "POST /v1/replies/fetch": gateway,
            "GET /v1/queues/{queue}/sealing-key": gateway,
            "GET /v1/queue": members, "GET /v1/disclosures/{id}": members, "POST /v1/disclosures/{id}/claim": members,
            "POST /v1/disclosures/{id}/release": members, "POST /v1/disclosures/{id}/transition": members,
            "POST /v1/disclosures/{id}/notes": members, "POST /v1/disclosures/{id}/replies": members,
            "GET /v1/disclosures/{id}/reply-key": members, "GET /v1/grants": members, "POST /v1/grants": members,
            "POST /v1/epochs": members, "GET /v1/members": members, "GET /v1/stats": members,
            "POST /v1/disclosures/{id}/assign": supervisors, "POST /v1/disclosures/{id}/hold": supervisors, "GET /v1/audit": supervisors,
            "GET /v1/me": gateway.union(members), "GET /v1/taxonomy": gateway.union(members), "GET /v1/openapi.yaml": gateway.union(members),
        ]
    }()

    /// Every role against every route: exactly the allowed set gets past authorization.
    @Test func theAuthorizationMatrixIsExactlyTheTable() async throws {
        #expect(Dictionary(uniqueKeysWithValues: Authorization.table.map { ($0.key.description, $0.value) }) == Self.expectedRoles)
        let daemon = try await Daemon()
        defer { daemon.stop(); daemon.removeData() }
        let identities: [(Role, ClientIdentity)] = [(.gateway, daemon.gateway), (.responder, daemon.responder), (.supervisor, daemon.supervisor)]
        let someCase = UUID.v7().uuidString.lowercased()
        var mismatches: [String] = []
        for (key, allowed) in Self.expectedRoles.sorted(by: { $0.key < $1.key }) {
            let parts = key.split(separator: " ", maxSplits: 1)
            let route = RouteKey(String(parts[0]), String(parts[1]))
            let path = route.path.replacingOccurrences(of: "{id}", with: someCase).replacingOccurrences(of: "{queue}", with: "national")
            for (role, identity) in identities {
                let result = try daemon.request(route.method, path, as: identity, body: route.method == "POST" ? Data("{}".utf8) : nil,
                                                contentType: route.method == "POST" ? "application/json" : nil)
                let refused = result.status == 403 && result.text.contains("may not call")
                if refused == allowed.contains(role) { mismatches.append("\(role.rawValue) \(route): \(result.status) \(result.text)") }
            }
        }
        #expect(mismatches == [])
    }

    @Test func everyRouteIsDocumentedAndEveryDocumentedRouteIsServed() async throws {
        let daemon = try await Daemon()
        defer { daemon.stop(); daemon.removeData() }
        let document = try daemon.get("/v1/openapi.yaml", as: daemon.gateway)
        #expect(document.status == 200)
        var documented: Set<String> = []
        var currentPath = ""
        for line in document.text.split(separator: "\n") {
            if let match = line.wholeMatch(of: #/\ \ (/v1/[^:]+):/#) { currentPath = String(match.1) }
            if let match = line.wholeMatch(of: #/\ {4}(get|post):/#) { documented.insert("\(match.1.uppercased()) \(currentPath)") }
        }
        let served = Set(RelayServerApp.routeDescriptions(db: try RelayDatabase(directory: daemon.directory + "/routes")))
        #expect(served == documented)
        #expect(served == Set(Authorization.table.keys.map(\.description)))
    }
}
}
