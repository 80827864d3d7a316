import Foundation
import RelayAPI
import RelayCore
import RelayFormat
@testable import RelayServer
import RelayStore
import RelayTestSupport
import SwiftASN1
import Testing
import X509
#if canImport(Glibc)
import Glibc
#endif

/// Plays systemd's part: a datagram socket that records what the daemon notifies.
final class NotifySocket: @unchecked Sendable {
    let path: String
    private let fd: Int32

    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("notify-\(UUID().uuidString.prefix(8))").path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8) + [0]) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        precondition(bound == 0, "cannot bind \(path)")
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Messages received until `enough` holds for them, or `seconds` pass.
    func receive(for seconds: Double, until enough: ([String]) -> Bool) -> [String] {
        var messages: [String] = []
        let deadline = Date().addingTimeInterval(seconds)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while Date() < deadline, !enough(messages) {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count > 0 { messages.append(String(decoding: buffer[0..<count], as: UTF8.self)) }
        }
        return messages
    }

    deinit {
        close(fd)
        unlink(path)
    }
}

extension DaemonSuite {
@Suite struct LifecycleTests {
    @Test func systemdHearsReadyWatchdogAndStoppingAndSIGTERMExitsZero() async throws {
        let notify = try NotifySocket()
        let daemon = try await Daemon(environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "600000"])
        defer { daemon.removeData() }
        // A reload sent as soon as the relay listens (systemctl reload right after start) reloads; it does not kill it.
        daemon.signal(SIGHUP)
        let early = notify.receive(for: 20) { $0.filter { $0 == "WATCHDOG=1" }.count >= 2 }
        #expect(early.first?.contains("READY=1") == true, "\(early)")
        // READY=1 only once both listeners are up: systemd starts what depends on the relay when it hears it.
        #expect(try await eventually { daemon.stderr.value.contains("notified systemd: ready") }, "\(daemon.stderr.value)")
        let log = daemon.stderr.value
        let listening = log.range(of: "[RelayServer] listening"), ready = log.range(of: "notified systemd: ready")
        #expect(listening != nil && ready != nil && listening!.lowerBound < ready!.lowerBound, "\(log)")
        #expect(try await eventually { daemon.stderr.value.contains("reloaded the TLS certificate and key") }, "\(daemon.stderr.value)")
        #expect(early.filter { $0 == "WATCHDOG=1" }.count >= 2, "\(early)")
        daemon.signal(SIGTERM)
        let late = notify.receive(for: 20) { $0.contains("STOPPING=1") }
        #expect(late.contains("STOPPING=1"), "\(late)")
        #expect(daemon.stop() == 0)
    }

    @Test func sighupReloadsTheCertificateWithoutDroppingConnections() async throws {
        let daemon = try await Daemon()
        defer { daemon.stop(); daemon.removeData() }
        let before = try servedSerial(daemon)
        let (open, input, received) = try daemon.openConnection(as: daemon.gateway)
        defer { open.terminate() }
        let request = Data("GET /v1/me HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8)
        input.fileHandleForWriting.write(request)
        #expect(try await eventually { received.value.contains("HTTP/1.1 200") }, "\(received.value)")
        func reloads() -> Int { daemon.stderr.value.components(separatedBy: "reloaded the TLS certificate").count - 1 }
        func servedMatchesFile() throws -> Bool {
            let file = try Daemon.run("/usr/bin/openssl", ["x509", "-noout", "-serial", "-in", daemon.directory + "/pki/server-cert.pem"]).1
            return try servedSerial(daemon) == file.trimmingCharacters(in: .whitespacesAndNewlines)
        }

        // Renewed from the CA for the key the daemon holds: a reload serves it.
        let (status, renewal) = try daemon.admin(["admin", "renew-server-cert", "--hostname", "localhost", "--hostname", "127.0.0.1", "--hostname", "::1"])
        #expect(status == 0 && renewal.contains("systemctl reload"), "\(renewal)")
        daemon.signal(SIGHUP)
        #expect(try await eventually { reloads() == 1 }, "\(daemon.stderr.value)")
        let renewed = try servedSerial(daemon)
        #expect(renewed != before)
        #expect(try servedMatchesFile())
        let verify = try Daemon.run("/usr/bin/openssl", ["verify", "-CAfile", daemon.ca, daemon.directory + "/pki/server-cert.pem"])
        #expect(verify.0 == 0, "\(verify.1)")
        #expect(try daemon.get("/v1/me", as: daemon.gateway).status == 200)

        // A file that holds no certificate is named; the renewed one stays in service.
        let certificateFile = daemon.directory + "/pki/server-cert.pem"
        try "not a certificate\n".write(toFile: certificateFile, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        #expect(try await eventually { daemon.stderr.value.contains("no PEM certificate in \(certificateFile)") }, "\(daemon.stderr.value)")
        #expect(reloads() == 1)
        #expect(try servedSerial(daemon) == renewed)

        // A certificate for another key would fail every handshake: the reload refuses it and keeps the renewed one.
        let ca = try CertificateAuthority(certificatePEM: String(contentsOfFile: daemon.ca, encoding: .utf8),
                                          keyPEM: String(contentsOfFile: daemon.directory + "/pki/ca-key.pem", encoding: .utf8))
        let fresh = try ca.issue(commonName: "localhost", usage: .server(hostnames: ["localhost", "127.0.0.1", "::1"]))
        try fresh.certificate.write(toFile: daemon.directory + "/pki/server-cert.pem", atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        #expect(try await eventually { daemon.stderr.value.contains("is not for the relay's private key (from \(daemon.directory)/pki/server-key.pem)") },
                "\(daemon.stderr.value)")
        #expect(reloads() == 1)
        #expect(try servedSerial(daemon) == renewed)
        #expect(try daemon.get("/v1/me", as: daemon.gateway).status == 200)

        // Its key in place too (the key file, as in development), but readable by all: refused, the renewed pair stays.
        let keyFile = daemon.directory + "/pki/server-key.pem"
        try fresh.key.write(toFile: keyFile, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: keyFile)
        daemon.signal(SIGHUP)
        #expect(try await eventually { daemon.stderr.value.contains("open to other users") }, "\(daemon.stderr.value)")
        #expect(reloads() == 1)
        #expect(try servedSerial(daemon) == renewed)
        // Made private, the next reload serves both.
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: keyFile)
        daemon.signal(SIGHUP)
        #expect(try await eventually { reloads() == 2 }, "\(daemon.stderr.value)")
        #expect(try servedSerial(daemon) != renewed)
        #expect(try servedMatchesFile())
        #expect(try daemon.get("/v1/me", as: daemon.gateway).status == 200)
        input.fileHandleForWriting.write(request)
        #expect(try await eventually { received.value.components(separatedBy: "HTTP/1.1 200").count == 3 },
                "the connection opened before the reloads still serves")
    }

    /// A certificate near its end is told at reload, in the metric and by check-config; an expired one is an error.
    @Test func aCertificateNearItsEndOrPastItIsToldToOps() async throws {
        let daemon = try await Daemon()
        defer { daemon.stop(); daemon.removeData() }
        let ca = try CertificateAuthority(certificatePEM: String(contentsOfFile: daemon.ca, encoding: .utf8),
                                          keyPEM: String(contentsOfFile: daemon.directory + "/pki/ca-key.pem", encoding: .utf8))
        let serverKey = try Certificate.PrivateKey(pemEncoded: String(contentsOfFile: daemon.directory + "/pki/server-key.pem", encoding: .utf8))
        func expiryMetric() throws -> Double? {
            let metrics = try Daemon.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(daemon.opsPort)/metrics"]).1
            return metrics.split(separator: "\n").first { $0.hasPrefix("amane_tls_certificate_expiry_timestamp_seconds ") }
                .flatMap { Double($0.split(separator: " ")[1]) }
        }
        #expect(try expiryMetric() ?? 0 > Date().addingTimeInterval(300 * 86_400).timeIntervalSince1970)
        #expect(!daemon.stderr.value.contains("the TLS certificate expire"))

        let hostnames = ["localhost", "127.0.0.1", "::1"]
        let soon = try ca.issue(commonName: "localhost", usage: .server(hostnames: hostnames), for: serverKey.publicKey, validity: 10 * 86_400 - 3_600)
        try soon.write(toFile: daemon.directory + "/pki/server-cert.pem", atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        // Waits for the whole line: the log reaches the test in chunks.
        #expect(try await eventually { daemon.stderr.value.contains("in 9 days; renew it with `amane-relayd admin renew-server-cert`, then reload") },
                "\(daemon.stderr.value)")
        #expect(daemon.stderr.value.contains("the TLS certificate expires on"))
        #expect(abs((try expiryMetric() ?? 0) - Date().addingTimeInterval(10 * 86_400 - 3_600).timeIntervalSince1970) < 600)
        let (soonStatus, soonOutput) = try daemon.admin(["check-config"])
        #expect(soonStatus == 0 && soonOutput.contains("Warning: the TLS certificate expires on") && soonOutput.contains("valid until"), "\(soonOutput)")
        // A data directory others may enter is told too: tmpfiles and init make it private, a later chmod may not.
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: daemon.directory)
        let (openStatus, openOutput) = try daemon.admin(["check-config"])
        #expect(openStatus == 0 && openOutput.contains("Warning: the data directory \(daemon.directory) is open to other users (mode 755); run chmod 700"),
                "\(openOutput)")
        try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: daemon.directory)

        let expired = try ca.issue(commonName: "localhost", usage: .server(hostnames: hostnames), for: serverKey.publicKey,
                                   now: Date().addingTimeInterval(-60 * 86_400), validity: 30 * 86_400)
        try expired.write(toFile: daemon.directory + "/pki/server-cert.pem", atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        #expect(try await eventually { daemon.stderr.value.contains("the TLS certificate expired on") }, "\(daemon.stderr.value)")
        let (expiredStatus, expiredOutput) = try daemon.admin(["check-config"])
        #expect(expiredStatus == 78 && expiredOutput.contains("the TLS certificate expired on") && !expiredOutput.contains("Configuration is valid"),
                "\(expiredOutput)")
    }

    /// A CA near its end is told at start, in the metric and by check-config, and what it issues ends with it. Renewed
    /// for the same key, every certificate it issued stays trusted, whether a client holds the old CA file or the new.
    @Test func aCANearItsEndIsToldAndRenewedForTheSameKey() async throws {
        var daemon = try await Daemon()
        defer { daemon.stop(); daemon.removeData() }
        let ca = try CertificateAuthority(certificatePEM: String(contentsOfFile: daemon.ca, encoding: .utf8),
                                          keyPEM: String(contentsOfFile: daemon.directory + "/pki/ca-key.pem", encoding: .utf8))
        let ending = try ca.renewed(validity: 100 * 86_400)
        let endDay = String(Timestamp.iso8601(Int64(ending.certificate.notValidAfter.timeIntervalSince1970)).prefix(10))
        try ending.certificatePEM.write(toFile: daemon.ca, atomically: true, encoding: .utf8)
        let oldCA = daemon.directory + "-old-ca.pem"
        defer { try? FileManager.default.removeItem(atPath: oldCA) }
        try FileManager.default.copyItem(atPath: daemon.ca, toPath: oldCA)
        daemon.stop()
        daemon = try await daemon.restarted()
        // 99 or 100 days: the certificate keeps whole seconds.
        #expect(try await eventually { daemon.stderr.value.contains(#/the relay's CA certificate ends on \d{4}-\d\d-\d\d, in (99|100) days; renew it with `amane-relayd admin renew-ca`/#) },
                "\(daemon.stderr.value)")
        #expect(daemon.stderr.value.contains("ends on \(endDay)"))
        let metrics = try Daemon.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(daemon.opsPort)/metrics"]).1
        let caExpiry = metrics.split(separator: "\n").first { $0.hasPrefix("amane_tls_ca_expiry_timestamp_seconds ") }.flatMap { Double($0.split(separator: " ")[1]) }
        #expect(caExpiry == ending.certificate.notValidAfter.timeIntervalSince1970.rounded(.down), "\(String(describing: caExpiry))")
        let (soonStatus, soon) = try daemon.admin(["check-config"])
        #expect(soonStatus == 0 && soon.contains("Warning: the relay's CA certificate ends on \(endDay)"), "\(soon)")

        let handover = daemon.directory + "/handover-late"
        let (lateStatus, late) = try daemon.admin(["admin", "enroll-gateway", "kiosk-late", "--sealing-key", SealingPrivateKey.generate().publicKey.text, "--out", handover])
        #expect(lateStatus == 0 && late.contains("Warning: the certificate ends after the relay's CA (\(endDay)); renew the CA before then"), "\(late)")
        let lateCertificate = try Certificate(pemEncoded: String(contentsOfFile: handover + "/kiosk-late-cert.pem", encoding: .utf8))
        #expect(lateCertificate.notValidAfter > Date().addingTimeInterval(700 * 86_400), "its full term: the renewed CA keeps it trusted")

        let (renewStatus, renewed) = try daemon.admin(["admin", "renew-ca"])
        let newCA = try Certificate(pemEncoded: String(contentsOfFile: daemon.ca, encoding: .utf8))
        #expect(renewStatus == 0 && renewed.contains("the one it replaces ends on \(endDay)") && renewed.contains("systemctl restart amane-relayd"), "\(renewed)")
        #expect(newCA.publicKey == ca.certificate.publicKey && newCA.subject == ca.certificate.subject
                && newCA.notValidAfter > Date().addingTimeInterval(9 * 365 * 86_400), "the same key and name, for ten more years")
        let (checkedStatus, checked) = try daemon.admin(["check-config"])
        #expect(checkedStatus == 0 && !checked.contains("CA certificate ends"), "\(checked)")
        // The handover folder's copy of the CA, from before, is brought up to date by the next enrolment into it.
        let (nextStatus, next) = try daemon.admin(["admin", "enroll-gateway", "kiosk-next", "--sealing-key", SealingPrivateKey.generate().publicKey.text, "--out", handover])
        #expect(nextStatus == 0 && next.contains("the renewed one") && !next.contains("Warning"), "\(next)")
        #expect(try String(contentsOfFile: handover + "/ca-cert.pem", encoding: .utf8) == String(contentsOfFile: daemon.ca, encoding: .utf8))
        daemon.stop()
        daemon = try await daemon.restarted()
        for (caFile, identity) in [(oldCA, daemon.gateway), (daemon.ca, daemon.gateway),
                                   (daemon.ca, ClientIdentity(certificate: handover + "/kiosk-late-cert.pem", key: handover + "/kiosk-late-key.pem"))] {
            let status = try Daemon.run("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", caFile, "--cert", identity.certificate,
                                                          "--key", identity.key, daemon.url + "/v1/me"]).1
            #expect(status == "200", "\(caFile) and \(identity.certificate): \(status)")
        }
        #expect(!(try await daemon.stoppedLog()).contains("CA certificate ends"), "\(daemon.stderr.value)")

        // Ended, the CA is a configuration the relay refuses to check as valid.
        try ca.renewed(now: Date().addingTimeInterval(-20 * 86_400), validity: 10 * 86_400).certificatePEM.write(toFile: daemon.ca, atomically: true, encoding: .utf8)
        let (endedStatus, ended) = try daemon.admin(["check-config"])
        #expect(endedStatus == 78 && ended.contains("the relay's CA certificate ended on") && !ended.contains("Configuration is valid"), "\(ended)")
        let (refusedStatus, refused) = try daemon.admin(["admin", "enroll-gateway", "kiosk-after", "--sealing-key", SealingPrivateKey.generate().publicKey.text,
                                                         "--out", daemon.directory + "/handover-after"])
        #expect(refusedStatus == 1 && refused.contains("nothing it issues is trusted: renew it first")
                && !FileManager.default.fileExists(atPath: daemon.directory + "/handover-after"), "\(refused)")
    }

    /// A restore waits for the relay to stop, checks the copy first, and keeps the database it replaces.
    @Test func aRestoreIsRefusedWhileServingAndKeepsWhatItReplaces() async throws {
        var daemon = try await Daemon()
        defer { daemon.stop(); daemon.removeData() }
        func post(_ narrative: String) throws -> String {
            try #require(daemon.post("/v1/disclosures", as: daemon.gateway, json: Demo.body(narrative: narrative), headers: ["Idempotency-Key": Demo.key()]).json["id"] as? String)
        }
        let kept = try post("before the backup")
        let backups = daemon.directory + "-backups"
        defer { try? FileManager.default.removeItem(atPath: backups) }
        let (backupCode, backupOutput) = try daemon.admin(["backup", "--to", backups])
        let head = try #require(backupOutput.firstMatch(of: #/head (\d+:[0-9a-f]{64})/#).map { String($0.1) }, "\(backupOutput)")
        let copy = backups + "/" + (try #require(FileManager.default.contentsOfDirectory(atPath: backups).first { $0.hasPrefix("relay-") }))
        #expect(backupCode == 0)
        // Taken by root into the service user's folder, a copy is that user's: their next backup compares with it.
        let servicesBackups = daemon.directory + "-service-backups"
        try FileManager.default.createDirectory(atPath: servicesBackups, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(atPath: servicesBackups) }
        #expect(chown(servicesBackups, 65534, 65534) == 0)
        // What a backup killed partway left, removed by the next one.
        try FileManager.default.createDirectory(atPath: servicesBackups + "/.staging-killed", withIntermediateDirectories: false)
        try Data(count: 4096).write(to: URL(fileURLWithPath: servicesBackups + "/.staging-killed/relay.sqlite"))
        let (backupStatus, backupSaid) = try daemon.admin(["backup", "--to", servicesBackups])
        #expect(backupStatus == 0 && backupSaid.contains("removed 1 unfinished copy left by a backup that stopped partway"), "\(backupSaid)")
        let taken = try FileManager.default.contentsOfDirectory(atPath: servicesBackups).map { try FileManager.default.attributesOfItem(atPath: servicesBackups + "/" + $0) }
        #expect(taken.count == 2 && taken.allSatisfy { ($0[.ownerAccountID] as? NSNumber)?.intValue == 65534 && ($0[.posixPermissions] as? NSNumber)?.intValue == 0o600 },
                "the copy and the backups' lock, the service user's: \(taken)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: servicesBackups).sorted().first == ".backup.lock")
        // One backup into a folder at a time: another's unfinished copy is not taken for a leftover.
        let held = open(servicesBackups + "/.backup.lock", O_RDONLY)
        #expect(held >= 0 && flock(held, LOCK_EX | LOCK_NB) == 0)
        let (busyStatus, busy) = try daemon.admin(["backup", "--to", servicesBackups])
        close(held)
        #expect(busyStatus == 1 && busy.contains("another backup into \(servicesBackups) is running"), "\(busy)")
        let later = try post("after the backup")
        let newer = try #require(try daemon.admin(["backup", "--to", backups]).1.firstMatch(of: #/Backed up to \S+/(relay-\S+\.sqlite)/#).map { String($0.1) })

        let (servingCode, serving) = try daemon.admin(["restore", copy])
        #expect(servingCode == 1 && serving.contains("stop it first"), "\(serving)")
        #expect(try daemon.get("/v1/disclosures/\(later)", as: daemon.responder).status == 200, "the running relay's database is untouched")

        // Killed, as a crashed relay is: what came after the backup is still in the write-ahead log.
        daemon.stop(SIGKILL)
        #expect((try FileManager.default.attributesOfItem(atPath: daemon.directory + "/relay.sqlite-wal")[.size] as? Int ?? 0) > 0)
        let damaged = daemon.directory + "/damaged.sqlite"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: copy))
        try bytes.prefix(bytes.count / 4096 / 2 * 4096).write(to: URL(fileURLWithPath: damaged))
        let (damagedCode, damagedOutput) = try daemon.admin(["restore", damaged])
        #expect(damagedCode != 0 && damagedOutput.contains("nothing was restored"), "\(damagedOutput)")
        let (wrongHeadCode, wrongHead) = try daemon.admin(["restore", copy, "--expect-head", "1:" + String(repeating: "0", count: 64)])
        #expect(wrongHeadCode == 6 && wrongHead.contains("BROKEN") && wrongHead.contains("Nothing was restored. Unless --expect-head was mistyped (check it against the head backup printed"),
                "\(wrongHead)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: daemon.directory).allSatisfy { !$0.hasPrefix("replaced-") && !$0.hasPrefix(".restore-") })

        try FileManager.default.createDirectory(atPath: daemon.directory + "/.restore-killed", withIntermediateDirectories: false)
        let (restoreCode, restored) = try daemon.admin(["restore", copy, "--expect-head", head])
        #expect(restoreCode == 0 && restored.contains("head \(head)") && restored.contains("kept as") && !restored.contains("without --expect-head"), "\(restored)")
        #expect(restored.contains("removed 1 unfinished copy left by a restore that stopped partway")
                && !FileManager.default.fileExists(atPath: daemon.directory + "/.restore-killed"), "\(restored)")
        #expect(restored.contains("move the backups newer than this one out of \(backups)") && restored.contains(": \(newer).")
                && !restored.contains((copy as NSString).lastPathComponent + ","), "names the copies to move: \(restored)")
        let replaced = daemon.directory + "/" + (try #require(FileManager.default.contentsOfDirectory(atPath: daemon.directory).first { $0.hasPrefix("replaced-") && $0.hasSuffix(".sqlite") }))
        let stat = try FileManager.default.attributesOfItem(atPath: daemon.directory + "/relay.sqlite")
        #expect((stat[.posixPermissions] as? Int) == 0o600)
        let replacedHolds = try Daemon.run("/usr/bin/env", ["python3", "-c", "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT COUNT(*) FROM disclosure WHERE id = ?', (sys.argv[2],)).fetchone()[0])", replaced, later])
        #expect(replacedHolds.1.trimmingCharacters(in: .whitespacesAndNewlines) == "1", "the replaced database holds what came after: \(replacedHolds.1)")
        #expect(!FileManager.default.fileExists(atPath: replaced + "-wal"), "its log folded in, it is whole in one file")

        try FileManager.default.createDirectory(atPath: daemon.directory + "/.restore-killed", withIntermediateDirectories: false)
        daemon = try await daemon.restarted()
        #expect(!FileManager.default.fileExists(atPath: daemon.directory + "/.restore-killed"), "the relay removes what a killed restore left")
        #expect(try daemon.get("/v1/disclosures/\(kept)", as: daemon.responder).status == 200)
        #expect(try daemon.get("/v1/disclosures/\(later)", as: daemon.responder).status == 404, "the restored copy knows nothing after it")

        // Undone by restoring what it replaced: nothing of it was lost.
        daemon.stop(SIGKILL)
        #expect(chmod(daemon.directory, 0o755) == 0)
        let (undoCode, undo) = try daemon.admin(["restore", replaced])
        #expect(undoCode == 0 && undo.contains("move the backups newer than this copy out of the backup folder") && !undo.contains("No backup in"),
                "a copy from outside the backups keeps the general advice: \(undo)")
        #expect(undo.contains("the data directory \(daemon.directory) is open to other users (mode 755); run chmod 700"), "\(undo)")
        let undoHead = try #require(undo.firstMatch(of: /head (\d+:[0-9a-f]{64})/)?.1, "\(undo)")
        #expect(undo.contains("Warning: restored without --expect-head") && undo.contains("compare \(undoHead) with that head"), "\(undo)")
        #expect(chmod(daemon.directory, 0o700) == 0)
        daemon = try await daemon.restarted()
        #expect(try daemon.get("/v1/disclosures/\(later)", as: daemon.responder).status == 200, "the undone restore gives back what came after")
    }

    func servedSerial(_ daemon: Daemon) throws -> String {
        let command = "openssl s_client -connect 127.0.0.1:\(daemon.port) -CAfile \(daemon.ca) -cert \(daemon.gateway.certificate) -key \(daemon.gateway.key) </dev/null 2>/dev/null | openssl x509 -noout -serial"
        return try Daemon.run("/bin/sh", ["-c", command]).1.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func withoutDevAMissingCertificateIsAClearStartupError() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("amane-nocert-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var env = Build.relaydEnvironment()
        let (missing, missingOutput) = try Daemon.run(Build.daemon, ["serve", "--data-dir", directory, "--listen", "127.0.0.1:0"], environment: env)
        #expect(missing == 78 && missingOutput.contains("no relay database at \(directory)/relay.sqlite") && missingOutput.contains("amane-relayd init"),
                "\(missingOutput)")
        #expect(!FileManager.default.fileExists(atPath: directory + "/relay.sqlite"), "a mistyped --data-dir leaves no empty database to verify as intact")
        // With a database there, the missing certificate is named.
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        #expect(FileManager.default.createFile(atPath: directory + "/relay.sqlite", contents: nil, attributes: [.posixPermissions: 0o600]))
        let (status, output) = try Daemon.run(Build.daemon, ["serve", "--data-dir", directory, "--listen", "127.0.0.1:0"], environment: env)
        #expect(status == 78, "a configuration error, which systemd does not restart on")
        #expect(output.contains("server-cert.pem") && output.contains("amane-relayd init"), "no pki folder at all: never set up; \(output)")
        // A pki folder without the file: a typo or a moved file, for which init is no answer.
        try FileManager.default.createDirectory(atPath: directory + "/pki", withIntermediateDirectories: true)
        let (_, typo) = try Daemon.run(Build.daemon, ["serve", "--data-dir", directory, "--listen", "127.0.0.1:0"], environment: env)
        #expect(typo.contains("no file at \(directory)/pki/server-cert.pem; check the path given as tls.certificateFile") && !typo.contains("init"), "\(typo)")
        try FileManager.default.removeItem(atPath: directory + "/pki")
        #expect(!FileManager.default.fileExists(atPath: directory + "/pki/ca-key.pem"), "nothing is generated without --dev")

        env["AMANE_LOG_LEVEL"] = "loud"
        let (checkStatus, checkOutput) = try Daemon.run(Build.daemon, ["check-config", "--data-dir", directory], environment: env)
        #expect(checkStatus != 0 && checkOutput.contains("log.level"), "\(checkOutput)")

        env["AMANE_LOG_LEVEL"] = nil
        let (devStatus, devOutput) = try Daemon.run(Build.daemon, ["check-config", "--dev", "--data-dir", directory], environment: env)
        #expect(devStatus == 0 && devOutput.contains("made by the first `serve --dev`") && devOutput.contains("claim lease     15 minutes"), "\(devOutput)")
        env["AMANE_SEEDS_DIRECTORY"] = directory + "/no-seeds"
        let (seedStatus, seedOutput) = try Daemon.run(Build.daemon, ["check-config", "--dev", "--data-dir", directory], environment: env)
        #expect(seedStatus == 78 && seedOutput.contains("seeds.directory") && seedOutput.contains("AMANE_SEEDS_DIRECTORY"), "\(seedOutput)")
        let fresh = directory + "/fresh-dev"
        let (serveStatus, serveOutput) = try Daemon.run(Build.daemon, ["serve", "--dev", "--data-dir", fresh, "--listen", "127.0.0.1:0",
                                                                       "--ops-listen", "127.0.0.1:0"], environment: env)
        #expect(serveStatus == 78 && serveOutput.contains("seeds.directory") && !FileManager.default.fileExists(atPath: fresh),
                "no half-made development folder is left behind: \(serveOutput)")

        // A database a newer release migrated: check-config says so before serve would refuse it.
        env["AMANE_SEEDS_DIRECTORY"] = Build.seeds
        let newer = "import sqlite3, sys; d = sqlite3.connect(sys.argv[1]); d.execute('CREATE TABLE IF NOT EXISTS grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY)'); d.execute(\"INSERT INTO grdb_migrations VALUES ('v99')\"); d.commit()"
        #expect(try Daemon.run("/usr/bin/env", ["python3", "-c", newer, directory + "/relay.sqlite"]).0 == 0)
        let (newerStatus, newerOutput) = try Daemon.run(Build.daemon, ["check-config", "--dev", "--data-dir", directory], environment: env)
        #expect(newerStatus == 1 && newerOutput.contains("migrated by a newer amane-relayd (schema v99)") && !newerOutput.contains("invalid:"), "\(newerOutput)")
    }

    /// A mistyped --data-dir is an error, never a fresh empty relay that verifies as intact.
    @Test func adminCommandsRefuseADirectoryWithoutADatabase() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("amane-nodb-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let env = Build.relaydEnvironment()
        for command in [["admin", "list"], ["admin", "audit", "verify"], ["admin", "revoke", "amina"], ["backup", "--to", directory + "-backups"],
                        ["serve", "--listen", "127.0.0.1:0"], ["check-config"]] {
            let (status, output) = try Daemon.run(Build.daemon, command + ["--data-dir", directory], environment: env)
            // serve and check-config: a configuration error, which systemd does not restart on.
            #expect(status == (["serve", "check-config"].contains(command[0]) ? 78 : 1) && output.contains("no relay database at") && !output.contains("Usage:"),
                    "\(command): \(output)")
        }
        #expect(!FileManager.default.fileExists(atPath: directory + "/relay.sqlite"))
    }

    /// `amane-relayd serve --dev` on `directory` and ephemeral ports, started without waiting for it: its output and log.
    func serveInDevelopment(_ directory: String) throws -> (process: Process, output: OutputBuffer, log: OutputBuffer) {
        let env = Build.relaydEnvironment()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Build.daemon)
        process.arguments = ["serve", "--dev", "--data-dir", directory, "--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"]
        process.environment = env
        let output = Pipe(), lines = OutputBuffer(), errors = Pipe(), log = OutputBuffer()
        process.standardOutput = output
        process.standardError = errors
        output.fileHandleForReading.collect(into: lines)
        errors.fileHandleForReading.collect(into: log)
        try process.run()
        return (process, lines, log)
    }

    /// Whoever waits for the "listening" line may use the demo profiles at once.
    @Test func inDevelopmentTheListeningLineComesAfterTheProfiles() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("amane-devorder-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (process, lines, _) = try serveInDevelopment(directory)
        defer { process.terminate(); process.waitUntilExit() }
        var profilesWhenListening: [Bool] = []
        #expect(try await eventually(within: 60) {
            guard lines.value.contains("listening on port") else { return false }
            profilesWhenListening = ["gateway", "responder", "supervisor"].map { FileManager.default.fileExists(atPath: "\(directory)/dev/\($0)/config.yaml") }
            return true
        }, "\(lines.value)")
        #expect(profilesWhenListening == [true, true, true])
    }

    /// A first start killed while it enrolled the demo principals leaves a folder the next start finishes.
    @Test func aFirstDevelopmentStartKilledHalfwayIsFinishedByTheNext() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("amane-devhalf-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try serveInDevelopment(directory).process
        // The responder's files come once the gateway is enrolled; the supervisor and the first key later.
        let halfway = try await eventually(within: 60) { FileManager.default.fileExists(atPath: "\(directory)/dev/responder/identity.amane") }
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        #expect(halfway)

        let daemon = try await Daemon(directory: directory)
        defer { daemon.stop() }
        for identity in [daemon.gateway, daemon.responder, daemon.supervisor] {
            #expect(try daemon.get("/v1/me", as: identity).status == 200, "\(daemon.stderr.value)")
        }
        let members = try daemon.get("/v1/members", as: daemon.supervisor).json["members"] as? [[String: Any]] ?? []
        let holders = members.filter { $0["holdsCurrentKey"] as? Bool == true }.compactMap { $0["name"] as? String }
        #expect(holders.sorted() == ["demo-responder", "demo-supervisor"], "\(members)")
        let posted = try daemon.post("/v1/disclosures", as: daemon.gateway, json: Demo.body(narrative: "after a halfway start"), headers: ["Idempotency-Key": Demo.key()])
        #expect(posted.status == 201, "\(posted.text)")
        let listed = try Daemon.run(Build.cli, ["inbox", "--json"], environment: ["AMANE_HOME": daemon.dev + "/responder"])
        #expect(listed.0 == 0 && listed.1.contains(posted.json["id"] as? String ?? "?"), "\(listed.1)")
    }

    /// --dev on a relay that `init` made enrolls no demo principal and makes no queue key: they would be its CA's,
    /// with a passphrase anyone can read in the source.
    @Test func developmentModeLeavesARelayWithItsOwnPeopleAsItIs() async throws {
        let production = try await productionRelayWithoutEpoch()
        #expect(production.daemon.stop() == 0)
        defer { production.daemon.removeData() }
        let (process, lines, log) = try serveInDevelopment(production.daemon.directory)
        defer { process.terminate(); process.waitUntilExit() }
        #expect(try await eventually(within: 60) { lines.value.contains("listening on port") }, "\(lines.value)\n\(log.value)")
        #expect(try await eventually(within: 10) { log.value.contains("no demo principal, key or profile was made") }, "\(log.value)")
        let listed = try production.daemon.admin(["admin", "list", "--json"])
        #expect(listed.0 == 0 && listed.1.contains("kiosk-1") && !listed.1.contains("demo-"), "\(listed.1)")
        let opsPort = lines.value.firstMatch(of: /ops on port (\d+)/).map { String($0.1) } ?? "0"
        let ready = try Daemon.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(opsPort)/readyz"]).1
        #expect(ready.contains("no sealing key"), "no key was made: \(ready)")
    }

    @Test func aDevelopmentCAStoppedBeforeItsCertificateIsRefusedWithWhatToDo() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("amane-devpki-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory + "/pki", withIntermediateDirectories: true)
        try Data("left by a start stopped early\n".utf8).write(to: URL(fileURLWithPath: directory + "/pki/ca-key.pem"))
        let env = Build.relaydEnvironment()
        let (status, output) = try Daemon.run("/usr/bin/timeout", ["30", Build.daemon, "serve", "--dev", "--data-dir", directory,
                                                                   "--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"], environment: env)
        #expect(status == 1 && output.contains("exist without the CA certificate") && output.contains("Delete those files and start again"),
                "\(status): \(output)")
        #expect(try String(contentsOfFile: directory + "/pki/ca-key.pem", encoding: .utf8) == "left by a start stopped early\n", "nothing overwritten")
    }

    @Test func aSecondDaemonOnTheSameDataDirectoryIsRefused() async throws {
        let daemon = try await Daemon()
        defer { daemon.stop(); daemon.removeData() }
        let env = Build.relaydEnvironment()
        // timeout(1) ends a second daemon that was not refused, so that this test fails instead of hanging.
        let (status, output) = try Daemon.run("/usr/bin/timeout", ["30", Build.daemon, "serve", "--dev", "--data-dir", daemon.directory,
                                                                   "--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"], environment: env)
        #expect(status == 1 && output.contains("another amane-relayd is serving"), "\(status): \(output)")
        #expect(try daemon.get("/v1/me", as: daemon.gateway).status == 200)
    }

    /// SQLite would open a database this user may not write read-only and fail every intake after "listening".
    @Test func aDataDirectoryTheServiceUserCannotWriteIsAStartupError() async throws {
        let daemon = try await Daemon()
        daemon.stop()
        defer { daemon.removeData() }
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: daemon.directory)
        let env = Build.relaydEnvironment()
        let (status, output) = try Daemon.run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", Build.daemon, "serve", "--dev",
                                                                   "--data-dir", daemon.directory, "--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"],
                                              environment: env)
        #expect(status == 78 && output.contains("cannot write \(daemon.directory)") && output.contains("belongs to uid 0, not to the user running this command (uid 65534)")
                && !output.contains("listening"), "\(status): \(output)")
        // The right owner, a mode that lets no one write: the fix is a chmod, not another user.
        #expect(chown(daemon.directory, 65534, 65534) == 0 && chmod(daemon.directory, 0o500) == 0)
        let (modeStatus, modeOutput) = try Daemon.run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", Build.daemon, "serve", "--dev",
                                                                           "--data-dir", daemon.directory, "--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"],
                                                  environment: env)
        #expect(modeStatus == 78 && modeOutput.contains("belongs to this user (uid 65534) but its mode 500 lets no one write it: chmod u+w \(daemon.directory)"),
                "\(modeStatus): \(modeOutput)")
        let (checkModeStatus, checkModeOutput) = try Daemon.run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", Build.daemon,
                                                                                     "check-config", "--dev", "--data-dir", daemon.directory], environment: env)
        #expect(checkModeStatus == 78 && checkModeOutput.contains("mode 500 lets no one write it"), "check-config refuses what serve refuses: \(checkModeOutput)")
        #expect(chown(daemon.directory, 0, 0) == 0 && chmod(daemon.directory, 0o755) == 0)
        let (createStatus, createOutput) = try Daemon.run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", Build.daemon, "serve", "--dev",
                                                                               "--data-dir", daemon.directory + "/new/data", "--listen", "127.0.0.1:0"], environment: env)
        #expect(createStatus == 1 && createOutput.contains("cannot create the folder \(daemon.directory)/new/data: permission denied (running as uid 65534)"),
                "\(createStatus): \(createOutput)")
        // Admin commands run as the wrong user say so, rather than "no database" or SQLite's "unable to open database file".
        let (checkStatus, checkOutput) = try Daemon.run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", Build.daemon, "check-config",
                                                                             "--data-dir", daemon.directory], environment: env)
        #expect(checkStatus == 78 && checkOutput.contains("belongs to uid 0, not to the user running this command (uid 65534)") && !checkOutput.contains("SQLite")
                && !checkOutput.contains("unavailable:"),
                "\(checkStatus): \(checkOutput)")
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: daemon.directory)
        defer { try? FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: daemon.directory) }
        let (openStatus, openOutput) = try Daemon.run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", Build.daemon, "admin", "list",
                                                                           "--data-dir", daemon.directory], environment: env)
        #expect(openStatus == 1 && openOutput.contains("the user running this command (uid 65534)") && !openOutput.contains("SQLite error"),
                "\(openStatus): \(openOutput)")
    }

    /// While a restart waits for a request still arriving, /readyz says the relay is going away, so that a balancer or
    /// a probe stops sending it work.
    @Test func aRelayShuttingDownIsNotReady() async throws {
        let daemon = try await Daemon(environment: ["AMANE_LIMITS_REQUEST_BODY_SECONDS": "8"])
        defer { daemon.removeData() }
        let readyz = { try Daemon.run("/usr/bin/curl", ["-s", "--max-time", "2", "http://127.0.0.1:\(daemon.opsPort)/readyz"]).1 }
        #expect(try readyz().hasPrefix("ready"))
        let slowBody = """
            import socket, ssl, sys, time
            context = ssl.create_default_context(cafile=sys.argv[2]); context.load_cert_chain(sys.argv[3], sys.argv[4])
            tls = context.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="localhost")
            tls.sendall(b"POST /v1/replies/fetch HTTP/1.1\\r\\nHost: localhost\\r\\nContent-Type: application/json\\r\\nContent-Length: 1000\\r\\n\\r\\n{\\"receipt\\"")
            print("sent", flush=True)
            time.sleep(15)
            """
        let slow = Process()
        slow.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        slow.arguments = ["python3", "-c", slowBody, String(daemon.port), daemon.ca, daemon.gateway.certificate, daemon.gateway.key]
        let sent = Pipe()
        slow.standardOutput = sent
        try slow.run()
        defer { slow.terminate(); slow.waitUntilExit() }
        #expect(String(decoding: sent.fileHandleForReading.availableData, as: UTF8.self).hasPrefix("sent"))
        // Time for the relay to read the head (a request it has not begun is not in flight), well within the body's 8 s.
        try await Task.sleep(for: .seconds(2))
        daemon.signal(SIGTERM)
        var answer = ""
        #expect(try await eventually(within: 8) { answer = try readyz(); return answer == "not ready: shutting down\n" }, "\(answer)")
        #expect(daemon.stop() == 0)
    }

    /// SIGTERM drains: a disclosure whose body is still arriving when the stop begins is answered 201 and stored,
    /// then the relay exits 0; a new connection meanwhile finds no listener.
    @Test func aStopAnswersTheRequestInFlightThenExits() async throws {
        let daemon = try await Daemon()
        defer { daemon.removeData() }
        let body = try JSONSerialization.data(withJSONObject: Demo.body(narrative: "in flight at the stop"))
        let key = Demo.key()
        let client = """
            import socket, ssl, sys
            context = ssl.create_default_context(cafile=sys.argv[2]); context.load_cert_chain(sys.argv[3], sys.argv[4])
            tls = context.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="localhost")
            body = sys.argv[5].encode()
            tls.sendall(b"POST /v1/disclosures HTTP/1.1\\r\\nHost: localhost\\r\\nContent-Type: application/json\\r\\nIdempotency-Key: "
                        + sys.argv[6].encode() + b"\\r\\nContent-Length: " + str(len(body)).encode() + b"\\r\\n\\r\\n" + body[:10])
            print("sent", flush=True)
            sys.stdin.readline()
            tls.sendall(body[10:])
            answer = b""
            while b"\\r\\n\\r\\n" not in answer or not answer.rstrip().endswith(b"}"):
                chunk = tls.recv(65536)
                if not chunk: break
                answer += chunk
            print(answer.decode(errors="replace"), flush=True)
            """
        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        python.arguments = ["python3", "-c", client, String(daemon.port), daemon.ca, daemon.gateway.certificate, daemon.gateway.key,
                            String(decoding: body, as: UTF8.self), key]
        let input = Pipe(), output = Pipe()
        python.standardInput = input
        python.standardOutput = output
        python.standardError = output
        try python.run()
        defer { if python.isRunning { python.terminate() }; python.waitUntilExit() }
        #expect(String(decoding: output.fileHandleForReading.availableData, as: UTF8.self).hasPrefix("sent"))
        // Time for the relay to read the head: a request it has not begun is not in flight, and its connection is closed.
        try await Task.sleep(for: .seconds(2))
        daemon.signal(SIGTERM)
        let readyz = { try Daemon.run("/usr/bin/curl", ["-s", "--max-time", "2", "http://127.0.0.1:\(daemon.opsPort)/readyz"]).1 }
        #expect(try await eventually(within: 10) { try readyz() == "not ready: shutting down\n" })
        // The services stop one after another: the listener closes just after /readyz turns.
        var refused = ""
        #expect(try await eventually(within: 10) {
            refused = try Daemon.run("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "--cacert", daemon.ca,
                                                       "--cert", daemon.gateway.certificate, "--key", daemon.gateway.key,
                                                       "https://localhost:\(daemon.port)/v1/me", "--resolve", "localhost:\(daemon.port):127.0.0.1"]).1
            return refused == "000"
        }, "a new connection after the stop began: \(refused)")
        input.fileHandleForWriting.write(Data("go\n".utf8))
        // Python may write "sent" and its newline apart (as with PYTHONUNBUFFERED): the answer can begin with that newline.
        let answer = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).drop(while: \.isNewline)
        #expect(answer.hasPrefix("HTTP/1.1 201"), "\(answer) \(daemon.stderr.value)")
        let id = try #require(answer.firstMatch(of: /"id":"([0-9a-f-]{36})"/)?.1)
        #expect(daemon.stop() == 0)
        let db = try RelayDatabase(directory: daemon.directory)
        defer { try? db.close() }
        #expect(try await db.disclosureIDs() == [String(id)])
    }

    /// A client CA that did not sign the server certificate (clients verify the relay, and are verified, with one CA) would
    /// refuse every client: refused at start, and by check-config, rather than served with /readyz saying "ready".
    @Test func aClientCAThatIsNotTheSigningCAsIsAConfigurationError() async throws {
        let daemon = try await Daemon()
        daemon.stop()
        defer { daemon.removeData() }
        let other = daemon.directory + "/other-ca.pem"
        try CertificateAuthority.create(name: "another relay's CA").certificatePEM.write(toFile: other, atomically: true, encoding: .utf8)
        let env = Build.relaydEnvironment(["AMANE_TLS_CA_FILE": other])
        for command in [["check-config", "--dev"], ["serve", "--dev", "--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"]] {
            let (status, output) = try Daemon.run(Build.daemon, command + ["--data-dir", daemon.directory], environment: env)
            #expect(status == 78 && output.contains("'tls.caFile': \(other) holds no CA that signed the server certificate \(daemon.directory)/pki/server-cert.pem")
                    && output.contains("every client would be refused") && !output.contains("listening"), "\(command[0]): \(status) \(output)")
        }
        // The same file with the relay's own CA after the other: a bundle is read whole.
        try (String(contentsOfFile: other, encoding: .utf8) + String(contentsOfFile: daemon.ca, encoding: .utf8)).write(toFile: other, atomically: true, encoding: .utf8)
        let (bundled, bundledOutput) = try Daemon.run(Build.daemon, ["check-config", "--dev", "--data-dir", daemon.directory], environment: env)
        #expect(bundled == 0, "\(bundledOutput)")
    }

    /// A trail cut open at rest (its guard dropped, its last entry rewritten) is reported at start, without reading it all.
    @Test func aStartOnATamperedAuditTrailSaysSo() async throws {
        var daemon = try await Daemon()
        defer { daemon.stop(); daemon.removeData() }
        #expect(!daemon.stderr.value.contains("audit trail is broken"))
        func brokenGauge() throws -> String? {
            try Daemon.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(daemon.opsPort)/metrics"]).1
                .split(separator: "\n").first { $0.hasPrefix("amane_audit_trail_broken ") }.map { String($0.dropFirst("amane_audit_trail_broken ".count)) }
        }
        #expect(try brokenGauge().flatMap(Double.init) == 0)
        daemon.stop()
        let database = daemon.directory + "/relay.sqlite"
        func sql(_ statement: String) throws {
            let script = "import sqlite3, sys; d = sqlite3.connect(sys.argv[1]); d.executescript(sys.argv[2]); d.commit()"
            #expect(try Daemon.run("/usr/bin/env", ["python3", "-c", script, database, statement]).0 == 0)
        }
        try sql("DROP TRIGGER audit_append_only_delete;")
        daemon = try await daemon.restarted()
        #expect(try await eventually { daemon.stderr.value.contains("the audit trail is broken: the triggers that keep the audit trail append-only are missing") },
                "\(daemon.stderr.value)")
        #expect(try daemon.get("/v1/me", as: daemon.gateway).status == 200, "it still serves")
        #expect(try brokenGauge().flatMap(Double.init) == 1, "a gauge to alert on")
        let (verifyStatus, verified) = try daemon.admin(["admin", "audit", "verify"])
        #expect(verifyStatus == 6 && verified.contains("BROKEN: the triggers that keep it append-only are missing"), "\(verified)")
        daemon.stop()
        // With its guard gone too, an entry altered meanwhile is still named: what an investigator looks for.
        try sql("""
            DROP TRIGGER audit_append_only_update;
            UPDATE audit SET detail = '{}' WHERE seq = (SELECT MAX(seq) FROM audit);
            """)
        let last = try Daemon.run("/usr/bin/env", ["python3", "-c", "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT MAX(seq) FROM audit').fetchone()[0])",
                                                   database]).1.trimmingCharacters(in: .whitespacesAndNewlines)
        let (alteredStatus, altered) = try daemon.admin(["admin", "audit", "verify", "--json"])
        let broken = try JSONSerialization.jsonObject(with: Data(altered.utf8)) as? [String: Any]
        #expect(alteredStatus == 6 && (broken?["brokenAt"] as? Int).map(String.init) == last && (broken?["reason"] as? String ?? "").contains("altered")
                && (broken?["reason"] as? String ?? "").contains("triggers that keep the trail append-only are missing too"), "\(last) \(altered)")
        try sql("""
            CREATE TRIGGER audit_append_only_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
            CREATE TRIGGER audit_append_only_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
            """)
        daemon = try await daemon.restarted()
        #expect(try await eventually { daemon.stderr.value.contains("the audit trail is broken: its last audit entry") }, "\(daemon.stderr.value)")
    }

    /// Client certificates the relay issued are listed with their end, and one that ends within 30 days is named
    /// in the log and counted in a gauge at start: kiosks enrolled on one day would otherwise stop on one day.
    @Test func clientCertificatesNearTheirEndAreNamed() async throws {
        var daemon = try await Daemon()
        defer { daemon.stop(); daemon.removeData() }
        func metric(_ name: String) throws -> Double? {
            try Daemon.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(daemon.opsPort)/metrics"]).1
                .split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ")[1]) }
        }
        let key = SealingPrivateKey.generate(suite: .x25519ChaChaPoly).publicKey.text
        let out = daemon.directory + "/short-lived"
        let (status, output) = try daemon.admin(["admin", "enroll-gateway", "kiosk-short", "--sealing-key", key, "--out", out, "--valid-days", "10"])
        let tenDays = String(Timestamp.iso8601(Int64(Date().timeIntervalSince1970) + 10 * 86_400).prefix(10))
        #expect(status == 0 && output.contains("valid until \(tenDays)"), "\(output)")
        #expect(FileManager.default.contents(atPath: out + "/ca-cert.pem") == FileManager.default.contents(atPath: daemon.ca),
                "the handover folder holds the CA certificate their profile names")
        let stale = daemon.directory + "/stale-handover"
        try FileManager.default.createDirectory(atPath: stale, withIntermediateDirectories: true)
        try (try CertificateAuthority.create(name: "An old relay").certificatePEM).write(toFile: stale + "/ca-cert.pem", atomically: true, encoding: .utf8)
        let staleKey = SealingPrivateKey.generate(suite: .x25519ChaChaPoly).publicKey.text
        let refused = try daemon.admin(["admin", "enroll-gateway", "kiosk-stale", "--sealing-key", staleKey, "--out", stale])
        #expect(refused.0 == 1 && refused.1.contains("is not this relay's CA certificate"), "\(refused.1)")
        #expect(!(try daemon.admin(["admin", "list"]).1.contains("kiosk-stale")), "refused before anything was enrolled")
        #expect(try daemon.admin(["admin", "enroll-gateway", "kiosk-long", "--sealing-key", key, "--out", out, "--valid-days", "900"]).0 != 0)
        let (_, listing) = try daemon.admin(["admin", "list", "--json"])
        let listed = try #require(try JSONSerialization.jsonObject(with: Data(listing.utf8)) as? [[String: Any]], "\(listing)")
        let short = try #require(listed.first { $0["name"] as? String == "kiosk-short" })
        let ends = try #require(short["certificateEndsAt"] as? Int)
        #expect(abs(ends - Int(Date().timeIntervalSince1970) - 10 * 86_400) < 120 && short["state"] as? String == "active", "\(short)")
        #expect(listed.allSatisfy { $0["certificateEndsAt"] is Int }, "the dev principals' ends are kept too: \(listing)")
        let text = try daemon.admin(["admin", "list"]).1
        #expect(text.contains("CERT ENDS") && text.split(separator: "\n").contains { $0.hasPrefix("kiosk-short") && $0.contains(tenDays) }, "\(text)")

        daemon.stop()
        daemon = try await daemon.restarted()
        #expect(try await eventually { daemon.stderr.value.contains("client certificates end within 30 days: kiosk-short (ends \(tenDays))") },
                "\(daemon.stderr.value)")
        #expect(try metric("amane_client_certificates_ending_soon") == 1)
        #expect(try metric("amane_client_certificate_soonest_expiry_timestamp_seconds") == Double(ends))
        // A renewed certificate leaves the list at the next scrape: the admin command is another process.
        #expect(try daemon.admin(["admin", "reissue", "kiosk-short", "--out", daemon.directory + "/renewed"]).0 == 0)
        #expect(try metric("amane_client_certificate_soonest_expiry_timestamp_seconds") ?? 0 > Double(ends),
                "the renewed certificate's end replaced the near one")
        #expect(try metric("amane_client_certificates_ending_soon") == 0, "\(daemon.stderr.value)")
        // Another short one counts at once; revoked, it no longer does.
        let brief = daemon.directory + "/brief"
        let briefKey = SealingPrivateKey.generate(suite: .x25519ChaChaPoly).publicKey.text
        let (enrolled, enrolment) = try daemon.admin(["admin", "enroll-gateway", "kiosk-brief", "--sealing-key", briefKey, "--out", brief, "--valid-days", "5"])
        #expect(enrolled == 0, "\(enrolment)")
        #expect(try metric("amane_client_certificates_ending_soon") == 1)
        let briefEnds = try #require(try metric("amane_client_certificate_soonest_expiry_timestamp_seconds"))
        #expect(abs(briefEnds - Date().timeIntervalSince1970 - 5 * 86_400) < 120, "\(briefEnds)")
        let (revoked, revocation) = try daemon.admin(["admin", "revoke", "kiosk-brief"])
        #expect(revoked == 0, "\(revocation)")
        #expect(try metric("amane_client_certificates_ending_soon") == 0)
        #expect(try metric("amane_client_certificate_soonest_expiry_timestamp_seconds") ?? 0 > briefEnds + 86_400)
    }

    /// NIO's bind error names neither the address nor the setting; the daemon names both.
    @Test func aPortInUseIsNamedWithItsSetting() async throws {
        let daemon = try await Daemon()
        defer { daemon.stop(); daemon.removeData() }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("amane-portclash-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let env = Build.relaydEnvironment()
        for (https, ops, named) in [(daemon.port, 0, "127.0.0.1:\(daemon.port) (http.listen, --listen)"),
                                    (0, daemon.opsPort, "127.0.0.1:\(daemon.opsPort) (ops.listen, --ops-listen)")] {
            let (status, output) = try Daemon.run("/usr/bin/timeout", ["30", Build.daemon, "serve", "--dev", "--data-dir", directory,
                                                                       "--listen", "127.0.0.1:\(https)", "--ops-listen", "127.0.0.1:\(ops)"], environment: env)
            #expect(status == 1 && output.contains("cannot listen on") && output.contains(named) && output.contains("the address is in use"),
                    "\(status): \(output)")
            #expect(!output.contains("sweep failed") && !output.contains("reaper failed"), "stopping is no failure: \(output)")
            #expect(!output.contains("[RelayServer] listening"), "a relay that cannot take both ports never says it listens: \(output)")
        }
        #expect(try daemon.get("/v1/me", as: daemon.gateway).status == 200)
    }

    /// An admin sees what retention would purge and purges it without waiting for the hourly sweep; a hold keeps a case.
    @Test func anAdminSweepsWhatRetentionLetsGoAndAHoldKeeps() async throws {
        let daemon = try await Daemon()
        defer { daemon.stop(); daemon.removeData() }
        var ids: [String] = [], receipts: [String] = []
        for narrative in ["swept", "held", "recent"] {
            let answer = try daemon.post("/v1/disclosures", as: daemon.gateway, json: Demo.body(narrative: narrative), headers: ["Idempotency-Key": Demo.key()]).json
            ids.append(try #require(answer["id"] as? String))
            receipts.append(try #require(answer["receipt"] as? String))
            #expect(try daemon.post("/v1/disclosures/\(ids.last!)/claim", as: daemon.responder, json: [:]).status == 200)
            #expect(try daemon.post("/v1/disclosures/\(ids.last!)/transition", as: daemon.responder, json: ["action": "close", "outcome": "duplicate"]).status == 200)
        }
        #expect(try daemon.post("/v1/disclosures/\(ids[1])/hold", as: daemon.supervisor, json: ["on": true]).status == 200)
        let age = "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); db.executemany('UPDATE disclosure SET closedAt = closedAt - 400 * 86400 WHERE id = ?', [(i,) for i in sys.argv[2:]]); db.commit()"
        #expect(try Daemon.run("/usr/bin/env", ["python3", "-c", age, daemon.directory + "/relay.sqlite", ids[0], ids[1]]).0 == 0)
        func purged(_ id: String) throws -> Bool {
            let found = try daemon.get("/v1/queue?idMatch=\(id.suffix(12))", as: daemon.supervisor).json["cases"] as? [[String: Any]] ?? []
            return found.first?["purged"] as? Bool == true
        }

        let (previewStatus, preview) = try daemon.admin(["admin", "sweep", "--dry-run", "--json"])
        let previewed = try #require(try JSONSerialization.jsonObject(with: Data(preview.utf8)) as? [String: Any], "\(preview)")
        #expect(previewStatus == 0 && (previewed["due"] as? [[String: Any]])?.map { $0["id"] as? String } == [ids[0]] && previewed["held"] as? Int == 1, "\(preview)")
        let (_, previewText) = try daemon.admin(["admin", "sweep", "--dry-run"])
        #expect(previewText.contains("1 closed case is past the 180 days kept after closing, and would be purged now (1 more past it are on hold, and stay):")
                && previewText.contains(ids[0]) && !previewText.contains(ids[1]), "\(previewText)")
        #expect(try !purged(ids[0]), "a dry run purges nothing")

        let (status, output) = try daemon.admin(["admin", "sweep"])
        #expect(status == 0 && output.contains("Purged 1 closed case kept 180 days after closing"), "\(output)")
        #expect(try purged(ids[0]) && !purged(ids[1]) && !purged(ids[2]))
        let gone = try daemon.post("/v1/replies/fetch", as: daemon.gateway, json: ["receipt": receipts[0]])
        #expect(gone.status == 404 && gone.json["code"] as? String == "unknown_receipt", "its receipt went with it: \(gone.text)")
        #expect(try daemon.post("/v1/replies/fetch", as: daemon.gateway, json: ["receipt": receipts[1]]).status == 200)
        let (_, again) = try daemon.admin(["admin", "sweep", "--json"])
        #expect(again.contains("\"purged\":0"), "\(again)")
        #expect(try daemon.admin(["admin", "audit", "verify"]).0 == 0)
        let trail = try daemon.get("/v1/audit?limit=1000", as: daemon.supervisor).json["entries"] as? [[String: Any]] ?? []
        #expect(trail.filter { $0["action"] as? String == "purge" }.map { $0["subject"] as? String } == [ids[0]]
                && trail.contains { $0["action"] as? String == "purge" && ($0["actor"] as? String)?.hasPrefix("admin:") == true }, "the admin who swept is named")
    }

    /// Revoking the last active holder of the current key is said at once, and from then on the relay acknowledges
    /// nothing it seals to that key: intake and the gateway's sealing key answer 503, and /readyz names the queue.
    @Test func afterItsLastHolderIsRevokedTheKeyTakesNoDisclosure() async throws {
        let daemon = try await Daemon()
        defer { daemon.stop(); daemon.removeData() }
        let (_, first) = try daemon.admin(["admin", "revoke", "demo-responder"])
        #expect(first.contains("Now have a member of the queue national who holds its key run `amane rotate`") && !first.contains("Warning"), "the supervisor still holds it: \(first)")
        #expect(try daemon.post("/v1/disclosures", as: daemon.gateway, json: Demo.body(narrative: "held"), headers: ["Idempotency-Key": Demo.key()]).status == 201)
        let (status, last) = try daemon.admin(["admin", "revoke", "demo-supervisor"])
        #expect(status == 0 && last.contains("Warning: no active member holds the current key of the queue national any more")
                && last.contains("refuses new disclosures (503) until a member runs `amane rotate`"), "\(last)")
        let refused = try daemon.post("/v1/disclosures", as: daemon.gateway, json: Demo.body(narrative: "unheld"), headers: ["Idempotency-Key": Demo.key()])
        #expect(refused.status == 503 && refused.json["code"] as? String == "no_sealing_key"
                && refused.text.contains("no active member holds the current key of the queue national"), "\(refused.text)")
        let key = try daemon.get("/v1/queues/national/sealing-key", as: daemon.gateway)
        #expect(key.status == 503 && key.json["code"] as? String == "no_sealing_key", "a gateway that seals is not handed the key: \(key.text)")
        let ready = try Daemon.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(daemon.opsPort)/readyz"]).1
        #expect(ready.contains("no sealing key that an active member holds for the queue national"), "\(ready)")
        let metrics = try Daemon.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(daemon.opsPort)/metrics"]).1
        #expect(metrics.contains("\namane_sealing_key_missing_queues 1"), "\(metrics)")
    }

    /// With log.format json a log shipper parses every line the relay writes, down to the one that says why it stopped.
    @Test func withJSONLogsEveryLineIsAJSONObject() async throws {
        let daemon = try await Daemon(environment: ["AMANE_LOG_FORMAT": "json"])
        defer { daemon.removeData() }
        #expect(try daemon.post("/v1/disclosures", as: daemon.gateway, json: try Demo.disclosure(), headers: ["Idempotency-Key": UUID().uuidString]).status == 201)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("amane-jsonclash-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let env = Build.relaydEnvironment(["AMANE_LOG_FORMAT": "json"])
        let clash = try Daemon.run("/usr/bin/timeout", ["30", Build.daemon, "serve", "--dev", "--data-dir", directory, "--listen", "127.0.0.1:0",
                                                        "--ops-listen", "127.0.0.1:\(daemon.opsPort)"], environment: env, separatingErrors: true)
        #expect(clash.code == 1)
        #expect(daemon.stop() == 0)
        func records(_ text: String) -> [[String: Any]?] {
            text.split(separator: "\n").map { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        }
        // The relay that could not listen printed nothing on its standard output.
        for (stream, text) in [("stdout", daemon.stdout.value), ("stderr", daemon.stderr.value), ("stderr", clash.errors + clash.output)] {
            #expect(!text.isEmpty && records(text).allSatisfy { $0?["level"] is String && $0?["message"] is String }, "\(stream): \(text)")
        }
        #expect(daemon.stdout.value.contains("listening on port \(daemon.port), ops on port \(daemon.opsPort)"))
        #expect(records(daemon.stderr.value).contains { $0?["message"] as? String == "listening" && $0?["relay.url"] as? String == daemon.url
                                                          && $0?["relay.ops"] as? String == "http://127.0.0.1:\(daemon.opsPort)" }, "\(daemon.stderr.value)")
        let fatal = try #require(records(clash.errors).last ?? nil)
        #expect(fatal["level"] as? String == "critical" && fatal["relay.exitStatus"] as? String == "1", "\(fatal)")
        #expect((fatal["message"] as? String ?? "").contains("127.0.0.1:\(daemon.opsPort) (ops.listen, --ops-listen): the address is in use"), "\(fatal)")
    }
}
}
