import Foundation
import RelayStore
import RelayTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Faults under real load: `amane-relay-bench load` posts over 64 mutual-TLS keep-alive connections and
/// journals every request it sends, every acknowledgement and every failure; the journal is the truth the
/// store is checked against.
extension DaemonSuite {
@Suite struct FaultInjectionTests {
    static let unlimited = ["AMANE_LIMITS_REQUESTS_PER_MINUTE": "100000000"]

    static func scratch(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString)").path
    }

    static func storedIDs(_ daemon: Daemon) async throws -> Set<String> {
        let db = try RelayDatabase(directory: daemon.directory)
        defer { try? db.close() }
        return try await db.disclosureIDs()
    }

    @Test func killedFiveTimesUnderLoadThenRetriedLosesAndDuplicatesNothing() async throws {
        var daemon = try await Daemon(environment: Self.unlimited)
        defer { daemon.stop(); daemon.removeData() }
        let journal = Self.scratch("kill-journal")
        defer { try? FileManager.default.removeItem(atPath: journal) }
        var acknowledgedBefore = 0
        for _ in 1...5 {
            let load = try LoadRun(against: daemon, connections: 64, seconds: 60, journal: journal)
            try await load.waitForAcknowledgements(acknowledgedBefore + 64)
            try await Task.sleep(for: .milliseconds(Int.random(in: 0...300)))
            daemon.signal(SIGKILL)
            load.kill()
            daemon.stop(SIGKILL)
            acknowledgedBefore = load.entries.acknowledged.count
            daemon = try await daemon.restarted()
        }
        let entries = LoadJournal(path: journal)
        let replay = try daemon.replay(journal: journal)
        #expect(replay.status == 0, "every retry answered 201 with the id first acknowledged: \(replay.summary)")
        #expect(replay.summary["changedIDs"] as? Int == 0)
        daemon.stop()

        let stored = try await Self.storedIDs(daemon)
        let acknowledged = Set(entries.acknowledged.values)
        #expect(acknowledged.count == entries.acknowledged.count, "no two keys were acknowledged with one id")
        #expect(acknowledged.isSubset(of: stored), "\(acknowledged.subtracting(stored).count) acknowledged disclosures were lost")
        #expect(stored.count == entries.sent.count, "one disclosure per idempotency key: \(stored.count) stored for \(entries.sent.count) keys")
        let replayed = Set(replay.summary["ids"] as? [String] ?? [])
        #expect(replayed == stored, "\(replayed.subtracting(stored).count) replayed ids not stored, \(stored.subtracting(replayed).count) stored ids not replayed")
        #expect(entries.acknowledged.count >= 5 * 64)
        let verify = try daemon.admin(["admin", "audit", "verify"])
        #expect(verify.0 == 0 && verify.1.contains("intact"), "\(verify.1)")
        print("fault kill -9 ×5 at 64 connections: \(entries.sent.count) keys sent, \(entries.acknowledged.count) acknowledged before the kills, "
              + "\(stored.count) stored after the retries, \(acknowledged.subtracting(stored).count) lost")
    }

    @Test func sigtermUnderLoadStoresEveryAnsweredRequestAndRefusesTheRest() async throws {
        let daemon = try await Daemon(environment: Self.unlimited)
        defer { daemon.removeData() }
        let journal = Self.scratch("sigterm-journal")
        defer { try? FileManager.default.removeItem(atPath: journal) }
        let load = try LoadRun(against: daemon, connections: 64, seconds: 60, journal: journal, extra: ["--stop-after-errors", "64"])
        try await load.waitForAcknowledgements(200)
        daemon.signal(SIGTERM)
        #expect(daemon.stop() == 0)
        let run = load.finish()
        #expect(run.status == 0, "\(run.summary)")

        let entries = load.entries
        let stored = try await Self.storedIDs(daemon)
        #expect(Set(entries.acknowledged.values).isSubset(of: stored), "an answered request was lost")
        let unexpected = entries.failures.filter { kind, _ in kind.hasPrefix("HTTP") && kind != "HTTP 503" }
        #expect(unexpected.isEmpty, "only refusals (503) or no answer at all: \(entries.failures)")
        #expect(!entries.failures.isEmpty, "the daemon stopped while requests were coming")
        print("fault SIGTERM at 64 connections: \(entries.acknowledged.count) answered 201, all stored; failures \(entries.failures)")
    }

    /// The data directory on a 4 MiB tmpfs under 16 connections of load: once full, every answer is 503 and
    /// nothing was stored for it; what was acknowledged stays; intake resumes when space returns.
    @Test func aDiskFillingUnderLoadAnswers503LosesNothingAndRecovers() async throws {
        let disk = try Tmpfs(megabytes: 4)
        defer { disk.remove() }
        let daemon = try await Daemon(directory: disk.path + "/data", environment: Self.unlimited)
        defer { daemon.stop() }
        let journal = Self.scratch("full-journal")
        defer { try? FileManager.default.removeItem(atPath: journal) }
        let load = try LoadRun(against: daemon, connections: 16, seconds: 90, journal: journal, extra: ["--stop-after-errors", "50"])
        let run = load.finish()
        #expect(run.status == 0, "\(run.summary)")
        let entries = load.entries
        #expect(entries.failures.keys.sorted() == ["HTTP 503"], "a full disk answers 503 and nothing else: \(entries.failures)")
        #expect(entries.acknowledged.count > 50)
        // Ops hear it: readiness fails with the cause, and the log says so at each change (a disk at its brim lets a few writes through).
        let readyz = "http://127.0.0.1:\(daemon.opsPort)/readyz"
        let full = try Daemon.run("/usr/bin/curl", ["-s", "-w", " %{http_code}", readyz]).1
        #expect(full == "not ready: the store cannot write (unavailable: the disk is full)\n 503", "\(full)")
        func said(_ text: String) -> Int { daemon.stderr.value.components(separatedBy: text).count - 1 }
        #expect(said("the store cannot write") >= 1 && said("the store cannot write") == said("the store writes again") + 1, "\(daemon.stderr.value)")

        #expect(try disk.grow(toMegabytes: 64))
        #expect(try Daemon.run("/usr/bin/curl", ["-s", readyz]).1 == "ready\n", "ready again once space returns, before any client writes")
        #expect(try await eventually { daemon.stderr.value.contains("the store writes again") })
        let after = try daemon.post("/v1/disclosures", as: daemon.gateway, json: Demo.body(narrative: "space is back"), headers: ["Idempotency-Key": Demo.key()])
        #expect(after.status == 201, "intake resumes once space returns")
        daemon.stop()
        let stored = try await Self.storedIDs(daemon)
        #expect(Set(entries.acknowledged.values).isSubset(of: stored), "every acknowledged disclosure survived")
        #expect(stored.count == entries.acknowledged.count + 1, "nothing refused was stored")
        print("fault full disk at 16 connections: \(entries.acknowledged.count) acknowledged and stored, failures \(entries.failures)")
    }

    /// 1,000 idle connections, half-open TLS handshakes, clients sending a byte a second, and a client that
    /// pipelines requests and never reads: a well-behaved gateway is still served, and memory stays bounded.
    @Test func abusiveClientsDoNotStarveAWellBehavedGateway() async throws {
        // A soft limit of 1,024 open files, as systemd gives services: the daemon raises it itself.
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        var low = limit
        low.rlim_cur = min(1024, limit.rlim_max)
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &low)
        let daemon: Daemon
        do {
            daemon = try await Daemon(environment: Self.unlimited.merging(["AMANE_LIMITS_REQUEST_BODY_SECONDS": "3",
                                                                    "AMANE_LIMITS_IDLE_TIMEOUT_SECONDS": "120"]) { $1 })
        } catch {
            setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            throw error
        }
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        defer { daemon.stop(); daemon.removeData() }
        let limits = try String(contentsOfFile: "/proc/\(daemon.process.processIdentifier)/limits", encoding: .utf8)
        let openFiles = limits.split(separator: "\n").first { $0.hasPrefix("Max open files") }?.split(separator: " ", omittingEmptySubsequences: true)
        #expect(openFiles.map { $0[3] == $0[4] } == true, "the daemon raised its soft open-file limit to the hard one: \(openFiles ?? [])")
        let cores = limits.split(separator: "\n").first { $0.hasPrefix("Max core file size") }?.split(separator: " ", omittingEmptySubsequences: true)
        #expect(cores.map { $0[4] == "0" && $0[5] == "0" } == true, "the daemon allows no core dump: \(cores ?? [])")
        let journal = Self.scratch("abuse-journal")
        defer { try? FileManager.default.removeItem(atPath: journal) }

        let quiet = try LoadRun(against: daemon, connections: 1, seconds: 3, journal: journal).finish()
        try #require(quiet.status == 0, "\(quiet.summary)")
        let quietP99 = try #require(quiet.summary["p99Milliseconds"] as? Double)
        let residentBefore = daemon.residentBytes()
        daemon.resetPeakResident()
        let descriptorsBefore = daemon.openDescriptors

        let abuse = Process()
        abuse.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        abuse.arguments = ["python3", "-c", Self.abuseScript, String(daemon.port), daemon.ca, daemon.gateway.certificate, daemon.gateway.key]
        let abuseInput = Pipe(), abuseOutput = Pipe()
        let report = OutputBuffer()
        abuse.standardInput = abuseInput
        abuse.standardOutput = abuseOutput
        abuse.standardError = abuseOutput
        abuseOutput.fileHandleForReading.collect(into: report)
        try abuse.run()
        defer { if abuse.isRunning { abuse.terminate() } }
        let ready = ContinuousClock.now + .seconds(60)
        while !report.value.contains("ready") && abuse.isRunning && ContinuousClock.now < ready { try await Task.sleep(for: .milliseconds(50)) }
        try #require(report.value.contains("ready"), "\(report.value)")
        // The slow clients are cut off 3 s after their request head, so count from "ready" on and keep the most.
        var descriptorsDuring = 0
        _ = try await eventually(within: 10) {
            descriptorsDuring = max(descriptorsDuring, daemon.openDescriptors)
            return descriptorsDuring - descriptorsBefore >= 1000 + 50 + 5 + 1
        }

        let busy = try LoadRun(against: daemon, connections: 1, seconds: 3, journal: journal).finish()
        let peakDuring = daemon.residentBytes("VmHWM")
        abuseInput.fileHandleForWriting.write(Data("stop\n".utf8))
        abuse.waitUntilExit()
        abuseOutput.fileHandleForReading.readabilityHandler = nil
        report.append(abuseOutput.fileHandleForReading.readDataToEndOfFile())

        let abuseFigures = (try? JSONSerialization.jsonObject(with: Data((report.value.split(separator: "\n").last ?? "").utf8))) as? [String: Any] ?? [:]
        #expect(descriptorsDuring - descriptorsBefore >= 1000 + 50 + 5 + 1,
                "the daemon accepted every abusive connection: \(descriptorsBefore) descriptors before, \(descriptorsDuring) during")
        #expect(abuseFigures["idleStillOpen"] as? Int == 1000, "idle connections stay within the idle timeout: \(report.value)")
        #expect((abuseFigures["pipelinedSent"] as? Int ?? 0) > 1_000_000, "the greedy client kept sending while never reading: \(report.value)")
        let slowClosed = abuseFigures["slowClosedAfterSeconds"] as? [Double] ?? []
        // 3 s to the request deadline, then up to 5 s for the TLS close_notify the client never answers.
        #expect(slowClosed.count == 5 && slowClosed.allSatisfy { $0 < 15 }, "a byte-a-second body is cut off by the request deadline: \(report.value)")

        try #require(busy.status == 0, "\(busy.summary)")
        let busyP99 = try #require(busy.summary["p99Milliseconds"] as? Double)
        #expect((busy.summary["errors"] as? [String: Int])?.isEmpty == true, "\(busy.summary)")
        #expect((busy.summary["acknowledged"] as? Int ?? 0) > 30, "\(busy.summary)")
        // Other suites run beside this one, so the bound catches starvation, not noise.
        #expect(busyP99 < max(100, 5 * quietP99), "p99 \(busyP99) ms under abuse, \(quietP99) ms before")
        #expect(peakDuring - residentBefore < 96 * 1_048_576, "resident memory peaked \((peakDuring - residentBefore) / 1_048_576) MiB above its level before the abuse")
        #expect(try daemon.get("/v1/me", as: daemon.gateway).status == 200)
        print("fault abuse: p99 \(busyP99) ms under abuse vs \(quietP99) ms before; peak resident +\((peakDuring - residentBefore) / 1_048_576) MiB; "
              + "\(descriptorsDuring - descriptorsBefore) more descriptors; \(report.value.split(separator: "\n").last ?? "")")
    }

    static let abuseScript = """
        import json, resource, socket, ssl, sys, threading, time
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        port, ca, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
        def tls():
            context = ssl.create_default_context(cafile=ca)
            context.load_cert_chain(cert, key)
            return context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(1000)]
        half_open = []
        for _ in range(50):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]))  # a ClientHello cut short
            half_open.append(s)
        closed_after = []
        def slow():
            s = tls()
            s.sendall(b"POST /v1/disclosures HTTP/1.1\\r\\nHost: localhost\\r\\nContent-Type: application/json\\r\\n"
                      b"Idempotency-Key: slowloris-0123456789abcdef0123456789\\r\\nContent-Length: 1000\\r\\n\\r\\n")
            start = time.time()
            try:
                while time.time() - start < 30:
                    s.sendall(b" ")
                    time.sleep(1)
            except OSError:
                pass
            closed_after.append(round(time.time() - start, 1))
        slow_threads = [threading.Thread(target=slow) for _ in range(5)]
        for t in slow_threads: t.start()
        stop = threading.Event()
        sent = [0]
        def greedy():
            g = tls()
            g.setblocking(False)
            request = b"GET /v1/openapi.yaml HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n" * 20
            while not stop.is_set():
                try:
                    sent[0] += g.send(request)
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                    time.sleep(0.05)
        greedy_thread = threading.Thread(target=greedy)
        greedy_thread.start()
        time.sleep(1)
        print("ready", flush=True)
        sys.stdin.readline()
        stop.set()
        greedy_thread.join()
        still_open = 0
        for s in idle:
            s.setblocking(False)
            try:
                still_open += 0 if s.recv(1) == b"" else 1
            except BlockingIOError:
                still_open += 1
            except OSError:
                pass
        for t in slow_threads: t.join()
        print(json.dumps({"idleStillOpen": still_open, "halfOpenHandshakes": len(half_open),
                          "pipelinedSent": sent[0], "slowClosedAfterSeconds": sorted(closed_after)}), flush=True)
        """
}
}
