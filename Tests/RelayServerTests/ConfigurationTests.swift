import Configuration
import Foundation
import RelayCore
import RelayFormat
@testable import RelayServer
import RelayTestSupport
import Testing
import SwiftASN1
import X509

@Suite struct CertificateAuthorityTests {
    @Test func issuedCertificatesHavePositiveTwentyByteSerialsAndTheRightUses() throws {
        for _ in 0..<20 {
            let ca = try CertificateAuthority.create(name: "Test CA")
            let client = try Certificate(pemEncoded: try ca.issue(commonName: "c", usage: .client).certificate)
            for serial in [ca.certificate.serialNumber.bytes, client.serialNumber.bytes] {
                #expect(serial.count == 20 && serial.first! & 0x80 == 0, "a serial must be positive")
            }
        }
        let ca = try CertificateAuthority.create(name: "Test CA")
        let server = try ca.issue(commonName: "localhost", usage: .server(hostnames: ["localhost", "127.0.0.1", "::1"]))
        let text = try Daemon.run("/bin/sh", ["-c", "printf '%s' \"$0\" | openssl x509 -noout -text", server.certificate]).1
        #expect(text.contains("DNS:localhost") && text.contains("IP Address:127.0.0.1") && text.contains("IP Address:0:0:0:0:0:0:0:1"))
        #expect(text.contains("TLS Web Server Authentication") && !text.contains("CA:TRUE"))
        #expect(try SPKIFingerprint.of(certificatePEM: server.certificate).count == 64)
    }
}

@Suite struct ConfigurationTests {
    let environment = ["AMANE_SEEDS_DIRECTORY": Build.seeds]

    @Test func theExampleConfigurationParsesAndAgreesWithTheSeedPolicy() async throws {
        let example = try await RelayConfiguration.load(overrides: [:], configFile: Build.repository.appendingPathComponent("Config/amane-relayd.yaml").path,
                                                        environment: environment)
        let seedsOnly = try await RelayConfiguration.load(overrides: [:], configFile: nil, environment: environment)
        #expect(example.listen == RelayConfiguration.Address(host: "0.0.0.0", port: 8443))
        #expect(example.logFormat == .json && example.dataDirectory == "/var/lib/amane-relay")
        #expect(example.policy == seedsOnly.policy)
        #expect(example.limits.maxBodyBytes == seedsOnly.limits.maxBodyBytes && example.limits.requestsPerMinute == seedsOnly.limits.requestsPerMinute)
        #expect(example.limits.receiptMissesPerHour == seedsOnly.limits.receiptMissesPerHour
                && example.limits.receiptLookupsPerMinute == seedsOnly.limits.receiptLookupsPerMinute && example.limits.maxEnvelopeBytes == seedsOnly.limits.maxEnvelopeBytes)
        #expect(seedsOnly.policy.slaSeconds[.immediate] == 15 * 60 && seedsOnly.policy.closedRetentionDays == 180)

        // The example leaves the policy to seeds/policy.yaml: an edit there takes effect under it.
        let seeds = FileManager.default.temporaryDirectory.appendingPathComponent("seeds-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: seeds) }
        try FileManager.default.copyItem(atPath: Build.seeds, toPath: seeds.path)
        let policy = seeds.appendingPathComponent("policy.yaml")
        let edited = try String(contentsOf: policy, encoding: .utf8)
            .replacingOccurrences(of: "leaseMinutes: 15", with: "leaseMinutes: 45").replacingOccurrences(of: "requestsPerMinute: 120", with: "requestsPerMinute: 90")
        try edited.write(to: policy, atomically: true, encoding: .utf8)
        let underEditedPolicy = try await RelayConfiguration.load(overrides: [:], configFile: Build.repository.appendingPathComponent("Config/amane-relayd.yaml").path,
                                                                  environment: ["AMANE_SEEDS_DIRECTORY": seeds.path])
        #expect(underEditedPolicy.policy.claimLeaseSeconds == 45 * 60 && underEditedPolicy.limits.requestsPerMinute == 90)
    }

    /// The example is where ops look a key up: every key the relay reads is there, set or commented out.
    @Test func theExampleConfigurationNamesEveryKeyTheRelayReads() throws {
        let text = try String(contentsOf: Build.repository.appendingPathComponent("Config/amane-relayd.yaml"), encoding: .utf8)
        var sections: [String: [Substring]] = [:]
        var section = ""
        for line in text.split(separator: "\n") {
            // A section's line, commented out or not ("# claim:"), or a top-level key ("# dev: true").
            if let match = line.wholeMatch(of: /#?\s*(\w+):(.*)/), !line.hasPrefix(" ") {
                if !line.hasPrefix("#") || match.2.isEmpty { section = String(match.1) }
                sections["", default: []].append(line)
            }
            sections[section, default: []].append(line)
        }
        let missing = RelayConfiguration.knownKeys.sorted().filter { key in
            let parts = key.split(separator: ".")
            let (within, name) = parts.count == 1 ? ("", parts[0]) : (String(parts[0]), parts[1])
            let named = (sections[within] ?? []).contains { line in
                var rest = line.drop { $0 == " " }
                if rest.first == "#" { rest = rest.dropFirst().drop { $0 == " " } }
                return rest.hasPrefix("\(name):")
            }
            return !named && !text.contains("\(key):")
        }
        #expect(missing == [], "keys the example does not show")
    }

    @Test func aCAKeyThatIsNotTheCertificatesIsRefused() throws {
        let ours = try CertificateAuthority.create(name: "ours"), other = try CertificateAuthority.create(name: "other")
        #expect(throws: CommandFailure.self) { try CertificateAuthority(certificatePEM: try ours.certificatePEM, keyPEM: try other.keyPEM) }
        #expect(try CertificateAuthority(certificatePEM: try ours.certificatePEM, keyPEM: try ours.keyPEM).certificate == ours.certificate)
    }

    /// A misspelt key must not pass for its default: a 1-minute lease typed as `leaseMinute` would stay 15.
    @Test func aFileWithAKeyTheRelayDoesNotReadIsRefused() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("typo-\(UUID().uuidString).yaml")
        defer { try? FileManager.default.removeItem(at: file) }
        try "log:\n  level: info\nclaim:\n  leaseMinute: 1\n".write(to: file, atomically: true, encoding: .utf8)
        do {
            _ = try await RelayConfiguration.load(overrides: [:], configFile: file.path, environment: environment)
            Issue.record("a file with an unknown key loaded")
        } catch let error as RelayConfiguration.Invalid {
            #expect(error.key == "claim.leaseMinute" && error.description.contains("typo"), "\(error)")
        }
        let (status, output) = try Daemon.run(Build.daemon, ["check-config", "--config", file.path], environment: environment)
        #expect(status != 0 && output.contains("claim.leaseMinute") && !output.contains("valid"), "\(output)")
        try "claim:\n  leaseMinutes: 1\n".write(to: file, atomically: true, encoding: .utf8)
        #expect(try await RelayConfiguration.load(overrides: [:], configFile: file.path, environment: environment).policy.claimLeaseSeconds == 60)
        // An empty file (or one that holds no mapping) is named, with what it should hold.
        try "".write(to: file, atomically: true, encoding: .utf8)
        let emptyFile = await #expect(throws: RelayConfiguration.Invalid.self) {
            try await RelayConfiguration.load(overrides: [:], configFile: file.path, environment: environment)
        }
        #expect(emptyFile?.description.contains("\(file.path) is not a YAML mapping") == true, "\(String(describing: emptyFile))")
        // Uncommented without its section line, a key lands in the section above it; the error names where it belongs.
        try "sealing:\n  sharedContextMilliseconds: 250\n  leaseMinutes: 1\n".write(to: file, atomically: true, encoding: .utf8)
        let misplaced = await #expect(throws: RelayConfiguration.Invalid.self) {
            try await RelayConfiguration.load(overrides: [:], configFile: file.path, environment: environment)
        }
        #expect(misplaced?.key == "sealing.leaseMinutes" && misplaced?.description.contains("did you mean claim.leaseMinutes") == true, "\(String(describing: misplaced))")
        // A section whose only key is commented out (the CA key kept offline) is empty, not a key; an unknown empty one still is.
        try "ca:\n  # keyFile: /media/offline/ca-key.pem\nclaim:\n  leaseMinutes: 2\n".write(to: file, atomically: true, encoding: .utf8)
        #expect(try await RelayConfiguration.load(overrides: [:], configFile: file.path, environment: environment).policy.claimLeaseSeconds == 120)
        try "cla:\n".write(to: file, atomically: true, encoding: .utf8)
        let empty = await #expect(throws: RelayConfiguration.Invalid.self) {
            try await RelayConfiguration.load(overrides: [:], configFile: file.path, environment: environment)
        }
        #expect(empty?.key == "cla", "\(String(describing: empty))")
        // A typo gets the nearest key; a file that is no YAML at all is named.
        try "log:\n  levle: debug\n".write(to: file, atomically: true, encoding: .utf8)
        let typo = await #expect(throws: RelayConfiguration.Invalid.self) {
            try await RelayConfiguration.load(overrides: [:], configFile: file.path, environment: environment)
        }
        #expect(typo?.key == "log.levle" && typo?.description.contains("did you mean log.level?") == true, "\(String(describing: typo))")
        try "log:\n  level: [debug\n".write(to: file, atomically: true, encoding: .utf8)
        let broken = await #expect(throws: RelayConfiguration.Invalid.self) {
            try await RelayConfiguration.load(overrides: [:], configFile: file.path, environment: environment)
        }
        #expect(broken?.description.contains("\(file.path) is not valid YAML") == true, "\(String(describing: broken))")
        // A file that is there but unreadable to this user is not "no file" (as root, through setpriv, as CI runs).
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file.path)
        let (unreadable, unreadableOutput) = try Daemon.run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", Build.daemon,
                                                                                 "check-config", "--config", file.path], environment: environment)
        #expect(unreadable == 78 && unreadableOutput.contains("cannot read \(file.path): Permission denied") && unreadableOutput.contains("uid 65534"),
                "\(unreadableOutput)")
        // Nor is a readable file in a folder this user may not enter (/etc/amane-relay is 0750 root:amane-relay).
        let closed = FileManager.default.temporaryDirectory.appendingPathComponent("closed-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: closed, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(atPath: closed) }
        try "claim:\n  leaseMinutes: 2\n".write(toFile: closed + "/amane-relayd.yaml", atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: closed + "/amane-relayd.yaml")
        let (shut, shutOutput) = try Daemon.run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", Build.daemon,
                                                                     "check-config", "--config", closed + "/amane-relayd.yaml"], environment: environment)
        #expect(shut == 78 && shutOutput.contains("cannot read \(closed)/amane-relayd.yaml: Permission denied"), "\(shutOutput)")
    }

    /// The same for the environment: `AMANE_CLAIM_LEASE_MINUTE=1` would leave the lease at 15 minutes.
    @Test func anEnvironmentVariableThatNamesNoKeyIsRefused() async throws {
        var env = environment
        env["AMANE_CLAIM_LEASE_MINUTE"] = "1"
        env["AMANE_HOME"] = "/root/.config/amane"
        env["AMANE_PASSPHRASE_FILE"] = "/root/.amane-passphrase"
        env["AMANE_BENCH_WRITERS"] = "64"
        do {
            _ = try await RelayConfiguration.load(overrides: [:], configFile: nil, environment: env)
            Issue.record("an unknown AMANE_ variable loaded")
        } catch let error as RelayConfiguration.Invalid {
            #expect(error.key == "AMANE_CLAIM_LEASE_MINUTE" && error.description.contains("did you mean AMANE_CLAIM_LEASE_MINUTES?"), "\(error)")
        }
        let (status, output) = try Daemon.run(Build.daemon, ["check-config", "--dev"], environment: env)
        #expect(status == 78 && output.contains("AMANE_CLAIM_LEASE_MINUTE"), "\(output)")
        env["AMANE_CLAIM_LEASE_MINUTE"] = nil
        let quiet = try Daemon.run(Build.daemon, ["check-config", "--dev"], environment: env)
        #expect(quiet.0 == 0 && quiet.1.contains("sla pager       none (sla.notifyCommand)"), "\(quiet.1)")
        env["AMANE_SLA_NOTIFY_COMMAND"] = "/bin/true"
        let paging = try Daemon.run(Build.daemon, ["check-config", "--dev"], environment: env)
        #expect(paging.0 == 0 && paging.1.contains("sla pager       /bin/true URGENCY COUNT QUEUE, each minute cases are past their SLA"), "\(paging.1)")
        env["AMANE_SLA_NOTIFY_COMMAND"] = nil
        env["AMANE_CLAIM_LEASE_MINUTES"] = "1"
        #expect(try await RelayConfiguration.load(overrides: [:], configFile: nil, environment: env).policy.claimLeaseSeconds == 60,
                "the CLI's and the benchmark's own variables pass")
        for key in RelayConfiguration.knownKeys {
            let variable = RelayConfiguration.variable(for: key)
            let reader = ConfigReader(provider: EnvironmentVariablesProvider(environmentVariables: [variable: "x"]).prefixKeys(with: "amane"))
            #expect(reader.string(forKey: ConfigKey(key)) == "x" && RelayConfiguration.unknownVariables(in: [variable: "x"]) == [],
                    "\(variable) is how swift-configuration spells \(key)")
        }
    }

    @Test func precedenceIsCommandLineThenEnvironmentThenFile() async throws {
        let file = Build.repository.appendingPathComponent("Config/amane-relayd.yaml").path
        var env = environment
        env["AMANE_HTTP_LISTEN"] = "127.0.0.1:9443"
        env["AMANE_LIMITS_REQUESTS_PER_MINUTE"] = "7"
        let fromEnvironment = try await RelayConfiguration.load(overrides: [:], configFile: file, environment: env)
        #expect(fromEnvironment.listen.port == 9443 && fromEnvironment.limits.requestsPerMinute == 7)
        let fromCommandLine = try await RelayConfiguration.load(overrides: ["http.listen": "127.0.0.1:10443"], configFile: file, environment: env)
        #expect(fromCommandLine.listen.port == 10443)
        // Both listeners on one port could only fail at bind time, or after check-config said all is well.
        for (api, ops) in [("127.0.0.1:9090", "127.0.0.1:9090"), ("0.0.0.0:9090", "127.0.0.1:9090"), ("localhost:9090", "127.0.0.1:9090")] {
            let clash = await #expect(throws: RelayConfiguration.Invalid.self) {
                try await RelayConfiguration.load(overrides: ["http.listen": api, "ops.listen": ops], configFile: file, environment: env)
            }
            #expect(clash?.key == "ops.listen" && clash?.description.contains("its own port") == true, "\(String(describing: clash))")
        }
        #expect(try await RelayConfiguration.load(overrides: ["http.listen": "127.0.0.1:0", "ops.listen": "127.0.0.1:0"], configFile: file, environment: env).opsListen.port == 0)
        #expect(try await RelayConfiguration.load(overrides: ["http.listen": "0.0.0.0:9090", "ops.listen": "[::1]:9090"], configFile: file, environment: env).opsListen.port == 9090,
                "IPv4's any-address leaves IPv6 loopback free")
    }

    @Test func credentialsDirectorySuppliesTheKeyAndBadValuesNameTheirKey() async throws {
        let credentials = FileManager.default.temporaryDirectory.appendingPathComponent("creds-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: credentials, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: credentials) }
        try "-----BEGIN PRIVATE KEY-----\nfrom-credentials\n-----END PRIVATE KEY-----\n".write(to: credentials.appendingPathComponent("tls-privateKey"), atomically: true, encoding: .utf8)
        var env = environment
        env["CREDENTIALS_DIRECTORY"] = credentials.path
        let configuration = try await RelayConfiguration.load(overrides: [:], configFile: nil, environment: env)
        #expect(try configuration.readPrivateKeyPEM().contains("from-credentials"))
        // At debug level ServiceLifecycle logs each service, with the configuration it holds: the key must not go with it.
        try "-----BEGIN PRIVATE KEY-----\nca-from-credentials\n-----END PRIVATE KEY-----\n".write(to: credentials.appendingPathComponent("ca-privateKey"), atomically: true, encoding: .utf8)
        let withCAKey = try await RelayConfiguration.load(overrides: [:], configFile: nil, environment: env)
        #expect(try withCAKey.readCAKeyPEM().contains("ca-from-credentials"))
        var dumped = ""
        dump(withCAKey, to: &dumped)
        for shown in ["\(withCAKey)", String(reflecting: withCAKey), dumped, "\([withCAKey])"] {
            #expect(!shown.contains("from-credentials") && !shown.contains("PRIVATE KEY") && shown.contains("<secret>"), "\(shown)")
        }

        for (key, value) in [("ops.listen", "0.0.0.0:9090"), ("http.listen", "nowhere"), ("log.format", "xml"), ("limits.maxBodyBytes", "-1"),
                             ("sealing.sharedContextMilliseconds", "5000"), ("sealing.sharedContextMilliseconds", "-1"),
                             ("retention.closedDays", "30d"), ("limits.maxBodyBytes", "256KiB"), ("sealing.sharedContextMilliseconds", "250ms"),
                             ("claim.leaseMinutes", "thirty"), ("limits.maxBodyBytes", "99999999999"), ("limits.idleTimeoutSeconds", "99999999999"),
                             ("limits.requestBodySeconds", "31"), ("limits.narrativeMaxBytes", "99999999"),
                             ("limits.gatewayBytesPerDay", "1000"), ("limits.gatewayBytesPerDay", "8389631")] {
            await #expect(throws: RelayConfiguration.Invalid.self) {
                try await RelayConfiguration.load(overrides: [key: value], configFile: nil, environment: environment)
            }
            do {
                _ = try await RelayConfiguration.load(overrides: [key: value], configFile: nil, environment: environment)
            } catch let error as RelayConfiguration.Invalid {
                #expect(error.key == key)
            }
        }
        // A pager that is not there is refused by serve and check-config, not by every command that reads the configuration.
        for command in ["/nonexistent/page", "/tmp", "page", "/etc/passwd"] {
            let configuration = try await RelayConfiguration.load(overrides: ["sla.notifyCommand": command], configFile: nil, environment: environment)
            #expect(throws: RelayConfiguration.Invalid.self, "\(command)") { try configuration.checkNotifyCommand() }
        }
        let paging = try await RelayConfiguration.load(overrides: ["sla.notifyCommand": "/bin/true"], configFile: nil, environment: environment)
        try paging.checkNotifyCommand()
        // The same from the environment and from a YAML file: a value that is no number never passes for the default.
        var typed = environment
        typed["AMANE_RETENTION_CLOSED_DAYS"] = "thirty"
        await #expect(throws: RelayConfiguration.Invalid.self) { try await RelayConfiguration.load(overrides: [:], configFile: nil, environment: typed) }
        let file = credentials.appendingPathComponent("relay.yaml")
        try "retention:\n  closedDays: 30d\n".write(to: file, atomically: true, encoding: .utf8)
        let fromFile = await #expect(throws: RelayConfiguration.Invalid.self) {
            try await RelayConfiguration.load(overrides: [:], configFile: file.path, environment: environment)
        }
        #expect(fromFile?.description.contains("'30d' is not a whole number") == true, "\(String(describing: fromFile))")
    }
}

/// The admin tools refuse bad arguments before they sign or write anything, with the subcommand's usage.
@Suite struct AdminArgumentTests {
    let environment = ["AMANE_SEEDS_DIRECTORY": Build.seeds, "PATH": "/usr/bin:/bin"]

    func relayd(_ arguments: [String]) throws -> (Int32, String) {
        try Daemon.run(Build.daemon, arguments, environment: environment)
    }

    @Test func anInitWithoutTheSeedsSaysTheTaxonomyComesLater() throws {
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("admin-seedless-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: data) }
        let (status, output) = try Daemon.run(Build.daemon, ["init", "--data-dir", data, "--hostname", "localhost"],
                                              environment: ["AMANE_SEEDS_DIRECTORY": data + "-no-seeds", "PATH": "/usr/bin:/bin"])
        #expect(status == 0 && output.contains("Warning: no taxonomy read from \(data)-no-seeds/taxonomy.yaml") && output.contains("Initialised"), "\(output)")
        let seeded = try relayd(["init", "--data-dir", data + "/seeded", "--hostname", "localhost"])
        defer { try? FileManager.default.removeItem(atPath: data + "/seeded") }
        #expect(seeded.0 == 0 && !seeded.1.contains("taxonomy"), "\(seeded.1)")
    }

    /// A CA key put back before init (a relay brought back to a new machine) is never paired with a new CA certificate.
    @Test func anInitBesideAKeyLeftInPlaceWritesNothing() throws {
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("admin-leftover-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: data) }
        try FileManager.default.createDirectory(atPath: data + "/pki", withIntermediateDirectories: true)
        let kept = "-----BEGIN PRIVATE KEY-----\nthe offline copy\n-----END PRIVATE KEY-----\n"
        try kept.write(toFile: data + "/pki/ca-key.pem", atomically: true, encoding: .utf8)
        let (status, output) = try relayd(["init", "--data-dir", data, "--hostname", "localhost"])
        #expect(status == 1 && output.contains("\(data)/pki/ca-key.pem exists but \(data)/pki/ca-cert.pem does not") && output.contains("nothing was written")
                && output.contains("put back its whole pki folder"), "\(output)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: data).sorted() == ["pki"] && FileManager.default.contentsOfDirectory(atPath: data + "/pki") == ["ca-key.pem"])
        #expect(try String(contentsOfFile: data + "/pki/ca-key.pem", encoding: .utf8) == kept)
        // A database restored before its pki folder was put back: its members' certificates are of the old CA.
        try FileManager.default.createDirectory(atPath: data + "/restored", withIntermediateDirectories: true)
        try Data("restored".utf8).write(to: URL(fileURLWithPath: data + "/restored/relay.sqlite"))
        let restored = try relayd(["init", "--data-dir", data + "/restored", "--hostname", "localhost"])
        #expect(restored.0 == 1 && restored.1.contains("\(data)/restored/relay.sqlite exists but") && !FileManager.default.fileExists(atPath: data + "/restored/pki"),
                "\(restored.1)")
        #expect(try relayd(["init", "--data-dir", data + "/fresh", "--hostname", "localhost"]).0 == 0)
        let again = try relayd(["init", "--data-dir", data + "/fresh", "--hostname", "localhost"])
        #expect(again.0 == 1 && again.1.contains("this data directory is already initialised"), "\(again.1)")
    }

    @Test func badHostNamesKeysAndCountsAreRefusedBeforeAnythingIsWritten() throws {
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("admin-args-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: data); try? FileManager.default.removeItem(atPath: data + "-backups") }
        let badInit = try relayd(["init", "--data-dir", data, "--hostname", "bad host!"])
        #expect(badInit.0 == 64 && badInit.1.contains("'bad host!' is not a host name") && badInit.1.contains("amane-relayd init"), "\(badInit.1)")
        #expect(!FileManager.default.fileExists(atPath: data), "nothing was created")
        #expect(try relayd(["init", "--data-dir", data, "--hostname", "relay.example.org", "--hostname", "203.0.113.10", "--hostname", "::1"]).0 == 0)
        func mode(_ path: String) throws -> Int { try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as! Int }
        // Whatever the caller's umask: the database and keys are private, certificates readable.
        #expect(try mode(data + "/relay.sqlite") == 0o600 && mode(data + "/pki/server-key.pem") == 0o600 && mode(data + "/pki/ca-key.pem") == 0o600)
        #expect(try mode(data + "/pki/server-cert.pem") == 0o644 && mode(data + "/pki/ca-cert.pem") == 0o644)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: data + "/pki/server-key.pem")
        let exposed = try relayd(["check-config", "--data-dir", data])
        #expect(exposed.0 == 78 && exposed.1.contains("tls.keyFile") && exposed.1.contains("open to other users"), "\(exposed.1)")
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: data + "/pki/server-key.pem")
        // The CA key kept offline, as the guide advises: enrolling asks for it back, not for a new relay.
        try FileManager.default.moveItem(atPath: data + "/pki/ca-key.pem", toPath: data + "/offline-ca-key.pem")
        let gatewayKey = SealingPrivateKey.generate(suite: .x25519ChaChaPoly).publicKey.text
        let offline = try relayd(["admin", "enroll-gateway", "kiosk-1", "--sealing-key", gatewayKey, "--out", data + "/handover", "--data-dir", data])
        #expect(offline.0 == 78 && offline.1.contains("if it is kept offline, put it back") && !offline.1.contains("init"), "\(offline.1)")
        try FileManager.default.moveItem(atPath: data + "/offline-ca-key.pem", toPath: data + "/pki/ca-key.pem")

        let certificate = data + "/pki/server-cert.pem"
        let served = try Data(contentsOf: URL(fileURLWithPath: certificate))
        for hostnames in [[], [""], ["relay..example.org"], ["-relay.example.org"], ["relay_1.example.org"]] {
            let (code, output) = try relayd(["admin", "renew-server-cert", "--data-dir", data] + hostnames.flatMap { ["--hostname", $0] })
            #expect(code == 64 && output.contains("admin renew-server-cert"), "\(hostnames): \(output)")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: certificate)) == served, "the live certificate was not replaced")

        for key in ["amanepk1garbage", "garbage"] {
            let (code, output) = try relayd(["admin", "enroll-responder", "amina", "--sealing-key", key, "--data-dir", data])
            #expect(code == 64 && output.contains("--sealing-key: not an Amane public key") && output.contains("admin enroll-responder"), "\(output)")
        }
        // The key may come in a file, as `amane keygen --show` printed it: exactly one of the two ways.
        let keyFile = data + "-gateway.pub"
        try "Your sealing key is in …\nFingerprint (read it to your admin to compare): 1234\nPublic key (give this whole line to your admin):\n\(gatewayKey)\n"
            .write(toFile: keyFile, atomically: true, encoding: .utf8)
        try "nothing here\n".write(toFile: data + "-empty.pub", atomically: true, encoding: .utf8)
        for (arguments, fragment) in [(["--sealing-key", gatewayKey, "--sealing-key-file", keyFile], "not both"), ([], "--sealing-key-file FILE"),
                                      (["--sealing-key-file", data + "-missing.pub"], "cannot read"), (["--sealing-key-file", data + "-empty.pub"], "holds no amanepk1")] {
            let (code, output) = try relayd(["admin", "enroll-gateway", "kiosk-file", "--data-dir", data] + arguments)
            #expect(code == 64 && output.contains(fragment), "\(arguments): \(output)")
        }
        let fromFile = try relayd(["admin", "enroll-gateway", "kiosk-file", "--sealing-key-file", keyFile, "--out", data + "-kiosk-file", "--data-dir", data])
        let gatewayFingerprint = try SealingPublicKey(text: gatewayKey).fingerprint
        #expect(fromFile.0 == 0 && fromFile.1.contains(gatewayFingerprint), "\(fromFile.1)")
        defer { try? FileManager.default.removeItem(atPath: data + "-kiosk-file") }
        #expect(try relayd(["backup", "--data-dir", data, "--to", data + "-backups", "--keep", "0"]).0 == 64)
        for inside in [data + "/.", data + "/backups"] {
            let (intoDataCode, intoData) = try relayd(["backup", "--data-dir", data, "--to", inside])
            #expect(intoDataCode == 1 && intoData.contains("is in the data directory"), "\(intoData)")
        }
        // A backup folder on a full disk: the reason in words, and nothing kept.
        let full = try Tmpfs(megabytes: 1)
        defer { full.remove() }
        try Data(count: 1_000_000).write(to: URL(fileURLWithPath: full.path + "/filler"))
        let (fullCode, fullOutput) = try relayd(["backup", "--data-dir", data, "--to", full.path])
        #expect(fullCode == 1 && fullOutput.contains("the disk is full") && !fullOutput.contains("not an error"), "\(fullOutput)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: full.path).allSatisfy { !$0.hasPrefix("relay-") })
        // Backups in a row, often within one second, keep distinct copies, and --keep 1 keeps the newest.
        #expect(try relayd(["backup", "--data-dir", data, "--to", data + "-backups"]).0 == 0)
        #expect(try relayd(["backup", "--data-dir", data, "--to", data + "-backups"]).0 == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: data + "-backups").filter { $0.hasSuffix(".sqlite") }.count == 2)
        let (lastCode, last) = try relayd(["backup", "--data-dir", data, "--to", data + "-backups", "--keep", "1"])
        let newest = try #require(last.firstMatch(of: /Backed up to (\S+\.sqlite)/)?.1).description
        #expect(lastCode == 0 && FileManager.default.fileExists(atPath: newest), "\(last)")
        // The backup prints the head it verified, for a later --expect-head.
        let head = try #require(last.firstMatch(of: /head (\d+:[0-9a-f]{64})/)?.1).description
        #expect(try relayd(["admin", "audit", "verify", "--data-dir", data, "--expect-head", head]).0 == 0)
        // A newest earlier copy that cannot be read fails the backup, which keeps its copy and prunes nothing.
        let unreadable = data + "-backups/relay-99999999T999999.sqlite"
        try "not a database".write(toFile: unreadable, atomically: true, encoding: .utf8)
        let (uncomparedCode, uncompared) = try relayd(["backup", "--data-dir", data, "--to", data + "-backups", "--keep", "1"])
        #expect(uncomparedCode == 1 && uncompared.contains("cannot read the audit head of \(unreadable)") && uncompared.contains("nothing pruned"),
                "\(uncompared)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: data + "-backups").filter { $0.hasPrefix("relay-") }.count == 3)
        try FileManager.default.removeItem(atPath: unreadable)
        try FileManager.default.removeItem(atPath: try #require(uncompared.firstMatch(of: /Backed up to (\S+\.sqlite)/)?.1).description)
        // A copy verified as evidence is left byte for byte as it was.
        let evidence = data + "-evidence"
        try FileManager.default.createDirectory(atPath: evidence, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: evidence) }
        try FileManager.default.copyItem(atPath: newest, toPath: evidence + "/relay.sqlite")
        let before = try Data(contentsOf: URL(fileURLWithPath: evidence + "/relay.sqlite"))
        #expect(try relayd(["admin", "audit", "verify", "--data-dir", evidence, "--expect-head", head]).0 == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: evidence + "/relay.sqlite")) == before)
        // For scripts that keep the head elsewhere: the same in JSON. A copy already numbered within this second
        // leaves the new one numbered past it, so that --keep 1 keeps the new one.
        let numbered = "relay-\(Backup.timestamp())-5.sqlite"
        try FileManager.default.copyItem(atPath: newest, toPath: data + "-backups/" + numbered)
        let inJSON = try Daemon.run(Build.daemon, ["backup", "--data-dir", data, "--to", data + "-backups", "--keep", "1", "--json"],
                                    environment: environment, separatingErrors: true)
        let report = try #require(try JSONSerialization.jsonObject(with: Data(inJSON.output.utf8)) as? [String: Any], "\(inJSON.output)")
        #expect(inJSON.code == 0 && report["head"] as? String == head && report["kept"] as? Int == 1
                && report["comparedWith"] as? String == numbered
                && FileManager.default.fileExists(atPath: report["backup"] as? String ?? ""), "\(report)")
        // An enrollment the store refuses (the name is taken) leaves no empty --out folder behind.
        let key = SealingPrivateKey.generate().publicKey.text
        var spoofed = environment
        spoofed["USER"] = "mallory"
        #expect(try Daemon.run(Build.daemon, ["admin", "enroll-responder", "amina", "--sealing-key", key, "--out", data + "-amina", "--data-dir", data],
                               environment: spoofed).0 == 0)
        // The audit names who ran it from the login session or the process, not from $USER (here as CI runs it: root, no login session).
        let actor = try Daemon.run("/usr/bin/env", ["python3", "-c", "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(\"SELECT actor FROM audit WHERE action = 'principal.enroll' ORDER BY seq DESC\").fetchone()[0])", data + "/relay.sqlite"]).1
        #expect(actor.hasPrefix("admin:") && !actor.contains("mallory"), "\(actor)")
        let (takenCode, taken) = try relayd(["admin", "enroll-responder", "amina", "--sealing-key", key, "--out", data + "-again", "--data-dir", data])
        #expect(takenCode == 1 && !FileManager.default.fileExists(atPath: data + "-again") && taken.contains("admin reissue amina"), "\(taken)")
        try? FileManager.default.removeItem(atPath: data + "-amina")
        #expect(try FileManager.default.contentsOfDirectory(atPath: data + "-backups").filter { $0.hasSuffix(".sqlite") }
                == [((report["backup"] as? String ?? "") as NSString).lastPathComponent], "--keep 1 kept the newest, taken in the same second or not")
    }
}
