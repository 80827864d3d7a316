import Foundation
import Synchronization
import GRDB
import RelayCore
import RelayFormat
@testable import RelayStore
import Testing

@Suite struct DatabaseSetupTests {
    @Test func theWriterRunsWithFullSynchronousForeignKeysAndSecureDelete() async throws {
        let fixture = try await StoreFixture()
        #expect(try fixture.db.writerPragma("synchronous") == "2")
        #expect(try fixture.db.writerPragma("foreign_keys") == "1")
        #expect(try fixture.db.writerPragma("secure_delete") == "1")
        #expect(try fixture.db.writerPragma("journal_mode") == "wal")
        #expect(try fixture.db.appliedMigrations() == ["v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9"])
    }

    @Test func aSecondConnectionCheckpointsWhileTheWriterOnlyCheckpointsAsABackstop() async throws {
        let fixture = try await StoreFixture()
        #expect(try fixture.db.writerPragma("wal_autocheckpoint") == String(RelayDatabase.backstopCheckpointPages))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<100 { group.addTask { _ = try await fixture.submit("checkpointed \(index)") } }
            try await group.waitForAll()
        }
        // These writes stay far below the backstop: only the checkpointer moves them from the WAL into the file.
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("amane-main-file-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: copy) }
        func disclosures(in file: String) throws -> Int {
            try DatabaseQueue(path: file).read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM disclosure") } ?? 0
        }
        var inMainFile = 0
        let deadline = ContinuousClock.now + .seconds(60)
        while inMainFile < 100, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            try? FileManager.default.removeItem(atPath: copy)
            try FileManager.default.copyItem(atPath: (fixture.directory as NSString).appendingPathComponent(RelayDatabase.fileName), toPath: copy)
            inMainFile = (try? disclosures(in: copy)) ?? 0
        }
        #expect(inMainFile == 100)
    }

    @Test(.timeLimit(.minutes(5)))
    func anExplicitCheckpointWaitsOutAnotherConnectionsCheckpoint() async throws {
        let fixture = try await StoreFixture()
        for index in 0..<20 { _ = try await fixture.submit("before the checkpoint \(index)") }
        let path = (fixture.directory as NSString).appendingPathComponent(RelayDatabase.fileName)
        var holdsTheLock = Configuration()
        holdsTheLock.allowsUnsafeTransactions = true
        let writer = try DatabaseQueue(path: path, configuration: holdsTheLock)
        var waits = Configuration()
        waits.busyMode = .timeout(30)
        let otherCheckpointer = try DatabaseQueue(path: path, configuration: waits)
        // A FULL checkpoint takes SQLite's checkpoint lock, then waits for the write lock that `writer` holds.
        try writer.inDatabase { try $0.execute(sql: "BEGIN IMMEDIATE") }
        let db = fixture.db
        let outcome = Mutex<Result<Void, any Error>?>(nil)
        let returnedWhileLocked = Mutex<Bool?>(nil)
        let otherDone = Mutex(false)
        // Off the cooperative pool, so that the timing holds however busy the other tests keep it.
        DispatchQueue.global().async {
            _ = try? otherCheckpointer.writeWithoutTransaction { try $0.checkpoint(.full) }
            otherDone.withLock { $0 = true }
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.3) {
            let result = Result { try db.checkpoint() }
            outcome.withLock { $0 = result }
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.8) {
            returnedWhileLocked.withLock { $0 = outcome.withLock { $0 } != nil }
            try? writer.inDatabase { try $0.execute(sql: "COMMIT") }
        }
        while outcome.withLock({ $0 }) == nil || !otherDone.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(20)) }
        #expect(returnedWhileLocked.withLock { $0 } == false, "the checkpoint returned while another one held the lock")
        #expect(throws: Never.self) { try outcome.withLock { $0 }?.get() }
        let wal = try FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int
        #expect(wal == 0)
    }

    @Test func theTaxonomyIsLoadedFromSeedsInThreeLanguages() async throws {
        let fixture = try await StoreFixture()
        let entries = try await fixture.db.taxonomyEntries()
        #expect(entries.filter { $0.dimension == .region }.count == 12)
        #expect(Set(entries.filter { $0.dimension == .urgency }.map(\.code)) == Set(Urgency.allCases.map(\.rawValue)))
        #expect(Set(entries.filter { $0.dimension == .referral }.map(\.code)) == ["police", "health", "social", "shelter", "legal", "partner"])
        #expect(entries.allSatisfy { !$0.fr.isEmpty && !$0.en.isEmpty && $0.ar.unicodeScalars.contains { (0x0600...0x06FF).contains($0.value) } })
        #expect(fixture.db.taxonomy.contains("sexual_exploitation", in: .category))
    }

    /// An installation adds a code by adding it to its taxonomy file: the next start takes it, with corrected labels;
    /// a code the file drops stays valid, as cases carry it.
    @Test func aTaxonomyFileEditedLaterIsTakenAtTheNextOpenAndDropsNoCode() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("amane-tax-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        _ = try RelayDatabase(directory: directory, taxonomyYAML: StoreFixture.taxonomyYAML)
        let edited = StoreFixture.taxonomyYAML
            .replacingOccurrences(of: "categories:\n", with: """
                categories:
                  - code: "forced_begging"
                    fr: "Mendicité forcée"
                    ar: "التسول القسري"
                    en: "Forced begging"

                """)
            .replacingOccurrences(of: "en: \"Sexual abuse\"", with: "en: \"Sexual abuse (corrected)\"")
            .replacingOccurrences(of: "  - code: \"trafficking\"\n    fr: \"Traite des enfants\"\n", with: "  - code: \"trafficking\"\n    fr: \"Traite\"\n")
        #expect(edited.contains("forced_begging") && edited.contains("(corrected)"))
        let reopened = try RelayDatabase(directory: directory, taxonomyYAML: edited)
        #expect(reopened.taxonomy.contains("forced_begging", in: .category))
        let categories = try await reopened.taxonomyEntries().filter { $0.dimension == .category }
        #expect(categories.first?.code == "forced_begging", "the file's order: \(categories.map(\.code))")
        #expect(categories.first { $0.code == "sexual_abuse" }?.en == "Sexual abuse (corrected)")
        #expect(categories.first { $0.code == "trafficking" }?.fr == "Traite")

        let withoutTrafficking = StoreFixture.taxonomyYAML.replacing(#/  - code: "trafficking"\n(    \w\w: .*\n){3}/#, with: "")
        #expect(!withoutTrafficking.contains("trafficking"))
        let again = try RelayDatabase(directory: directory, taxonomyYAML: withoutTrafficking)
        #expect(again.taxonomy.contains("trafficking", in: .category) && again.taxonomy.contains("forced_begging", in: .category))
        let kept = try await again.taxonomyEntries().filter { $0.dimension == .category }
        #expect(kept.count == categories.count && kept.last?.code == "trafficking", "a dropped code comes after the file's: \(kept.map(\.code))")
    }

    @Test func aBrokenTaxonomyIsRefusedWithItsReason() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("amane-tax-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let duplicate = StoreFixture.taxonomyYAML.replacingOccurrences(of: "code: \"trafficking\"", with: "code: \"sexual_abuse\"")
        #expect(duplicate != StoreFixture.taxonomyYAML)
        let refusal = #expect(throws: StoreError.self) { try RelayDatabase(directory: directory, taxonomyYAML: duplicate) }
        #expect(refusal?.code == .invalid && refusal?.reason == "taxonomy: duplicate categories code 'sexual_abuse'", "\(String(describing: refusal))")
    }

    @Test func reopeningKeepsEverything() async throws {
        let fixture = try await StoreFixture()
        let result = try await fixture.submit()
        let trail = try await fixture.db.auditEntries()
        let principals = try await fixture.db.principals()
        try await fixture.reopen()
        #expect(try await fixture.db.caseSummary(id: result.id).state == .new)
        #expect(try await fixture.db.listQueue(QueueFilter()).cases.map(\.id) == [result.id])
        #expect(try await fixture.db.principals() == principals)
        #expect(try await fixture.db.auditEntries() == trail)
        #expect(try fixture.db.verifyAudit() == Int64(trail.count))
    }
}

@Suite struct IntakeTests {
    @Test func intakeStoresTheEnvelopeAndOnlyTheReceiptsHash() async throws {
        let fixture = try await StoreFixture()
        let result = try await fixture.submit("canary-intake-51c2")
        #expect(UUID(uuidString: result.id)?.isVersion7 == true)
        #expect(result.receivedAt % 60 == 0 && !result.replayed)
        try fixture.db.checkpoint()
        for (name, data) in try fixture.rawFiles() {
            #expect(!data.contains(Array(result.receipt.digits.utf8)), "receipt digits in \(name)")
            #expect(!data.contains(Array("canary-intake-51c2".utf8)), "plaintext in \(name)")
        }
        let trail = try await fixture.db.auditEntries()
        #expect(trail.last?.entry.action == "intake" && trail.last?.entry.subject == result.id)
        #expect(trail.last?.entry.actor == "kiosk-casa")
    }

    @Test func storedTimesCarryOnlyTheMinute() async throws {
        let fixture = try await StoreFixture()
        let result = try await fixture.submit()
        let times = try await fixture.db.pool.read { db in
            try Int64.fetchAll(db, sql: "SELECT createdAt FROM idempotency UNION ALL SELECT receivedAt FROM disclosure UNION ALL SELECT time FROM audit")
        }
        #expect(!times.isEmpty && times.allSatisfy { $0 % 60 == 0 }, "\(times)")
        #expect(UUID(uuidString: result.id)!.isMinuteVersion7)
    }

    /// A gateway's keys are kept seven days: a retry within them gets its first answer; after them the key is free again.
    @Test func idempotencyKeysAreForgottenAfterSevenDays() async throws {
        let fixture = try await StoreFixture()
        let first = try await fixture.submit("kept a week", key: "7d0b2a4e-week-key-00001")
        fixture.clock.advance(seconds: 6 * 86_400)
        #expect(try await fixture.db.expireIdempotencyKeys() == 0)
        let retry = try await fixture.submit("kept a week", key: "7d0b2a4e-week-key-00001")
        #expect(retry.id == first.id && retry.replayed)
        fixture.clock.advance(seconds: 86_400 + 60)
        #expect(try await fixture.db.expireIdempotencyKeys() == 1)
        let reused = try await fixture.submit("another disclosure", key: "7d0b2a4e-week-key-00001")
        #expect(reused.id != first.id && !reused.replayed)
        #expect(try await fixture.db.listQueue(QueueFilter()).cases.count == 2)
    }

    @Test func aRetryWithTheSameKeyGetsTheSameAnswer() async throws {
        let fixture = try await StoreFixture()
        let first = try await fixture.submit("one", key: "7d0b2a4e-retry-key-0001")
        let again = try await fixture.submit("one", key: "7d0b2a4e-retry-key-0001")
        #expect(again.id == first.id && again.receipt == first.receipt && again.replayed)
        await #expect(throws: StoreError.code(.keyReused)) { try await fixture.submit("two", key: "7d0b2a4e-retry-key-0001") }
        let otherGateway = try await fixture.submit("one", key: "7d0b2a4e-retry-key-0001", gateway: fixture.otherGateway)
        #expect(otherGateway.id != first.id)
        #expect(try await fixture.db.listQueue(QueueFilter()).cases.count == 2)
    }

    /// A retry gets its first answer even once the key it was sealed to is no longer current, or no longer held;
    /// not once its gateway is revoked.
    @Test func aRetryIsAnsweredAfterARotationButNotAfterItsGatewayIsRevoked() async throws {
        let fixture = try await StoreFixture()
        let first = try await fixture.submit("one", key: "retry-across-a-rotation")
        let retry = try fixture.request("one", key: "retry-across-a-rotation")
        let newBeforeTheRotation = try fixture.request("one", key: "a new key")
        try await fixture.rotate(by: fixture.supervisor)
        await #expect(throws: StoreError.code(.staleEpoch)) { try await fixture.db.intake(newBeforeTheRotation) }
        #expect(try await fixture.db.intake(retry) == IntakeResult(id: first.id, receipt: first.receipt, receivedAt: first.receivedAt, replayed: true))

        for member in [fixture.responder, fixture.colleague, fixture.supervisor].compactMap({ $0 }) {
            _ = try await fixture.db.revoke(name: member.name, actor: .admin("test"))
        }
        await #expect(throws: StoreError.code(.noSealingKey)) { try await fixture.submit("two") }
        #expect(try await fixture.db.intake(retry).replayed)

        _ = try await fixture.db.revoke(name: fixture.gateway.name, actor: .admin("test"))
        await #expect(throws: StoreError.code(.revoked)) { try await fixture.db.intake(retry) }
    }

    @Test func intakeRefusesWhatItCannotTrust() async throws {
        let fixture = try await StoreFixture()
        await #expect(throws: StoreError.code(.invalid)) { try await fixture.submit(category: "not-a-category") }
        await #expect(throws: StoreError.code(.forbidden)) { try await fixture.submit(gateway: fixture.responder) }

        let id = UUID.v7()
        let wrongKind = try Envelope.seal([1], to: fixture.epochKey.publicKey, kind: .note, objectID: id, caseID: id)
        let otherObject = try Envelope.seal([1], to: fixture.epochKey.publicKey, kind: .disclosure, objectID: UUID.v7())
        let staleEpoch = try Envelope.seal([1], to: SealingPrivateKey.generate().publicKey, kind: .disclosure, objectID: id)
        var precise = UUID.v7().uuid
        precise.5 |= 1
        let preciseID = UUID(uuid: precise)
        let pinned = try Envelope.seal([1], to: fixture.epochKey.publicKey, kind: .disclosure, objectID: preciseID)
        await #expect(throws: StoreError.code(.invalid), "an id that pins the visit to the millisecond") {
            try await fixture.db.intake(IntakeRequest(gateway: fixture.gateway, labels: fixture.labels(), id: preciseID, envelope: pinned,
                                                      idempotencyKey: UUID().uuidString, requestHash: [1]))
        }
        await #expect(throws: StoreError.code(.staleEpoch)) {
            try await fixture.db.intake(IntakeRequest(gateway: fixture.gateway, labels: fixture.labels(), id: id, envelope: staleEpoch,
                                                      idempotencyKey: UUID().uuidString, requestHash: [1]))
        }
        for envelope in [wrongKind, otherObject, [0x41, 0x4d]] {
            await #expect(throws: StoreError.code(.invalid)) {
                try await fixture.db.intake(IntakeRequest(gateway: fixture.gateway, labels: fixture.labels(), id: id, envelope: envelope,
                                                          idempotencyKey: UUID().uuidString, requestHash: [1]))
            }
        }
        try await fixture.db.revoke(name: fixture.gateway.name, actor: .admin("test"))
        let revoked = try await fixture.db.principal(named: fixture.gateway.name)!
        await #expect(throws: StoreError.code(.revoked)) { try await fixture.submit(gateway: revoked) }
        #expect(try await fixture.db.listQueue(QueueFilter()).cases.isEmpty)
    }

    @Test func withoutAnEpochIntakeSaysNoSealingKey() async throws {
        let fixture = try await StoreFixture(withEpoch: false)
        await #expect(throws: StoreError.code(.noSealingKey)) { try await fixture.submit() }
        var request = try fixture.request("to a queue the relay does not have")
        request.labels.queue = QueueName(rawValue: "nowhere")!
        let refused = await #expect(throws: StoreError.self) { try await fixture.db.intake(request) }
        #expect(refused?.code == .noSealingKey && refused?.reason.contains("the queue nowhere has no sealing key yet") == true, "\(String(describing: refused))")
    }

    @Test func aFollowupRaisesTheCaseUrgencyAndNeverLowersIt() async throws {
        let fixture = try await StoreFixture()
        let policy = TriagePolicy.default
        func followUp(_ caseID: String, _ urgency: Urgency?) async throws {
            let (id, envelope) = try fixture.sealed("more", kind: .followup, in: caseID)
            _ = try await fixture.db.addFollowup(gateway: fixture.gateway, caseID: caseID, objectID: id, envelope: envelope, raisingUrgencyTo: urgency,
                                                 idempotencyKey: UUID().uuidString, requestHash: [1])
        }
        func due(_ caseID: String) async throws -> (Urgency, Int64) {
            let summary = try await fixture.db.caseSummary(id: caseID)
            return (summary.labels.urgency, policy.slaDeadline(urgency: summary.labels.urgency, waitingSince: summary.waitingSince))
        }
        let calm = try await fixture.submit(urgency: .normal)
        let received = try await fixture.db.caseSummary(id: calm.id).receivedAt
        try await followUp(calm.id, .low)
        #expect(try await due(calm.id) == (.normal, received + policy.slaWait(.normal)), "never lowered")

        // Three hours in, it becomes high: due within high's wait from now, not two hours late already.
        fixture.clock.advance(seconds: 3 * 3600)
        try await followUp(calm.id, .high)
        let now = Int64(fixture.clock.now.timeIntervalSince1970) / 60 * 60
        #expect(try await due(calm.id) == (.high, now + policy.slaWait(.high)))
        #expect(try await fixture.db.queueDepth()[.national]?[.high]?.pastSLA == 0)
        try await followUp(calm.id, nil)
        #expect(try await due(calm.id) == (.high, now + policy.slaWait(.high)))
        fixture.clock.advance(seconds: Double(policy.slaWait(.high)) + 60)
        #expect(try await fixture.db.queueDepth()[.national]?[.high]?.pastSLA == 1, "then held to it")

        // Nearly due already, it keeps its earlier deadline.
        let high = try await fixture.submit(urgency: .high)
        let highReceived = try await fixture.db.caseSummary(id: high.id).receivedAt
        fixture.clock.advance(seconds: 110 * 60)
        try await followUp(high.id, .immediate)
        #expect(try await due(high.id) == (.immediate, highReceived + policy.slaWait(.high)))

        // Closed, it is reopened and waits afresh, at its new urgency.
        let actor = StoreActor(fixture.responder)
        try await fixture.db.transition(id: calm.id, action: .claim, actor: actor)
        _ = try await fixture.db.fetchCase(id: calm.id, actor: actor)
        try await fixture.db.transition(id: calm.id, action: .close, actor: actor, outcome: "support_provided")
        fixture.clock.advance(seconds: 3600)
        try await followUp(calm.id, .immediate)
        let reopened = Int64(fixture.clock.now.timeIntervalSince1970) / 60 * 60
        #expect(try await due(calm.id) == (.immediate, reopened + policy.slaWait(.immediate)))
        #expect(try await fixture.db.caseSummary(id: calm.id).state == .new)

        let details = try await fixture.db.auditEntries().filter { $0.entry.action == "followup" }.map(\.entry.detail)
        #expect(details.map { $0.contains("urgency") } == [false, true, false, true, true], "only a raise is recorded: \(details)")
        // Each follow-up says what it raised the case to, for whoever reads the case; an upgrade finds it in the audit trail.
        func raises() async throws -> [[Urgency?]] {
            var raises: [[Urgency?]] = []
            for id in [calm.id, high.id] {
                raises.append(try await fixture.db.fetchCase(id: id, actor: actor).items.filter { $0.kind == .followup }.map(\.raisedUrgency))
            }
            return raises
        }
        #expect(try await raises() == [[nil, .high, nil, .immediate], [.immediate]])
        try await fixture.db.pool.write { db in
            try db.execute(sql: "ALTER TABLE sealedObject DROP COLUMN raisedUrgency; DELETE FROM grdb_migrations WHERE identifier = 'v9'")
        }
        try await fixture.reopen()
        #expect(try await raises() == [[nil, .high, nil, .immediate], [.immediate]], "the upgrade dates each raise from the trail")
    }

    /// A referred case has no claim to lapse: a follow-up its holder leaves unopened would wait for good. It counts
    /// against the SLA from the earliest one not opened, until the holder (not anyone else) opens it.
    @Test func aFollowupItsHolderLeavesUnopenedIsPastTheSLAInTime() async throws {
        let fixture = try await StoreFixture()
        let policy = TriagePolicy.default
        let amina = StoreActor(fixture.responder), khadija = StoreActor(fixture.supervisor)
        func followUp(_ caseID: String, _ urgency: Urgency?) async throws {
            let (id, envelope) = try fixture.sealed("he is coming back", kind: .followup, in: caseID)
            _ = try await fixture.db.addFollowup(gateway: fixture.gateway, caseID: caseID, objectID: id, envelope: envelope, raisingUrgencyTo: urgency,
                                                 idempotencyKey: UUID().uuidString, requestHash: [1])
        }
        func minute() -> Int64 { Int64(fixture.clock.now.timeIntervalSince1970) / 60 * 60 }
        func late(_ urgency: Urgency) async throws -> [Int] {
            try await fixture.db.queueDepth()[.national]?[urgency].map { [$0.waiting, $0.pastSLA, $0.unopened] } ?? []
        }
        let referred = try await fixture.submit(urgency: .normal)
        try await fixture.db.transition(id: referred.id, action: .claim, actor: amina)
        _ = try await fixture.db.fetchCase(id: referred.id, actor: amina)
        try await fixture.db.transition(id: referred.id, action: .refer, actor: amina, referral: "police")
        #expect(try await fixture.db.caseSummary(id: referred.id).slaDeadline(policy) == nil, "nothing waits on anyone")

        fixture.clock.advance(seconds: 5 * 86_400)
        try await followUp(referred.id, nil)
        let first = minute()
        #expect(try await fixture.db.caseSummary(id: referred.id).slaDeadline(policy) == first + policy.slaWait(.normal))
        fixture.clock.advance(seconds: 2 * 3600)
        try await followUp(referred.id, nil)
        #expect(try await fixture.db.caseSummary(id: referred.id).slaDeadline(policy) == first + policy.slaWait(.normal),
                "from the earliest follow-up not opened")

        // Raised to high: due within high's wait from now, not already late by the first follow-up's clock.
        fixture.clock.advance(seconds: 3600)
        try await followUp(referred.id, .high)
        let raised = minute()
        #expect(try await fixture.db.caseSummary(id: referred.id).slaDeadline(policy) == raised + policy.slaWait(.high))
        #expect(try await late(.high) == [0, 0, 0])
        fixture.clock.advance(seconds: Double(policy.slaWait(.high)) + 60)
        #expect(try await late(.high) == [0, 1, 1], "past its SLA, though no one waits in the queue")

        _ = try await fixture.db.fetchCase(id: referred.id, actor: khadija)
        #expect(try await late(.high) == [0, 1, 1], "a supervisor looking in does not open it for its holder")
        _ = try await fixture.db.fetchCase(id: referred.id, actor: amina)
        let opened = try await fixture.db.caseSummary(id: referred.id)
        #expect(opened.unopenedSince == nil && !opened.updated && opened.slaDeadline(policy) == nil)
        #expect(try await late(.high) == [0, 0, 0])

        // A claimed case counts the same; released to the queue, it waits there as any unclaimed case (counted once).
        let claimed = try await fixture.submit(urgency: .immediate)
        try await fixture.db.transition(id: claimed.id, action: .claim, actor: amina)
        try await followUp(claimed.id, nil)
        fixture.clock.advance(seconds: Double(policy.slaWait(.immediate)) + 60)
        #expect(try await late(.immediate) == [0, 1, 1])
        try await fixture.db.transition(id: claimed.id, action: .release, actor: amina)
        #expect(try await late(.immediate) == [1, 1, 0])

        // Closed by a supervisor with a follow-up unopened, reopened by the reporter a month later: it waits afresh from
        // the reopening, not from a month ago. Taking it, giving it back, or giving it to another restarts nothing:
        // the page stops when someone opens the follow-up.
        let stale = try await fixture.submit(urgency: .high)
        try await fixture.db.transition(id: stale.id, action: .claim, actor: amina)
        try await followUp(stale.id, nil)
        try await fixture.db.transition(id: stale.id, action: .close, actor: khadija, outcome: "no_further_action")
        fixture.clock.advance(seconds: 30 * 86_400)
        try await followUp(stale.id, nil)
        let reopened = minute()
        fixture.clock.advance(seconds: 600)
        try await fixture.db.transition(id: stale.id, action: .claim, actor: amina)
        #expect(try await fixture.db.caseSummary(id: stale.id).slaDeadline(policy) == reopened + policy.slaWait(.high))
        try await fixture.db.transition(id: stale.id, action: .assign, actor: khadija, assignee: fixture.colleague.name)
        try await fixture.db.transition(id: stale.id, action: .assign, actor: khadija, assignee: fixture.responder.name)
        try await fixture.db.transition(id: stale.id, action: .release, actor: amina)
        try await fixture.db.transition(id: stale.id, action: .claim, actor: amina)
        #expect(try await fixture.db.caseSummary(id: stale.id).slaDeadline(policy) == reopened + policy.slaWait(.high))
    }

    /// The listing's `overdue` filter (SQL) and `CaseSummary.slaDeadline` (Swift) say the same, case by case.
    @Test func theListingOfCasesPastTheirSLAIsTheirDeadlineInSQL() async throws {
        let fixture = try await StoreFixture()
        let policy = TriagePolicy.default
        let amina = StoreActor(fixture.responder)
        for (index, urgency) in [Urgency.immediate, .high, .normal, .low, .high, .immediate].enumerated() {
            let result = try await fixture.submit(urgency: urgency)
            if index % 2 == 1 { try await fixture.db.transition(id: result.id, action: .claim, actor: amina) }
            if index % 3 == 0 {
                let (id, envelope) = try fixture.sealed("more", kind: .followup, in: result.id)
                _ = try await fixture.db.addFollowup(gateway: fixture.gateway, caseID: result.id, objectID: id, envelope: envelope,
                                                     idempotencyKey: UUID().uuidString, requestHash: [1])
            }
            if index == 5 {
                _ = try await fixture.db.fetchCase(id: result.id, actor: amina)
                try await fixture.db.transition(id: result.id, action: .refer, actor: amina, referral: "police")
                let (id, envelope) = try fixture.sealed("again", kind: .followup, in: result.id)
                _ = try await fixture.db.addFollowup(gateway: fixture.gateway, caseID: result.id, objectID: id, envelope: envelope,
                                                     idempotencyKey: UUID().uuidString, requestHash: [1])
            }
            fixture.clock.advance(seconds: 600)
        }
        var seen: Set<Int> = []
        for step in [0, 10 * 60, 2 * 3600, 30 * 3600, 80 * 3600] {
            fixture.clock.advance(seconds: Double(step))
            let now = Int64(fixture.clock.now.timeIntervalSince1970)
            let all = try await fixture.db.listQueue(QueueFilter(), limit: 500).cases
            let expected = Set(all.filter { $0.slaDeadline(policy).map { $0 < now } ?? false }.map(\.id))
            let listed = try await fixture.db.listQueue(QueueFilter(overdue: true), limit: 500).cases.map(\.id)
            #expect(Set(listed) == expected && listed.count == expected.count, "at +\(step) s")
            #expect(try await fixture.db.queueDepth().values.flatMap(\.values).map(\.pastSLA).reduce(0, +) == expected.count, "the alarm counts the same cases")
            seen.insert(expected.count)
        }
        #expect(seen.count >= 3, "the steps cross deadlines: \(seen)")
    }

    /// v7 counts a case flagged before it from its latest follow-up (or reopening, if later), so that an upgrade does not hide it from the SLA.
    @Test func theUpgradeDatesAFollowupNotYetOpened() async throws {
        let fixture = try await StoreFixture()
        let result = try await fixture.submit()
        let amina = StoreActor(fixture.responder)
        try await fixture.db.transition(id: result.id, action: .claim, actor: amina)
        _ = try await fixture.db.fetchCase(id: result.id, actor: amina)
        try await fixture.db.transition(id: result.id, action: .refer, actor: amina, referral: "police")
        fixture.clock.advance(seconds: 3600)
        let (id, envelope) = try fixture.sealed("more", kind: .followup, in: result.id)
        _ = try await fixture.db.addFollowup(gateway: fixture.gateway, caseID: result.id, objectID: id, envelope: envelope,
                                             idempotencyKey: UUID().uuidString, requestHash: [1])
        fixture.clock.advance(seconds: 3600)
        let (laterID, later) = try fixture.sealed("and more", kind: .followup, in: result.id)
        _ = try await fixture.db.addFollowup(gateway: fixture.gateway, caseID: result.id, objectID: laterID, envelope: later,
                                             idempotencyKey: UUID().uuidString, requestHash: [1])
        let flagged = try await fixture.db.caseSummary(id: result.id).unopenedSince
        #expect(flagged == Int64(fixture.clock.now.timeIntervalSince1970) / 60 * 60 - 3600, "from the first")
        let opened = try await fixture.submit()
        try await fixture.db.transition(id: opened.id, action: .claim, actor: amina)
        let (openedID, openedFollowup) = try fixture.sealed("read", kind: .followup, in: opened.id)
        _ = try await fixture.db.addFollowup(gateway: fixture.gateway, caseID: opened.id, objectID: openedID, envelope: openedFollowup,
                                             idempotencyKey: UUID().uuidString, requestHash: [1])
        _ = try await fixture.db.fetchCase(id: opened.id, actor: amina)
        // Closed unopened by a supervisor, reopened an hour later and claimed: it counts from the reopening.
        let reopened = try await fixture.submit()
        try await fixture.db.transition(id: reopened.id, action: .claim, actor: amina)
        let (reopenedID, reopenedFollowup) = try fixture.sealed("unread", kind: .followup, in: reopened.id)
        _ = try await fixture.db.addFollowup(gateway: fixture.gateway, caseID: reopened.id, objectID: reopenedID, envelope: reopenedFollowup,
                                             idempotencyKey: UUID().uuidString, requestHash: [1])
        let khadija = StoreActor(fixture.supervisor)
        try await fixture.db.transition(id: reopened.id, action: .close, actor: khadija, outcome: "no_further_action")
        fixture.clock.advance(seconds: 3600)
        try await fixture.db.transition(id: reopened.id, action: .reopen, actor: khadija)
        try await fixture.db.transition(id: reopened.id, action: .claim, actor: amina)
        let reopenedSince = try await fixture.db.caseSummary(id: reopened.id).unopenedSince
        #expect(reopenedSince == Int64(fixture.clock.now.timeIntervalSince1970) / 60 * 60)
        try await fixture.db.pool.write { db in
            try db.execute(sql: """
                DROP INDEX disclosure_open; ALTER TABLE disclosure DROP COLUMN unopenedSince; ALTER TABLE sealedObject DROP COLUMN raisedUrgency;
                DELETE FROM grdb_migrations WHERE identifier IN ('v7', 'v8', 'v9')
                """)
        }
        fixture.clock.advance(seconds: 3600)
        try await fixture.reopen()
        #expect(try await fixture.db.caseSummary(id: result.id).unopenedSince == flagged.map { $0 + 3600 }, "from the latest, the only time it can know")
        #expect(try await fixture.db.caseSummary(id: opened.id).unopenedSince == nil, "an opened follow-up waits on no one")
        #expect(try await fixture.db.caseSummary(id: reopened.id).unopenedSince == reopenedSince, "the reopening, later than the follow-up")
    }

    @Test func aFollowupFlagsTheCaseAndReopensItWhenClosed() async throws {
        let fixture = try await StoreFixture()
        let result = try await fixture.submit()
        let actor = StoreActor(fixture.responder)
        try await fixture.db.transition(id: result.id, action: .claim, actor: actor)
        try await fixture.db.transition(id: result.id, action: .close, actor: actor, outcome: "support_provided")

        let (id, envelope) = try fixture.sealed("more", kind: .followup, in: result.id)
        let caseID = try #require(try fixture.db.caseID(receiptHash: result.receipt.digest, gateway: fixture.gateway))
        #expect(caseID == result.id)
        #expect(try fixture.db.caseID(receiptHash: result.receipt.digest, gateway: fixture.otherGateway) == nil)
        var precise = id.uuid
        precise.5 |= 1
        let (preciseID, preciseEnvelope) = try fixture.sealed("more", kind: .followup, in: result.id, id: UUID(uuid: precise))
        await #expect(throws: StoreError.code(.invalid), "an id that pins the follow-up to the millisecond") {
            try await fixture.db.addFollowup(gateway: fixture.gateway, caseID: caseID, objectID: preciseID, envelope: preciseEnvelope,
                                             idempotencyKey: "followup-key-precise-0000000000000001", requestHash: [1])
        }
        let key = "followup-key-\(UUID().uuidString)"
        let first = try await fixture.db.addFollowup(gateway: fixture.gateway, caseID: caseID, objectID: id, envelope: envelope,
                                                     idempotencyKey: key, requestHash: [2])
        #expect(first.id == id.uuidString.lowercased() && !first.replayed)
        let summary = try await fixture.db.caseSummary(id: result.id)
        #expect(summary.state == .new && summary.updated && summary.assignee == nil)

        // A retry sealed afresh, with the same key and request, two minutes later: the first answer comes back and nothing more is stored.
        fixture.clock.advance(seconds: 120)
        let (retryID, retryEnvelope) = try fixture.sealed("more", kind: .followup, in: result.id)
        let retry = try await fixture.db.addFollowup(gateway: fixture.gateway, caseID: caseID, objectID: retryID, envelope: retryEnvelope,
                                                     idempotencyKey: key, requestHash: [2])
        #expect(retry.id == first.id && retry.receivedAt == first.receivedAt && retry.replayed)
        // Stored under an earlier release's tag of the request, it is still the first answer's.
        let afterUpgrade = try await fixture.db.addFollowup(gateway: fixture.gateway, caseID: caseID, objectID: retryID, envelope: retryEnvelope,
                                                            idempotencyKey: key, requestHash: [9], formerRequestHash: [2])
        #expect(afterUpgrade.id == first.id && afterUpgrade.replayed)
        await #expect(throws: StoreError.code(.keyReused), "the same key with another request") {
            try await fixture.db.addFollowup(gateway: fixture.gateway, caseID: caseID, objectID: retryID, envelope: retryEnvelope,
                                             idempotencyKey: key, requestHash: [3])
        }
        let followups = try await fixture.db.fetchCase(id: result.id, actor: actor).items.filter { $0.kind == .followup }
        #expect(followups.map(\.id) == [first.id])

        let (otherID, otherEnvelope) = try fixture.sealed("x", kind: .followup, in: result.id)
        await #expect(throws: StoreError.code(.notFound)) {
            try await fixture.db.addFollowup(gateway: fixture.otherGateway, caseID: result.id, objectID: otherID, envelope: otherEnvelope,
                                             idempotencyKey: key, requestHash: [2])
        }
        _ = try await fixture.db.fetchCase(id: result.id, actor: actor)
        #expect(try await fixture.db.caseSummary(id: result.id).updated == false)
    }
}
