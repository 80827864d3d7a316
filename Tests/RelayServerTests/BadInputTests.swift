import Foundation
import RelayCore
import RelayFormat
import RelayTestSupport
import Testing

extension DaemonSuite {
@Suite struct BadInputTests {
    @Test func eachKindOfBadInputGetsAClearProblemAndHarmsNothing() async throws {
        let daemon = try await Daemon(environment: ["AMANE_LIMITS_MAX_BODY_BYTES": "8192", "AMANE_LIMITS_MAX_ENVELOPE_BYTES": "16384",
                                                    "AMANE_LIMITS_NARRATIVE_MAX_BYTES": "4096"])
        defer { daemon.stop(); daemon.removeData() }
        let good = try daemon.post("/v1/disclosures", as: daemon.gateway, json: Demo.body(narrative: "kept safe"), headers: ["Idempotency-Key": Demo.key()])
        #expect(good.status == 201)
        let key = ["Idempotency-Key": Demo.key()]
        func problem(_ result: HTTPResult, _ status: Int, _ fragment: String) {
            #expect(result.status == status, "\(result.text)")
            #expect(result.headers.lowercased().contains("content-type: application/problem+json"))
            #expect((result.json["detail"] as? String ?? "").contains(fragment), "\(result.text)")
            let code = [400: "invalid_request", 405: "method_not_allowed", 413: "too_large", 415: "unsupported_media_type"][status]
            #expect(code == nil || result.json["code"] as? String == code, "\(result.text)")
        }
        // Only a sealed envelope may make a body larger than plain JSON's limit: a narrative is refused before any parser reads it.
        problem(try daemon.post("/v1/disclosures", as: daemon.gateway, json: Demo.body(narrative: String(repeating: "x", count: 9000)), headers: key), 413,
                "larger than this route accepts: 8192 bytes besides sealed envelopes (sealed)")
        var manyAnswers = Demo.body(narrative: "many small values cost a parser more than their size")
        manyAnswers["content"] = ["narrative": "x", "answers": ["a": [String](repeating: "", count: 1_000)]]
        problem(try daemon.post("/v1/disclosures", as: daemon.gateway, json: manyAnswers, headers: key), 400, "the JSON holds more than 1000 values")
        problem(try daemon.request("POST", "/v1/disclosures", as: daemon.gateway, body: Data(repeating: 0x20, count: 200_000), headers: key), 413,
                "larger than this route accepts: 87380 bytes")
        // Without a Content-Length to refuse it by, a chunked body is cut off as it passes the limit. Sent by hand, a
        // little past it, so that the relay has read all that came when it answers and closes.
        let chunked = try daemon.openConnection(as: daemon.gateway)
        defer { chunked.client.terminate() }
        let chunk = Data(repeating: 0x20, count: 90_000)
        chunked.input.fileHandleForWriting.write(Data("""
            POST /v1/disclosures HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nIdempotency-Key: \(key["Idempotency-Key"]!)\r\n\
            Transfer-Encoding: chunked\r\n\r\n\(String(chunk.count, radix: 16))\r\n
            """.utf8) + chunk + Data("\r\n".utf8))
        #expect(try await eventually(within: 10) { chunked.output.value.contains("\"code\":\"too_large\"") }, "\(chunked.output.value)")
        #expect(chunked.output.value.hasPrefix("HTTP/1.1 413") && chunked.output.value.contains("larger than this route accepts: 87380 bytes"),
                "\(chunked.output.value)")
        // A client that asks before sending its body (Expect: 100-continue) hears "go on" at once, not after its own timeout.
        let asked = try daemon.request("POST", "/v1/disclosures", as: daemon.gateway, body: Data("{\"urgency\": ".utf8),
                                       headers: ["Idempotency-Key": Demo.key(), "Expect": "100-continue"])
        #expect(asked.status == 400 && asked.headers.hasPrefix("HTTP/1.1 100 Continue\r\n"), "the body was read, then refused: \(asked.headers)")
        let longNarrative = try daemon.post("/v1/disclosures", as: daemon.gateway, json: Demo.body(narrative: String(repeating: "x", count: 5000)), headers: key)
        problem(longNarrative, 413, "field 'content.narrative' holds 5000 bytes; it may hold 4096")
        #expect(longNarrative.json["code"] as? String == "too_large", "a field too large is too large, as the API description says")
        problem(try daemon.request("POST", "/v1/disclosures", as: daemon.gateway, body: Data("{\"urgency\": ".utf8), headers: key), 400, "JSON")
        // A path called with a method it does not take is told which it takes; an unknown path is not found.
        let caseID = try #require(good.json["id"] as? String)
        for (method, path, allow) in [("GET", "/v1/disclosures", "POST"), ("GET", "/v1/replies/fetch", "POST"),
                                      ("PUT", "/v1/disclosures/\(caseID)/claim", "POST"), ("DELETE", "/v1/disclosures/\(caseID)", "GET"),
                                      ("DELETE", "/v1/grants", "GET, POST")] {
            let refused = try daemon.request(method, path, as: daemon.gateway, contentType: nil)
            problem(refused, 405, "takes")
            #expect(refused.json["code"] as? String == "method_not_allowed" && refused.headers.lowercased().contains("allow: \(allow.lowercased())\r\n"),
                    "\(method) \(path): \(refused.headers)")
        }
        let counted = try Daemon.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(daemon.opsPort)/metrics"]).1
        #expect(counted.contains(#"amane_http_requests_total{method="GET",route="/v1/disclosures",status="405"} 1"#)
                && counted.contains(#"amane_http_requests_total{method="DELETE",route="/v1/disclosures/{id}",status="405"} 1"#)
                && !counted.contains(#"route="NotFound",status="405""#), "a 405 is counted under its path's pattern: \(counted)")
        let nowhere = try daemon.request("GET", "/v1/nowhere", as: daemon.gateway, contentType: nil)
        problem(nowhere, 404, "no such route")
        #expect(nowhere.json["code"] as? String == "not_found")
        var invalidUTF8 = Data(#"{"urgency":"high","category":"sexual_abuse","language":"fr","channel":"phone","content":{"narrative":""#.utf8)
        invalidUTF8.append(contentsOf: [0xff, 0xfe, 0x41])
        invalidUTF8.append(Data(#""}}"#.utf8))
        problem(try daemon.request("POST", "/v1/disclosures", as: daemon.gateway, body: invalidUTF8, headers: key), 400, "UTF-8")
        problem(try daemon.request("POST", "/v1/disclosures", as: daemon.gateway, body: Data("{}".utf8), contentType: "text/plain", headers: key), 415, "application/json")
        problem(try daemon.request("POST", "/v1/disclosures", as: daemon.gateway, body: try JSONSerialization.data(withJSONObject: Demo.body(narrative: "é")),
                                   contentType: "application/json; charset=latin1", headers: key), 415, "in UTF-8 (charset=latin1 is not taken)")
        let utf16 = try #require(String(decoding: try JSONSerialization.data(withJSONObject: Demo.body(narrative: "in UTF-16")), as: UTF8.self).data(using: .utf16))
        problem(try daemon.request("POST", "/v1/disclosures", as: daemon.gateway, body: utf16, headers: key), 400, "UTF-8")
        problem(try daemon.request("POST", "/v1/disclosures", as: daemon.gateway, body: try JSONSerialization.data(withJSONObject: Demo.body(narrative: "gz")),
                                   headers: key.merging(["Content-Encoding": "gzip"]) { $1 }), 415, "Content-Encoding")
        #expect(try daemon.request("POST", "/v1/replies/fetch", as: daemon.gateway, body: Data("{}".utf8), headers: ["Content-Encoding": "br"])
                    .headers.lowercased().contains("accept-encoding: identity"))
        problem(try daemon.post("/v1/disclosures", as: daemon.gateway, json: Demo.body(narrative: "no key")), 400, "Idempotency-Key")
        problem(try daemon.post("/v1/disclosures", as: daemon.gateway, json: Demo.body(narrative: "short key"), headers: ["Idempotency-Key": "abc"]), 400, "Idempotency-Key")
        var unknown = Demo.body(narrative: "x")
        unknown["content"] = ["narrative": "x", "mood": "calm"]
        problem(try daemon.post("/v1/disclosures", as: daemon.gateway, json: unknown, headers: key), 400, "content.mood")
        var unknownNull = Demo.body(narrative: "x")
        unknownNull["priority"] = NSNull()
        problem(try daemon.post("/v1/disclosures", as: daemon.gateway, json: unknownNull, headers: key), 400, "unknown field 'priority'")
        var elsewhere = Demo.body(narrative: "x")
        elsewhere["queue"] = "bayti"
        problem(try daemon.post("/v1/disclosures", as: daemon.gateway, json: elsewhere, headers: key), 400, "field 'queue': this gateway submits to national")
        var badLabel = Demo.body(narrative: "x")
        badLabel["region"] = "atlantis"
        problem(try daemon.post("/v1/disclosures", as: daemon.gateway, json: badLabel, headers: key), 400, "region")
        // Every wrong label in one answer, a wrong urgency with the rest.
        badLabel["urgency"] = "urgent"
        badLabel["category"] = "abuse"
        let everyLabel = try daemon.post("/v1/disclosures", as: daemon.gateway, json: badLabel, headers: key)
        problem(everyLabel, 400, "field 'urgency' must be one of immediate, high, normal, low; unknown category 'abuse' (known: ")
        problem(everyLabel, 400, "; unknown region 'atlantis' (known: ")
        // An envelope of a suite this build does not know is said so in words.
        var envelope = try Envelope.seal(Array("x".utf8), to: daemon.epochKey().publicKey, kind: .disclosure, objectID: UUID.v7())
        envelope.replaceSubrange(10..<12, with: [0x00, 0x01])
        var foreign = Demo.body(narrative: "x")
        foreign["content"] = nil
        foreign["sealed"] = Data(envelope).base64EncodedString()
        problem(try daemon.post("/v1/disclosures", as: daemon.gateway, json: foreign, headers: key), 400,
                "field 'sealed': its cipher suite (HPKE KEM 0x647a, KDF 0x1, AEAD 0x1) is unknown to this build")
        var both = Demo.body(narrative: "x")
        both["sealed"] = "AAAA"
        problem(try daemon.post("/v1/disclosures", as: daemon.gateway, json: both, headers: key), 400, "exactly one")
        problem(try daemon.post("/v1/disclosures", as: daemon.gateway, json: Demo.body(narrative: ""), headers: key), 400, "narrative")
        // Refused before any parser runs: many small values beyond the plain-JSON limit (one long string may be an envelope),
        // a key twice in one object (parsers disagree on which wins, even spelt with an escape), and deep nesting.
        let labels = #""urgency":"high","category":"sexual_abuse","language":"fr","channel":"phone""#
        let manyValues = "{\(labels),\"content\":{\"narrative\":\"x\",\"answers\":{" + (0..<3000).map { "\"k\($0)\":\"v\"" }.joined(separator: ",") + "}}}"
        problem(try daemon.request("POST", "/v1/disclosures", as: daemon.gateway, body: Data(manyValues.utf8), headers: key), 413, "larger")
        let twice = "{\(labels),\"content\":{\"narrative\":\"A\",\"narrative\":\"B\"}}"
        problem(try daemon.request("POST", "/v1/disclosures", as: daemon.gateway, body: Data(twice.utf8), headers: key), 400, "'narrative' appears twice")
        let escapedTwice = "{\(labels),\"content\":{\"narrative\":\"A\",\"narr\\u0061tive\":\"B\"}}"
        problem(try daemon.request("POST", "/v1/disclosures", as: daemon.gateway, body: Data(escapedTwice.utf8), headers: key), 400, "appears twice")
        let deep = "{\(labels),\"content\":{\"narrative\":\"x\",\"answers\":" + String(repeating: "[", count: 40) + String(repeating: "]", count: 40) + "}}"
        problem(try daemon.request("POST", "/v1/disclosures", as: daemon.gateway, body: Data(deep.utf8), headers: key), 400, "nested more than 32 deep")

        // A chunk size that is no number breaks HTTP's framing: the client's error (400), not the relay's (500).
        let brokenChunk = "POST /v1/replies/fetch HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            + "Connection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
        let raw = try daemon.raw(brokenChunk, as: daemon.gateway).output
        #expect(raw.contains("HTTP/1.1 400") && raw.contains("not valid HTTP") && !daemon.stderr.value.contains("request failed"), "\(raw)")
        // Requests the HTTP parser refuses before any route sees them get a problem too: headers that are too large, a bad request line.
        problem(try daemon.request("GET", "/v1/me", as: daemon.gateway, contentType: nil, headers: ["X-Padding": String(repeating: "a", count: 20_000)]),
                431, "headers are larger")
        let garbled = try daemon.raw("GET /v1/me HTTP/1.1\r\nHost: localhost\r\n\r\nTHIS IS NOT HTTP\r\n\r\n", as: daemon.gateway).output
        let answers = garbled.components(separatedBy: "HTTP/1.1 ").dropFirst()
        #expect(answers.count == 2 && answers.first!.hasPrefix("200") && answers.first!.contains("\"role\"")
                && answers.last!.hasPrefix("400") && answers.last!.lowercased().contains("content-type: application/problem+json")
                && answers.last!.contains("not valid HTTP"), "the good request first gets its own answer: \(garbled)")
        let trailers = "POST /v1/replies/fetch HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            + "2\r\n{}\r\n0\r\nX-Padding: \(String(repeating: "a", count: 70_000))\r\n\r\n"
        let overflow = try daemon.raw(trailers, as: daemon.gateway).output
        #expect(overflow.contains("HTTP/1.1 431") && overflow.contains("headers are larger"), "trailers are headers too: \(overflow)")
        // What RFC 9112 says a server must not serve is refused once the requests before it are answered, and the
        // connection ends there: a request pipelined behind it is not taken.
        let me = "GET /v1/me HTTP/1.1\r\nHost: localhost\r\n\r\n"
        for (request, status, fragment) in [("GET /v1/me HTTP/1.1\r\n\r\n", "400", "names its Host once in HTTP/1.1; this one names it 0 times"),
                                            ("GET /v1/me HTTP/1.1\r\nHost: localhost\r\nHost: elsewhere\r\n\r\n", "400", "names it 2 times"),
                                            ("GET /v1/me HTTP/1.1\r\nHost: local host\r\n\r\n", "400", "not a host name"),
                                            ("GET /v1/me HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", "400", "does not switch protocols"),
                                            ("POST /v1/replies/fetch HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                                             + "Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", "501", "not in Transfer-Encoding 'gzip, chunked'")] {
            let (exit, output) = try daemon.raw(me + request + me, as: daemon.gateway)
            let answers = output.components(separatedBy: "HTTP/1.1 ").dropFirst()
            #expect(exit != 124 && answers.count == 2 && answers.first!.hasPrefix("200") && answers.last!.hasPrefix(status)
                    && answers.last!.lowercased().contains("connection: close\r\n") && answers.last!.contains(fragment)
                    && answers.last!.contains(status == "501" ? #""code":"not_implemented""# : #""code":"invalid_request""#),
                    "the good request answered, this one refused, nothing after it: \(exit) \(output)")
        }
        // HEAD is refused on the API (a case file read has effects) without a body, which would be read as the next answer;
        // the ops port answers it as GET without the body, for load balancers that probe with it.
        let (_, heads) = try daemon.raw("HEAD /v1/me HTTP/1.1\r\nHost: localhost\r\n\r\n" + "GET /v1/me HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                                        as: daemon.gateway)
        let headAnswers = heads.components(separatedBy: "HTTP/1.1 ").dropFirst().map { $0.lowercased() }
        #expect(headAnswers.count == 2 && headAnswers[0].hasPrefix("405") && headAnswers[0].contains("allow: get\r\n")
                && headAnswers[0].hasSuffix("\r\n\r\n") && headAnswers[1].hasPrefix("200") && headAnswers[1].hasSuffix("}"),
                "a 405 without a body, then the GET's answer: \(heads)")
        let opsHead = try Daemon.run("/usr/bin/curl", ["-sS", "--head", "--max-time", "20", "http://127.0.0.1:\(daemon.opsPort)/healthz"]).1.lowercased()
        #expect(opsHead.hasPrefix("http/1.1 200") && opsHead.contains("content-length: 3\r\n"), "\(opsHead)")
        // A Content-Type named twice is refused for that, not for being another type.
        let (_, typedTwice) = try daemon.raw("POST /v1/replies/fetch HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                                        + "Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}", as: daemon.gateway)
        #expect(typedTwice.contains("HTTP/1.1 415") && typedTwice.contains("names its Content-Type 2 times"), "\(typedTwice)")
        // CONNECT too, at once; its answer has no body, as SwiftNIO frames every answer to a CONNECT.
        let (connectExit, connect) = try daemon.raw(me + "CONNECT 127.0.0.1:9090 HTTP/1.1\r\nHost: 127.0.0.1:9090\r\n\r\n" + me, as: daemon.gateway)
        let connectAnswers = connect.components(separatedBy: "HTTP/1.1 ").dropFirst()
        #expect(connectExit != 124 && connectAnswers.count == 2 && connectAnswers.last!.hasPrefix("400")
                && connectAnswers.last!.lowercased().contains("connection: close\r\n"), "\(connect)")
        // After a request that ends its connection nothing more is answered, a request the relay would refuse included;
        // and a refused request whose body the parser then chokes on gets one answer, not two.
        let (_, afterLast) = try daemon.raw("GET /v1/me HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\nGET /v1/me HTTP/1.1\r\n\r\n", as: daemon.gateway)
        #expect(afterLast.components(separatedBy: "HTTP/1.1 ").count == 2 && afterLast.contains("HTTP/1.1 200"), "\(afterLast)")
        let (_, gzipOnly) = try daemon.raw("POST /v1/replies/fetch HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                                           + "Transfer-Encoding: gzip\r\n\r\nnot a chunk\r\n\r\n", as: daemon.gateway)
        #expect(gzipOnly.components(separatedBy: "HTTP/1.1 ").count == 2 && gzipOnly.contains("HTTP/1.1 501"), "\(gzipOnly)")
        // A declared length past the limit is answered at once, and the connection ends: no waiting for a body that never comes.
        let huge = "POST /v1/disclosures HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nIdempotency-Key: \(Demo.key())\r\n"
            + "Content-Length: 100000000\r\n\r\n{}"
        let (earlyStatus, early) = try daemon.raw(huge, as: daemon.gateway)
        #expect(early.contains("HTTP/1.1 413") && early.contains("larger than this route accepts") && earlyStatus != 124,
                "answered and closed before timeout(1) gave up: \(earlyStatus) \(early)")
        // A request that is its connection's last (HTTP/1.0 without keep-alive, "Connection: Close") closes it once answered,
        // and what a client pipelined behind it is not taken. The relay lets go of the socket (the kernel keeps it, with no
        // process) though the client keeps its end open: half-closed, it would stay the relay's until the idle timeout, or
        // for ever with a request pipelined behind.
        let lastRequest = """
            import socket, ssl, sys, time
            port = int(sys.argv[1])
            context = ssl.create_default_context(cafile=sys.argv[2]); context.load_cert_chain(sys.argv[3], sys.argv[4])
            tls = context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost"); tls.settimeout(20)
            tls.sendall(sys.argv[5].encode())
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
            local = tls.getsockname()[1]
            def relay_holds_socket():
                for line in open("/proc/net/tcp").read().splitlines()[1:]:
                    fields = line.split()
                    if int(fields[1].split(":")[1], 16) == port and int(fields[2].split(":")[1], 16) == local:
                        return fields[9] != "0"
                return False
            # TLS waits up to 5 s for the client's close_notify before it closes the socket: twice that, and no more.
            deadline = time.time() + 10
            while time.time() < deadline and relay_holds_socket():
                time.sleep(0.1)
            print("held" if relay_holds_socket() else "released")
            print(answer.decode(errors="replace"))
            """
        for last in ["GET /v1/me HTTP/1.0\r\n\r\n", "GET /v1/me HTTP/1.1\r\nHost: localhost\r\nConnection: Close\r\n\r\n",
                     "GET /v1/me HTTP/1.0\r\n\r\nGET /v1/me HTTP/1.1\r\nHost: localhost\r\n\r\n"] {
            let (status, answer) = try Daemon.run("/usr/bin/env", ["python3", "-c", lastRequest, String(daemon.port), daemon.ca,
                                                                   daemon.gateway.certificate, daemon.gateway.key, last])
            #expect(status == 0 && answer.hasPrefix("released\n") && answer.components(separatedBy: " 200 OK").count == 2
                    && answer.contains("\"role\"") && answer.lowercased().contains("connection: close\r\n"),
                    "one answer, saying it is the last, then the relay closes its side for good: \(answer)")
        }

        let cases = try daemon.get("/v1/queue", as: daemon.responder).json["cases"] as! [[String: Any]]
        #expect(cases.map { $0["id"] as? String } == [good.json["id"] as? String], "bad input stored nothing and lost nothing")
        for match in ["abc", "zzzz", "0123456789abcdef0123456789abcdef01234"] {
            problem(try daemon.get("/v1/queue?idMatch=\(match)", as: daemon.responder), 400, "idMatch")
        }
        let id = try #require(good.json["id"] as? String)
        for match in [String(id.suffix(8)), String(id.prefix(13)).uppercased(), id] {
            let found = try daemon.get("/v1/queue?idMatch=\(match)", as: daemon.responder).json["cases"] as! [[String: Any]]
            #expect(found.map { $0["id"] as? String } == [id], "\(match)")
        }
        let labelled = try daemon.request("POST", "/v1/disclosures", as: daemon.gateway, body: try JSONSerialization.data(withJSONObject: Demo.body(narrative: "é")),
                                          contentType: "application/json; charset=\"UTF-8\"", headers: ["Idempotency-Key": Demo.key()])
        #expect(labelled.status == 201, "UTF-8, however it is spelt, is taken: \(labelled.text)")
        #expect(try daemon.get("/v1/me", as: daemon.gateway).status == 200, "the daemon keeps serving")
        // Every refusal above came under one idempotency key: none of them used it up.
        let afterRefusals = try daemon.post("/v1/disclosures", as: daemon.gateway, json: Demo.body(narrative: "after the refusals"), headers: key)
        #expect(afterRefusals.status == 201, "\(afterRefusals.text)")
    }

    @Test func slowIdleAndHalfOpenClientsAreDisconnected() async throws {
        let daemon = try await Daemon(environment: ["AMANE_LIMITS_IDLE_TIMEOUT_SECONDS": "2"])
        defer { daemon.stop(); daemon.removeData() }
        // A raw TCP connection that never starts TLS, one that stops halfway through its ClientHello, a TLS client
        // that sends half a request head, and one that had its answer and keeps the connection without a word.
        let script = """
            import socket, ssl, sys, time
            port = int(sys.argv[1])
            raw = socket.create_connection(("127.0.0.1", port)); raw.settimeout(8)
            hello = socket.create_connection(("127.0.0.1", port)); hello.settimeout(8)
            hello.sendall(bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]))
            context = ssl.create_default_context(cafile=sys.argv[2]); context.load_cert_chain(sys.argv[3], sys.argv[4])
            tls = context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost"); tls.settimeout(8)
            tls.sendall(b"GET /v1/me HTTP/1.1\\r\\nHost: localhost\\r\\n")
            kept = context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost"); kept.settimeout(8)
            kept.sendall(b"GET /v1/me HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n")
            answer = b""
            while b"\\r\\n\\r\\n" not in answer or not answer.rstrip().endswith(b"}"):
                chunk = kept.recv(65536)
                if not chunk: break
                answer += chunk
            start = time.time()
            results = ["kept" if answer.startswith(b"HTTP/1.1 200") else "unanswered"]
            for sock in (kept, raw, hello, tls):
                try:
                    data = sock.recv(1024)
                    results.append("closed" if data == b"" else "data")
                except socket.timeout:
                    results.append("open")
                except (ConnectionResetError, ssl.SSLError, OSError):
                    results.append("closed")
                if sock is kept:
                    kept_for = round(time.time() - start, 1)
            print(" ".join(results), kept_for, round(time.time() - start, 1))
            # A client that pipelines requests and never reads their answers: the relay's side of it is closed.
            stalled = socket.socket(); stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.connect(("127.0.0.1", port))
            stalled = context.wrap_socket(stalled, server_hostname="localhost"); stalled.settimeout(3)
            try:
                stalled.sendall(b"GET /v1/openapi.yaml HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n" * 2000)
            except (socket.timeout, OSError):
                pass
            local = stalled.getsockname()[1]
            def relay_side_open():
                for line in open("/proc/net/tcp").read().splitlines()[1:]:
                    fields = line.split()
                    if int(fields[1].split(":")[1], 16) == port and int(fields[2].split(":")[1], 16) == local:
                        return fields[3] == "01"
                return False
            seen_open = relay_side_open()
            deadline = time.time() + 15
            while time.time() < deadline and relay_side_open():
                time.sleep(0.2)
            print("stalled", "open" if relay_side_open() else ("closed" if seen_open else "never-seen"))
            """
        let result = try Daemon.run("/usr/bin/env", ["python3", "-c", script, String(daemon.port), daemon.ca, daemon.gateway.certificate, daemon.gateway.key])
        #expect(result.0 == 0, "\(result.1)")
        let parts = result.1.split(whereSeparator: \.isWhitespace)
        #expect(parts.prefix(5) == ["kept", "closed", "closed", "closed", "closed"], "\(result.1)")
        let keptFor = Double(parts.dropLast(3).last ?? "99") ?? 99, allClosedAfter = Double(parts.dropLast(2).last ?? "99") ?? 99
        #expect(keptFor >= 1 && allClosedAfter < 7.5, "closed by the idle timeout (2 s), not at once nor by the client's own 8 s timeout: \(result.1)")
        #expect(parts.suffix(2) == ["stalled", "closed"], "\(result.1)")
        #expect(try daemon.get("/v1/me", as: daemon.gateway).status == 200)
    }

    /// The bodies one principal has on the way at once are bounded (four of the largest a route takes, as declared):
    /// past that it is answered 429 before its body is read, another principal is not held back, and the budget
    /// comes back once those bodies are done with.
    @Test func aPrincipalsBodiesOnTheWayAtOnceAreBounded() async throws {
        let daemon = try await Daemon(environment: ["AMANE_LIMITS_MAX_BODY_BYTES": "65536", "AMANE_LIMITS_MAX_ENVELOPE_BYTES": "65536"])
        defer { daemon.stop(); daemon.removeData() }
        let largest = 65536 / 3 * 4 + 64 * 1024
        let script = """
            import json, socket, ssl, sys, time
            port, ca, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
            gateway, responder, body = sys.argv[4:6], sys.argv[6:8], sys.argv[8].encode()
            def connect(identity):
                context = ssl.create_default_context(cafile=ca)
                context.load_cert_chain(*identity)
                tls = context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
                tls.settimeout(10)
                return tls
            def post(tls, path, length, start, key):
                tls.sendall(("POST %s HTTP/1.1\\r\\nHost: localhost\\r\\nContent-Type: application/json\\r\\n"
                             "Idempotency-Key: budget-test-%s-0000000000000000000000000\\r\\nContent-Length: %d\\r\\n\\r\\n" % (path, key, length)).encode() + start)
            def status(tls):
                answer = b""
                while b"\\r\\n\\r\\n" not in answer:
                    answer += tls.recv(65536)
                head, problem = answer.split(b"\\r\\n\\r\\n", 1)
                length = [int(line.split(b":")[1]) for line in head.split(b"\\r\\n") if line.lower().startswith(b"content-length:")][0]
                while len(problem) < length:
                    problem += tls.recv(65536)
                code = json.loads(problem).get("code") if problem.startswith(b"{") else None
                return head.split(b"\\r\\n")[0].decode() + (" rate_limited" if code == "rate_limited" else "")
            held = [connect(gateway) for _ in range(4)]
            for number, tls in enumerate(held):
                post(tls, "/v1/disclosures", size, b"{", "held-%d" % number)
            time.sleep(2)
            fifth = connect(gateway)
            post(fifth, "/v1/disclosures", len(body), b"", "fifth")
            print("fifth:", status(fifth))
            other = connect(responder)
            filler = b'{"id": "x", "sealed": "' + b"A" * (size - 26) + b'"}'
            post(other, "/v1/disclosures/0190a0a0-0000-7000-8000-000000000000/notes", len(filler), filler, "other")
            print("other:", status(other))
            for tls in held:
                tls.close()
            time.sleep(2)
            after = connect(gateway)
            post(after, "/v1/disclosures", len(body), body, "after")
            print("after:", status(after))
            """
        let body = String(decoding: try JSONSerialization.data(withJSONObject: Demo.body(narrative: "after the budget came back")), as: UTF8.self)
        let (code, output) = try Daemon.run("/usr/bin/env", ["python3", "-c", script, String(daemon.port), daemon.ca, String(largest),
                                                             daemon.gateway.certificate, daemon.gateway.key,
                                                             daemon.responder.certificate, daemon.responder.key, body])
        let lines = output.split(separator: "\n").map(String.init)
        #expect(code == 0 && lines.count == 3, "\(output)")
        #expect(lines.first == "fifth: HTTP/1.1 429 Too Many Requests rate_limited", "even a small body, with four large ones on the way: \(output)")
        #expect(lines.dropFirst().first?.hasPrefix("other: HTTP/1.1 4") == true && lines.dropFirst().first?.contains("429") == false, "\(output)")
        #expect(lines.last == "after: HTTP/1.1 201 Created", "\(output)")
        #expect(try daemon.get("/v1/me", as: daemon.gateway).status == 200)
    }

    /// A body that stops coming is answered 408 with a problem body when the request deadline passes, then closed.
    /// A refusal sent before the body was read (429 past the rate) reaches the client, and the connection serves on: closed
    /// with the body still arriving, the kernel would reset it and the client could lose the answer.
    @Test func aRefusalSentBeforeItsBodyWasReadReachesTheClient() async throws {
        let daemon = try await Daemon(environment: ["AMANE_LIMITS_REQUESTS_PER_MINUTE": "3"])
        defer { daemon.stop(); daemon.removeData() }
        let client = """
            import http.client, json, ssl, sys, uuid
            context = ssl.create_default_context(cafile=sys.argv[2]); context.load_cert_chain(sys.argv[3], sys.argv[4])
            body = json.loads(sys.argv[5]); body["content"]["narrative"] = "x" * 60000
            body = json.dumps(body).encode()
            connection = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[1]), context=context, timeout=20)
            answers, sockets = [], set()
            for _ in range(12):
                try:
                    connection.request("POST", "/v1/disclosures", body=body, headers={"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())})
                    sockets.add(id(connection.sock))
                    response = connection.getresponse(); response.read()
                    answers.append(f"{response.status}{'/close' if response.getheader('Connection') == 'close' else ''}")
                except Exception as error:
                    answers.append(type(error).__name__)
                    connection.close()
            print(" ".join(answers), "connections", len(sockets))
            """
        let (status, output) = try Daemon.run("/usr/bin/env", ["python3", "-c", client, String(daemon.port), daemon.ca, daemon.gateway.certificate,
                                                               daemon.gateway.key, String(decoding: try JSONSerialization.data(withJSONObject: Demo.body(narrative: "x")), as: UTF8.self)])
        let answers = output.split(separator: " ").prefix(12)
        #expect(status == 0 && answers.count == 12 && answers.filter { $0 == "429" }.count >= 8
                && answers.allSatisfy { ["201", "413", "429"].contains($0) } && output.hasSuffix("connections 1\n"), "\(output)")
    }

    @Test func aStalledBodyIsAnswered408() async throws {
        let daemon = try await Daemon(environment: ["AMANE_LIMITS_REQUEST_BODY_SECONDS": "2"])
        defer { daemon.stop(); daemon.removeData() }
        let script = """
            import json, socket, ssl, sys, time
            port = int(sys.argv[1])
            context = ssl.create_default_context(cafile=sys.argv[2]); context.load_cert_chain(sys.argv[3], sys.argv[4])
            tls = context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost"); tls.settimeout(10)
            stalled = (b"POST /v1/disclosures HTTP/1.1\\r\\nHost: localhost\\r\\nContent-Type: application/json\\r\\n"
                       b"Idempotency-Key: stalled-body-0123456789abcdef01234567\\r\\nContent-Length: 1000\\r\\n\\r\\n{\\"narrative\\": \\"")
            def answer(sock):
                data = b""
                try:
                    while True:
                        chunk = sock.recv(4096)
                        if not chunk: break
                        data += chunk
                except (OSError, ssl.SSLError):
                    pass
                return data.decode("utf-8", "replace")
            tls.sendall(stalled)
            start = time.time()
            alone = answer(tls)
            seconds = round(time.time() - start, 1)
            # Behind a complete request on the same connection: that one is answered, then the stalled one gets its 408.
            pipelined = context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost"); pipelined.settimeout(10)
            pipelined.sendall(b"GET /v1/me HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n" + stalled)
            print(json.dumps({"seconds": seconds, "answer": alone, "pipelined": answer(pipelined)}))
            """
        let result = try Daemon.run("/usr/bin/env", ["python3", "-c", script, String(daemon.port), daemon.ca, daemon.gateway.certificate, daemon.gateway.key])
        #expect(result.0 == 0, "\(result.1)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(result.1.utf8)) as? [String: Any], "\(result.1)")
        let answer = try #require(report["answer"] as? String)
        let (head, body) = (answer.components(separatedBy: "\r\n\r\n").first ?? "", answer.components(separatedBy: "\r\n\r\n").dropFirst().joined())
        #expect(head.hasPrefix("HTTP/1.1 408"), "\(answer)")
        #expect(head.lowercased().contains("content-type: application/problem+json") && head.lowercased().contains("connection: close"), "\(head)")
        let problem = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any], "\(answer)")
        #expect(problem["status"] as? Int == 408 && problem["code"] as? String == "request_timeout", "\(problem)")
        #expect((problem["detail"] as? String ?? "").contains("2 s"), "\(problem)")
        let seconds = try #require(report["seconds"] as? Double)
        #expect(seconds >= 1.5 && seconds < 8, "answered at the 2 s request deadline, then closed: \(seconds) s")
        let pipelined = try #require(report["pipelined"] as? String)
        let statuses = pipelined.matches(of: #/HTTP/1\.1 (\d{3}) /#).map { String($0.output.1) }
        #expect(statuses == ["200", "408"], "\(pipelined)")
        let metrics = try Daemon.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(daemon.opsPort)/metrics"]).1
        #expect(metrics.contains("amane_requests_timed_out_total 2"), "\(metrics)")
        #expect(!metrics.contains("status=\"500\""), "a body cut off is the client's fault, not the relay's: \(metrics)")
        func timeoutLines() -> [Substring] {
            daemon.stderr.value.split(separator: "\n").filter { $0.hasSuffix("[RelayServer] a request's body did not arrive in time; the connection is closed") }
        }
        _ = try await eventually(within: 5) { timeoutLines().count >= 2 }
        let logged = timeoutLines()
        #expect(logged.count == 2 && logged.allSatisfy { $0.contains("relay.method=POST") && $0.contains("relay.status=408") && !$0.contains("127.0.0.1") },
                "the log says so, without the client's address: \(logged)")
        let queue = try daemon.get("/v1/queue", as: daemon.responder).json["cases"] as? [[String: Any]]
        #expect(queue?.isEmpty == true, "nothing of the cut-off request was stored")
        #expect(try daemon.get("/v1/me", as: daemon.gateway).status == 200, "the daemon keeps serving")
        #expect(!(try await daemon.stoppedLog()).contains("request failed"), "\(daemon.stderr.value)")
    }

    /// The data directory on a 4 MiB tmpfs: intake fills it, answers 503, loses nothing acknowledged, and resumes when space returns.
    @Test func aFullDiskAnswers503AndRecovers() async throws {
        let disk = try Tmpfs(megabytes: 4)
        defer { disk.remove() }
        // Filling the disk takes more than the per-gateway rate allows in a minute: that limit is not under test here.
        let daemon = try await Daemon(directory: disk.path + "/data", environment: ["AMANE_LIMITS_REQUESTS_PER_MINUTE": "100000000"])
        defer { daemon.stop() }
        let filler = String(repeating: "يكتب ", count: 3000)
        var acknowledged: [String] = []
        var refusals: [HTTPResult] = []
        for _ in 0..<400 {
            let result = try daemon.post("/v1/disclosures", as: daemon.gateway, json: Demo.body(narrative: filler), headers: ["Idempotency-Key": Demo.key()])
            if result.status == 201 { acknowledged.append(result.json["id"] as! String) } else { refusals.append(result) }
            if refusals.count >= 3 { break }
        }
        #expect(refusals.count >= 3 && refusals.allSatisfy { $0.status == 503 }, "\(refusals.map(\.text))")
        #expect(refusals.allSatisfy { ($0.json["detail"] as? String ?? "").contains("nothing was stored") })
        #expect(acknowledged.count > 10)

        // Started again on the full disk, it says so before any client writes: readiness, metric and log.
        daemon.stop()
        let restarted = try await daemon.restarted()
        defer { restarted.stop() }
        let readyz = "http://127.0.0.1:\(restarted.opsPort)/readyz"
        #expect(try await eventually { restarted.stderr.value.contains("the data directory's disk is nearly full") }, "said at start: \(restarted.stderr.value)")
        let notReady = try Daemon.run("/usr/bin/curl", ["-s", "-w", " %{http_code}", readyz]).1
        #expect(notReady.contains(#/^not ready: the disk of the data directory has \d+ KiB free, less than two of the largest submissions the limits allow \(16 MiB\)/#)
                && notReady.hasSuffix(" 503"), "\(notReady)")
        let freeBytes = try Daemon.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(restarted.opsPort)/metrics"]).1
            .split(separator: "\n").first { $0.hasPrefix("amane_store_disk_free_bytes ") }?.split(separator: " ").last.flatMap { Double($0) }
        #expect(freeBytes.map { $0 < 1_048_576 } == true, "\(String(describing: freeBytes))")

        #expect(try disk.grow(toMegabytes: 64))
        #expect(try Daemon.run("/usr/bin/curl", ["-s", readyz]).1 == "ready\n")
        let after = try restarted.post("/v1/disclosures", as: daemon.gateway, json: Demo.body(narrative: "space is back"), headers: ["Idempotency-Key": Demo.key()])
        #expect(after.status == 201)
        var stored: Set<String> = []
        var cursor: String?
        repeat {
            let page = try restarted.get("/v1/queue?limit=500" + (cursor.map { "&cursor=\($0)" } ?? ""), as: daemon.responder).json
            stored.formUnion((page["cases"] as! [[String: Any]]).map { $0["id"] as! String })
            cursor = page["next"] as? String
        } while cursor != nil
        #expect(Set(acknowledged).isSubset(of: stored), "every acknowledged disclosure survived")
        #expect(stored.count == acknowledged.count + 1, "nothing unacknowledged was stored")
    }

    /// A restore onto a full disk says so in words, and leaves the database and the disk as they were.
    @Test func aRestoreOntoAFullDiskSaysSoAndChangesNothing() async throws {
        let disk = try Tmpfs(megabytes: 4)
        defer { disk.remove() }
        let daemon = try await Daemon(directory: disk.path + "/data")
        defer { daemon.stop() }
        let backups = FileManager.default.temporaryDirectory.appendingPathComponent("amane-backups-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: backups) }
        #expect(try daemon.admin(["backup", "--to", backups]).0 == 0)
        let copy = backups + "/" + (try #require(FileManager.default.contentsOfDirectory(atPath: backups).first { $0.hasPrefix("relay-") }))
        daemon.stop()
        _ = try Daemon.run("/bin/dd", ["if=/dev/zero", "of=\(disk.path)/filler", "bs=64k"])
        let before = try Data(contentsOf: URL(fileURLWithPath: daemon.directory + "/relay.sqlite"))
        let (status, output) = try daemon.admin(["restore", copy])
        #expect(status == 1 && output.contains("cannot copy \(copy) into \(daemon.directory) to check it: no space left on the disk; nothing was restored")
                && !output.contains("NSCocoaErrorDomain"), "\(output)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: daemon.directory + "/relay.sqlite")) == before)
        #expect(try FileManager.default.contentsOfDirectory(atPath: daemon.directory).allSatisfy { !$0.hasPrefix(".restore-") && !$0.hasPrefix("replaced-") })
    }
}
}
