import Foundation
import RelayAPI
@testable import RelayCommands
import Testing

/// The pins of `amane grant NAME --fingerprint`, written by separate `amane` runs that may overlap.
@Suite struct PinnedKeysTests {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("amane-members-\(UUID().uuidString)").path

    func load() throws -> PinnedKeys {
        try PinnedKeys(profile: Profile(directory: directory, identity: (directory as NSString).appendingPathComponent("identity.amane")))
    }

    static func fingerprint(_ index: Int) -> String { String(repeating: String(format: "%02x", index), count: 32) }

    @Test func pinsTakenAtTheSameMomentAreAllKept() async throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // Each run read the file before any of them pinned, as eight overlapping `amane grant` runs would.
        let runs = try (0..<8).map { _ in try load() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, run) in runs.enumerated() {
                group.addTask {
                    var run = run
                    try run.pin("colleague-\(index)", fingerprint: Self.fingerprint(index))
                }
            }
            try await group.waitForAll()
        }
        let pinned = try load().fingerprints
        #expect(pinned == Dictionary(uniqueKeysWithValues: (0..<8).map { ("colleague-\($0)", Self.fingerprint($0)) }))
        let mode = try FileManager.default.attributesOfItem(atPath: (directory as NSString).appendingPathComponent("members"))[.posixPermissions] as? Int
        #expect(mode == 0o600)
    }

    @Test func pinsOthersMayChangeAreRefused() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var members = try load()
        try members.pin("supervisor", fingerprint: Self.fingerprint(1))
        let file = (directory as NSString).appendingPathComponent("members")
        for (item, mode, good) in [(file, 0o620, 0o600), (directory, 0o777, 0o700)] {
            try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: item)
            let refusal = #expect(throws: CLIError.self) { try load() }
            #expect(refusal?.description.contains("can be written by other users") == true, "\(String(describing: refusal))")
            try FileManager.default.setAttributes([.posixPermissions: good], ofItemAtPath: item)
            #expect(try load().fingerprints["supervisor"] == Self.fingerprint(1))
        }
        // A file another user owns, even mode 0600, is theirs to change (the tests run as root, as the deploy tests do).
        #expect(chown(file, 65534, 65534) == 0)
        let foreign = #expect(throws: CLIError.self) { try load() }
        #expect(foreign?.description.contains("belongs to another user") == true, "\(String(describing: foreign))")
        #expect(chown(file, geteuid(), getegid()) == 0)
        // A link could point anywhere, into a folder others may write.
        let elsewhere = directory + "-elsewhere"
        try FileManager.default.moveItem(atPath: file, toPath: elsewhere)
        defer { try? FileManager.default.removeItem(atPath: elsewhere) }
        try FileManager.default.createSymbolicLink(atPath: file, withDestinationPath: elsewhere)
        let linked = #expect(throws: CLIError.self) { try load() }
        #expect(linked?.description.contains("symbolic link") == true, "\(String(describing: linked))")
    }

    @Test func aNamePinnedMeanwhileToAnotherKeyIsRefused() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var late = try load()
        var early = try load()
        try early.pin("supervisor", fingerprint: Self.fingerprint(1))
        let refusal = #expect(throws: CLIError.self) { try late.pin("supervisor", fingerprint: Self.fingerprint(2)) }
        #expect(refusal?.code == .verification)
        #expect(try load().fingerprints == ["supervisor": Self.fingerprint(1)])
    }

    /// A gateway's key is pinned at the first reply through it; another key under its name, or none named once some are pinned, is refused.
    @Test func aGatewaysKeyIsPinnedAtTheFirstReply() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let profile = Profile(directory: directory, identity: (directory as NSString).appendingPathComponent("identity.amane"))
        let unnamed = ReplyKey(caseId: "c", gatewayKey: "k", gateway: nil)
        try PinnedKeys.checkGatewayKey(unnamed, fingerprint: Self.fingerprint(1), profile: profile)
        #expect(!FileManager.default.fileExists(atPath: directory + "/gateways"), "an older relay names no gateway: nothing to pin")
        let kiosk = ReplyKey(caseId: "c", gatewayKey: "k", gateway: "kiosk-casa")
        try PinnedKeys.checkGatewayKey(kiosk, fingerprint: Self.fingerprint(1), profile: profile)
        try PinnedKeys.checkGatewayKey(kiosk, fingerprint: Self.fingerprint(1), profile: profile)
        #expect(try PinnedKeys(profile: profile, kind: .gateways).fingerprints == ["kiosk-casa": Self.fingerprint(1)])
        let swapped = #expect(throws: CLIError.self) { try PinnedKeys.checkGatewayKey(kiosk, fingerprint: Self.fingerprint(2), profile: profile) }
        #expect(swapped?.code == .verification && swapped?.hint?.contains("remove its line from \(directory)/gateways") == true, "\(String(describing: swapped))")
        let hidden = #expect(throws: CLIError.self) { try PinnedKeys.checkGatewayKey(unnamed, fingerprint: Self.fingerprint(2), profile: profile) }
        #expect(hidden?.code == .verification && hidden?.message.contains("does not say which gateway") == true, "\(String(describing: hidden))")
        #expect(try PinnedKeys(profile: profile).fingerprints.isEmpty, "colleagues' pins are kept apart")
    }
}

@Suite struct TLSWordingTests {
    @Test func anUnknownTLSFailureGivesBoringSSLsReasonCodeWithoutTheBuildPath() {
        let text = "handshakeFailed(NIOSSL.BoringSSLError.sslError([Error: 268435703 error:100000f7:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER at /work/main/.build/checkouts/swift-nio-ssl/Sources/CNIOBoringSSL/ssl/tls_record.cc:231]))"
        #expect(RelayClient.reasonCode(in: text) == "WRONG_VERSION_NUMBER")
        #expect(RelayClient.reasonCode(in: "ioOnClosedChannel") == nil)
    }
}

/// What `amane show` prints, without a relay.
@Suite struct CaseRenderingTests {
    func reading(purged: Bool, slaDueAt: String? = nil, state: String = "closed") throws -> CaseReading {
        let view = """
            {"id":"01a2","queue":"national","urgency":"high","category":"sexual_abuse","language":"fr","channel":"phone",
             "state":"\(state)","onHold":false,"updated":false,"outcome":"support_provided","receivedAt":"2026-05-01T10:00:00Z",
             \(slaDueAt.map { "\"slaDueAt\":\"\($0)\"," } ?? "")"purged":\(purged)}
            """
        return CaseReading(case: try JSONDecoder().decode(CaseView.self, from: Data(view.utf8)), entries: [])
    }

    @Test func theDeadlineReadsInWholeMinutesOrNow() throws {
        let now = try #require(Timestamp.parse("2026-05-01T12:00:00Z"))
        func sla(_ due: String) throws -> String? { Output.sla(try reading(purged: false, slaDueAt: due).case, now: now) }
        #expect(try sla("2026-05-01T12:00:30Z") == "due now" && sla("2026-05-01T11:59:31Z") == "due now", "not 'due in 0m' nor 'overdue 0m'")
        #expect(try sla("2026-05-01T14:00:00Z") == "due in 2h" && sla("2026-05-01T11:55:00Z") == "overdue 5m")
        #expect(try sla("2026-05-01T09:15:00Z") == "overdue 2h45m" && sla("2026-04-28T07:00:00Z") == "overdue 3d5h", "not understated by up to an hour")
        #expect(try sla("2026-05-01T13:59:10Z") == "due in 1h59m" && sla("2026-05-04T12:00:00Z") == "due in 3d")
    }

    @Test func aPurgedCaseSaysItsContentIsGone() throws {
        let purged = Show.render(try reading(purged: true))
        #expect(purged.contains("outcome support_provided") && purged.contains("purged after the retention period")
                && purged.contains("only these labels remain"), "\(purged)")
        #expect(!Show.render(try reading(purged: false)).contains("purged"))
    }

    @Test func theDeadlineSaysWhomTheCaseWaitsFor() throws {
        let due = Timestamp.iso8601(Int64(Date().timeIntervalSince1970) / 60 * 60 - 3 * 3600)
        let unclaimed = Show.render(try reading(purged: false, slaDueAt: due, state: "new"))
        #expect(unclaimed.contains(", unclaimed, overdue 3h"), "\(unclaimed)")
        let referred = Show.render(try reading(purged: false, slaDueAt: due, state: "referred"))
        #expect(referred.contains(", a follow-up unopened by its holder, overdue 3h") && !referred.contains("unclaimed"), "\(referred)")
    }

    @Test func aFollowupThatRaisedTheCaseSaysSo() throws {
        var raised = try reading(purged: false, state: "new")
        raised.entries = [CaseEntry(id: "a", kind: "followup", author: "kiosk-1", createdAt: "2026-05-01T11:00:00Z", raisedUrgency: "immediate", text: "tonight"),
                          CaseEntry(id: "b", kind: "followup", author: "kiosk-1", createdAt: "2026-05-01T11:30:00Z", text: "calmer")]
        let shown = Show.render(raised)
        #expect(shown.contains("── followup · kiosk-1 · 2026-05-01T11:00:00Z · raised the case to immediate\n   tonight")
                && shown.contains("── followup · kiosk-1 · 2026-05-01T11:30:00Z\n   calmer"), "\(shown)")
        // What the relay says is taken only when it is an urgency, and a heading stays one line.
        func opened(raisedUrgency: String, author: String = "kiosk-1") throws -> CaseEntry {
            let object = try JSONDecoder().decode(SealedObjectView.self, from: JSONSerialization.data(withJSONObject: [
                "id": "b", "kind": "followup", "author": author, "epoch": "e", "sealed": "AAAA", "createdAt": "2026-05-01T11:00:00Z",
                "raisedUrgency": raisedUrgency]))
            return Show.open(object, caseID: "01a2", keys: [:], unopenedGrants: []).0
        }
        #expect(try opened(raisedUrgency: "high").raisedUrgency == "high")
        #expect(try opened(raisedUrgency: "high\n   he is safe now").raisedUrgency == nil)
        raised.entries = [try opened(raisedUrgency: "low", author: "kiosk-1\n   he is safe now")]
        #expect(!Show.render(raised).contains("\n   he is safe now"), "\(Show.render(raised))")
    }

}
