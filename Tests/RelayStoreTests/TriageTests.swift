import Foundation
import RelayCore
import RelayFormat
import GRDB
@testable import RelayStore
import Testing

@Suite struct QueueTests {
    @Test func theQueueListsUrgentFirstThenInOrderOfArrivalAndPagesByCursor() async throws {
        let fixture = try await StoreFixture()
        var submitted: [(Urgency, String)] = []
        // Six of one urgency in each of two minutes: ids of one minute are random, so only arrival orders them.
        let urgencies: [Urgency] = [.low, .immediate, .normal, .normal, .high, .normal, .normal, .immediate, .low, .normal, .normal, .high]
        for (index, urgency) in (urgencies + urgencies).enumerated() {
            if index % 12 == 0 { fixture.clock.advance(seconds: 61) }
            submitted.append((urgency, try await fixture.submit("case \(index)", urgency: urgency).id))
        }
        let expected = submitted.enumerated().sorted { ($0.element.0.rank, $0.offset) < ($1.element.0.rank, $1.offset) }.map(\.element.1)

        var seen: [String] = []
        var cursor: QueueCursor?
        repeat {
            let page = try await fixture.db.listQueue(QueueFilter(), after: cursor, limit: 3)
            #expect(page.cases.count <= 3)
            seen += page.cases.map(\.id)
            cursor = page.next
        } while cursor != nil
        #expect(seen == expected)
        #expect(QueueCursor(token: QueueCursor(urgencyRank: 1, id: expected[0]).token) == QueueCursor(urgencyRank: 1, id: expected[0]))
        #expect(QueueCursor(token: "bm9wZQ==") == nil)
        await #expect(throws: StoreError.code(.invalid)) {
            try await fixture.db.listQueue(QueueFilter(), after: QueueCursor(urgencyRank: 1, id: UUID.v7().uuidString.lowercased()))
        }
    }

    @Test func aPageSeeksIntoTheUrgencyIndexWithoutSorting() async throws {
        let fixture = try await StoreFixture()
        let first = try await fixture.submit()
        for filter in [QueueFilter(), QueueFilter(states: [.new], urgency: .low)] {
            for cursor in [nil, QueueCursor(urgencyRank: 2, id: first.id)] {
                let plans = try await fixture.db.pool.read { db in
                    try RelayDatabase.queueRequests(db, filter, after: cursor).map { request in
                        let statement = try request.makePreparedRequest(db).statement
                        return try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN \(statement.sql)", arguments: statement.arguments)
                            .map { $0["detail"] as String }.joined(separator: "; ")
                    }
                }
                #expect(plans.allSatisfy { $0.contains("USING INDEX disclosure_queue") && !$0.contains("TEMP B-TREE") }, "\(plans)")
                // After a cursor, a page starts at the cursor's own entry, not at the start of its urgency.
                #expect(cursor == nil || plans.first?.contains("rowid>?") == true, "\(plans)")
            }
        }
    }

    /// The SLA monitor runs every minute and at every scrape of /metrics: it reads the open cases' index alone.
    @Test func theSLAMonitorReadsOnlyTheIndexOfOpenCases() async throws {
        let fixture = try await StoreFixture()
        _ = try await fixture.submit()
        let plan = try await fixture.db.pool.read { db in
            let statement = try RelayDatabase.queueDepthRequest(at: 0, policy: .default).makePreparedRequest(db).statement
            return try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN \(statement.sql)", arguments: statement.arguments)
                .map { $0["detail"] as String }.joined(separator: "; ")
        }
        #expect(plan.contains("USING COVERING INDEX disclosure_open") && !plan.contains("TEMP B-TREE"), "\(plan)")
    }

    @Test func filtersNarrowTheQueue() async throws {
        let fixture = try await StoreFixture()
        let a = try await fixture.submit(urgency: .high, category: "trafficking")
        _ = try await fixture.submit(urgency: .low, category: "sexual_abuse")
        try await fixture.db.transition(id: a.id, action: .claim, actor: StoreActor(fixture.responder))
        #expect(try await fixture.db.listQueue(QueueFilter(states: [.claimed])).cases.map(\.id) == [a.id])
        #expect(try await fixture.db.listQueue(QueueFilter(urgency: .low)).cases.count == 1)
        #expect(try await fixture.db.listQueue(QueueFilter(category: "trafficking")).cases.map(\.id) == [a.id])
        #expect(try await fixture.db.listQueue(QueueFilter(assigneeID: fixture.responder.id)).cases.map(\.id) == [a.id])
        #expect(try await fixture.db.listQueue(QueueFilter(assigneeID: fixture.colleague.id)).cases.isEmpty)
        for match in [String(a.id.suffix(8)), String(a.id.prefix(24)), a.id] {
            #expect(try await fixture.db.listQueue(QueueFilter(idMatch: match)).cases.map(\.id) == [a.id], "\(match)")
        }
        #expect(try await fixture.db.listQueue(QueueFilter(idMatch: String(a.id.dropFirst().prefix(8)))).cases.isEmpty, "not inside an id")
    }
}

@Suite struct ClaimAndTransitionTests {
    @Test func aClaimIsALeaseThatTheReaperReturns() async throws {
        let fixture = try await StoreFixture()
        let result = try await fixture.submit()
        let claimed = try await fixture.db.transition(id: result.id, action: .claim, actor: StoreActor(fixture.responder))
        #expect(claimed.state == .claimed && claimed.assignee == "resp-amina")
        await #expect(throws: StoreError.code(.invalidState)) {
            try await fixture.db.transition(id: result.id, action: .claim, actor: StoreActor(fixture.colleague))
        }
        #expect(try await fixture.db.reapExpiredClaims() == 0)
        // The holder's claim again renews the lease, in whatever working state the case is.
        _ = try await fixture.db.transition(id: result.id, action: .start, actor: StoreActor(fixture.responder))
        fixture.clock.advance(seconds: 10 * 60)
        let renewed = try await fixture.db.transition(id: result.id, action: .claim, actor: StoreActor(fixture.responder))
        #expect(renewed.state == .inProgress && renewed.assignee == "resp-amina")
        #expect(try await fixture.db.auditEntries().last?.entry.action == "claim.renew")
        fixture.clock.advance(seconds: 10 * 60)
        #expect(try await fixture.db.reapExpiredClaims() == 0, "the renewed lease runs from the renewal")
        fixture.clock.advance(seconds: 5 * 60 + 60)
        #expect(try await fixture.db.reapExpiredClaims() == 1, "by the end of the minute the lease was rounded up to")
        let summary = try await fixture.db.caseSummary(id: result.id)
        #expect(summary.state == .new && summary.assignee == nil)
        #expect(try await fixture.db.auditEntries().last?.entry.action == "expire")
        // The lapsed holder's stale claim moves nothing and adds nothing: first while no one holds the case,
        // then once a colleague has claimed it.
        let amina = StoreActor(fixture.responder)
        let (noteID, note) = try fixture.sealed("written after the claim lapsed", kind: .note, in: result.id)
        let unheld = await #expect(throws: StoreError.self) {
            try await fixture.db.addNote(caseID: result.id, objectID: noteID, envelope: note, actor: amina)
        }
        #expect(unheld?.code == .forbidden && unheld?.reason.hasPrefix("claim the case before adding a note (a claim lapses") == true,
                "\(String(describing: unheld))")
        _ = try await fixture.db.transition(id: result.id, action: .claim, actor: StoreActor(fixture.colleague))
        let closing = await #expect(throws: StoreError.self) {
            try await fixture.db.transition(id: result.id, action: .close, actor: amina, outcome: "support_provided")
        }
        #expect(closing?.code == .forbidden && closing?.reason.hasPrefix("only the responder who claimed the case, or a supervisor, may close it") == true,
                "\(String(describing: closing))")
        let adding = await #expect(throws: StoreError.self) {
            try await fixture.db.addNote(caseID: result.id, objectID: noteID, envelope: note, actor: amina)
        }
        #expect(adding?.code == .forbidden && adding?.reason.contains("resp-youssef holds it") == true, "\(String(describing: adding))")
        let after = try await fixture.db.caseSummary(id: result.id)
        #expect(after.state == .claimed && after.assignee == "resp-youssef")
    }

    @Test func onlyTheClaimantOrASupervisorMovesACase() async throws {
        let fixture = try await StoreFixture()
        let result = try await fixture.submit()
        let amina = StoreActor(fixture.responder), youssef = StoreActor(fixture.colleague), khadija = StoreActor(fixture.supervisor)
        try await fixture.db.transition(id: result.id, action: .claim, actor: amina)
        await #expect(throws: StoreError.code(.forbidden)) { try await fixture.db.transition(id: result.id, action: .release, actor: youssef) }
        await #expect(throws: StoreError.code(.invalid)) {
            try await fixture.db.transition(id: result.id, action: .refer, actor: amina, referral: "astrologer")
        }
        #expect(try await fixture.db.transition(id: result.id, action: .start, actor: amina).state == .inProgress)
        #expect(try await fixture.db.transition(id: result.id, action: .refer, actor: amina, referral: "health").referral == "health")
        #expect(try await fixture.db.transition(id: result.id, action: .close, actor: amina, outcome: "referred").state == .closed)
        // The role alone forbids it: who closed the case is not named as if it held it.
        let notHers = await #expect(throws: StoreError.self) { try await fixture.db.transition(id: result.id, action: .reopen, actor: amina) }
        #expect(notHers?.code == .forbidden && notHers?.reason == "a responder may not reopen a case", "\(String(describing: notHers))")
        let reopened = try await fixture.db.transition(id: result.id, action: .reopen, actor: khadija)
        #expect(reopened.state == .new && reopened.outcome == nil, "a reopened case counts as open in the statistics")
        #expect(reopened.referral == "health", "a referral made stays in the case and in the statistics by referral")
        let assigned = try await fixture.db.transition(id: result.id, action: .assign, actor: khadija, assignee: fixture.colleague.name)
        #expect(assigned.state == .claimed && assigned.assignee == "resp-youssef")
        await #expect(throws: StoreError.code(.forbidden)) { try await fixture.db.setHold(id: result.id, on: true, actor: amina) }
        try await fixture.db.setHold(id: result.id, on: true, actor: khadija)
        #expect(try await fixture.db.caseSummary(id: result.id).onHold)
        let actions = try await fixture.db.auditEntries().suffix(7).map(\.entry.action)
        #expect(actions == ["claim", "start", "refer", "close", "reopen", "assign", "hold.on"])
    }

    @Test func aRevokedMemberCanDoNothingMore() async throws {
        let fixture = try await StoreFixture()
        let result = try await fixture.submit()
        let referred = try await fixture.submit(), closed = try await fixture.submit()
        for id in [result.id, referred.id, closed.id] { try await fixture.db.transition(id: id, action: .claim, actor: StoreActor(fixture.responder)) }
        try await fixture.db.transition(id: referred.id, action: .refer, actor: StoreActor(fixture.responder), referral: "health")
        try await fixture.db.transition(id: closed.id, action: .close, actor: StoreActor(fixture.responder), outcome: "support_provided")
        let revocation = try await fixture.db.revoke(name: fixture.responder.name, actor: .admin("test"))
        #expect(revocation.returnedToQueue == [result.id] && revocation.stillAssigned == [referred.id], "the admin is told of each case it held: \(revocation)")
        #expect(try await fixture.db.caseSummary(id: result.id).state == .new, "a revoked member's claims are released")
        let release = try await fixture.db.auditEntries().last { $0.entry.action == "release" }
        #expect(release?.entry.subject == result.id && release?.entry.detail.contains("revoked") == true, "the release is audited")
        await #expect(throws: StoreError.code(.revoked)) { try await fixture.db.transition(id: result.id, action: .claim, actor: StoreActor(fixture.responder)) }
        await #expect(throws: StoreError.code(.revoked)) { try await fixture.db.fetchCase(id: result.id, actor: StoreActor(fixture.responder)) }
        #expect(try await fixture.db.grants(for: fixture.responder).isEmpty)
        #expect(try await fixture.db.grants(for: fixture.colleague).count == 1)
    }

    /// A member of another queue neither sees nor touches a case: to them it does not exist.
    @Test func aCaseOfAnotherQueueIsNotFoundForItsMembers() async throws {
        let fixture = try await StoreFixture()
        let result = try await fixture.submit()
        let south = QueueName(rawValue: "south")!
        try await fixture.db.ensureQueue(south, actor: .admin("test"))
        let outsiderKey = SealingPrivateKey.generate(suite: .x25519ChaChaPoly)
        let outsider = StoreActor(try await fixture.db.enroll(name: PrincipalName(rawValue: "resp-south")!, role: .supervisor, spkiFingerprint: "south",
                                                              sealingKey: outsiderKey.publicKey.text, queue: south, actor: .admin("test")))
        await #expect(throws: StoreError.code(.notFound)) { try await fixture.db.fetchCase(id: result.id, actor: outsider) }
        await #expect(throws: StoreError.code(.notFound)) { try await fixture.db.transition(id: result.id, action: .claim, actor: outsider) }
        await #expect(throws: StoreError.code(.notFound)) { try await fixture.db.setHold(id: result.id, on: true, actor: outsider) }
        let (noteID, note) = try fixture.sealed("a note", kind: .note, in: result.id)
        await #expect(throws: StoreError.code(.notFound)) { try await fixture.db.addNote(caseID: result.id, objectID: noteID, envelope: note, actor: outsider) }
        let untouched = try await fixture.db.caseSummary(id: result.id)
        #expect(untouched.state == .new && !untouched.onHold)
        let assigned = await #expect(throws: StoreError.self) {
            try await fixture.db.transition(id: result.id, action: .assign, actor: StoreActor(fixture.supervisor), assignee: PrincipalName(rawValue: outsider.name))
        }
        #expect(assigned?.code == .notFound && assigned?.reason.contains("in the queue national") == true, "\(String(describing: assigned))")
        // Nor is the queue's key given to them, at a rotation or afterwards.
        let epochID = try #require(try fixture.db.currentEpoch(queue: .national)).id
        let toOutsider = try Grant.seal(fixture.epochKey, to: outsiderKey.publicKey)
        let refusedGrant = await #expect(throws: StoreError.self) {
            try await fixture.db.addGrants(epochID: epochID, grants: [outsider.name: toOutsider], actor: StoreActor(fixture.responder))
        }
        #expect(refusedGrant?.code == .notFound && refusedGrant?.reason.contains("in the queue national") == true, "\(String(describing: refusedGrant))")
        let next = SealingPrivateKey.generate(suite: .x25519ChaChaPoly)
        await #expect(throws: StoreError.code(.notFound)) {
            try await fixture.db.createEpoch(queue: .national, publicKey: next.publicKey.text,
                                             grants: [fixture.responder.name.rawValue: try Grant.seal(next, to: fixture.memberKeys[0].publicKey),
                                                      outsider.name: try Grant.seal(next, to: outsiderKey.publicKey)], actor: StoreActor(fixture.responder))
        }
        #expect(try await fixture.db.grants(for: try #require(try await fixture.db.principal(named: PrincipalName(rawValue: "resp-south")!))).isEmpty)
        #expect(try fixture.db.currentEpoch(queue: .national)?.id == epochID)
        let supervisorOfTheQueue = StoreActor(fixture.supervisor)
        try await fixture.db.setHold(id: result.id, on: true, actor: supervisorOfTheQueue)
        #expect(try await fixture.db.caseSummary(id: result.id).onHold)
    }
}

@Suite struct SealedObjectTests {
    /// A revoked gateway fetches nothing again: a reply through it would reach no one, and the responder hears so first.
    @Test func noReplyGoesThroughARevokedGateway() async throws {
        let fixture = try await StoreFixture()
        let result = try await fixture.submit("the disclosure")
        let amina = StoreActor(fixture.responder)
        try await fixture.db.transition(id: result.id, action: .claim, actor: amina)
        let replyKey = try await fixture.db.replyKey(caseID: result.id, actor: amina)
        #expect(replyKey.key == fixture.gatewayKey.publicKey.text && replyKey.gateway == fixture.gateway.name.rawValue)
        _ = try await fixture.db.revoke(name: fixture.gateway.name, actor: .admin("test"))
        let refused = await #expect(throws: StoreError.self) { try await fixture.db.replyKey(caseID: result.id, actor: amina) }
        #expect(refused?.code == .invalidState && refused?.reason.contains("(\(fixture.gateway.name)) is revoked") == true
                && refused?.reason.contains("add a note instead") == true, "\(String(describing: refused))")
        let replyID = UUID.v7()
        let (_, forRecord) = try fixture.sealed("we can help", kind: .reply, in: result.id, id: replyID)
        let (_, forGateway) = try fixture.sealed("we can help", kind: .reply, in: result.id, id: replyID, to: fixture.gatewayKey.publicKey)
        await #expect(throws: StoreError.code(.invalidState)) {
            try await fixture.db.addReply(caseID: result.id, objectID: replyID, envelope: forRecord, gatewayEnvelope: forGateway, actor: amina)
        }
        let (noteID, note) = try fixture.sealed("the kiosk is closed; call the school", kind: .note, in: result.id)
        try await fixture.db.addNote(caseID: result.id, objectID: noteID, envelope: note, actor: amina)
    }

    @Test func notesAndRepliesTravelSealedAndEveryFetchIsAudited() async throws {
        let fixture = try await StoreFixture()
        let result = try await fixture.submit("the disclosure")
        let amina = StoreActor(fixture.responder)
        let (noteID, note) = try fixture.sealed("a note", kind: .note, in: result.id)
        await #expect(throws: StoreError.code(.forbidden)) { try await fixture.db.addNote(caseID: result.id, objectID: noteID, envelope: note, actor: amina) }
        try await fixture.db.transition(id: result.id, action: .claim, actor: amina)
        try await fixture.db.addNote(caseID: result.id, objectID: noteID, envelope: note, actor: amina)
        let again = await #expect(throws: StoreError.self) {
            try await fixture.db.addNote(caseID: result.id, objectID: noteID, envelope: note, actor: amina)
        }
        #expect(again?.code == .duplicate && again?.reason.contains("seal a new one, with a new id, for another note") == true, "\(String(describing: again))")

        let replyID = UUID.v7()
        let (_, replyForRecord) = try fixture.sealed("we can help", kind: .reply, in: result.id, id: replyID)
        let (_, replyForGateway) = try fixture.sealed("we can help", kind: .reply, in: result.id, id: replyID, to: fixture.gatewayKey.publicKey)
        let (_, replyForOther) = try fixture.sealed("we can help", kind: .reply, in: result.id, id: replyID, to: fixture.otherGatewayKey.publicKey)
        await #expect(throws: StoreError.code(.invalid)) {
            try await fixture.db.addReply(caseID: result.id, objectID: replyID, envelope: replyForRecord, gatewayEnvelope: replyForOther, actor: amina)
        }
        fixture.clock.advance(seconds: 120)
        try await fixture.db.addReply(caseID: result.id, objectID: replyID, envelope: replyForRecord, gatewayEnvelope: replyForGateway, actor: amina)
        func leaseFromNow() -> Int64 {
            (Int64(fixture.clock.now.timeIntervalSince1970) + Int64(fixture.db.options.policy.claimLeaseSeconds) + 59) / 60 * 60
        }
        #expect(try await fixture.db.caseSummary(id: result.id).claimExpiresAt == leaseFromNow(),
                "a note or reply renews the claim, to the minute after the lease: it does not date the work to the second")
        fixture.clock.advance(seconds: 600)
        _ = try await fixture.db.fetchCase(id: result.id, actor: amina)
        #expect(try await fixture.db.caseSummary(id: result.id).claimExpiresAt == leaseFromNow(), "so does reading the case")

        let detail = try await fixture.db.fetchCase(id: result.id, actor: amina)
        let epoch = try Grant.open(try await fixture.db.grants(for: fixture.responder)[0].sealed, epochID: fixture.epochKey.id, with: fixture.memberKeys[0])
        let caseID = UUID(uuidString: result.id)!
        #expect(try Envelope.open(detail.disclosure!.envelope, with: epoch, kind: .disclosure, objectID: caseID) == Array("the disclosure".utf8))
        #expect(detail.items.map(\.kind) == [.note, .reply])
        #expect(try Envelope.open(detail.items[0].envelope, with: epoch, kind: .note, objectID: noteID, caseID: caseID) == Array("a note".utf8))
        #expect(detail.gatewayKey == fixture.gatewayKey.publicKey.text)
        #expect(try await fixture.db.auditEntries().last?.entry.action == "fetch")

        let (repliedCase, replies) = try await fixture.db.replies(gateway: fixture.gateway, receiptHash: result.receipt.digest)
        #expect(repliedCase == result.id)
        #expect(try Envelope.open(replies[0].gatewayEnvelope!, with: fixture.gatewayKey, kind: .reply, objectID: replyID, caseID: caseID) == Array("we can help".utf8))
        await #expect(throws: StoreError.code(.notFound)) { try await fixture.db.replies(gateway: fixture.otherGateway, receiptHash: result.receipt.digest) }

        // Ids carry only the minute, so within one the case file keeps the order things were written in.
        let minute = Date(timeIntervalSince1970: TimeInterval(Date().unixMinute))
        let (first, second) = { (a: UUID, b: UUID) in a.uuidString > b.uuidString ? (a, b) : (b, a) }(UUID.v7(now: minute), UUID.v7(now: minute))
        for id in [first, second] {
            try await fixture.db.addNote(caseID: result.id, objectID: id, envelope: try fixture.sealed("later", kind: .note, in: result.id, id: id).1, actor: amina)
        }
        let written = try await fixture.db.fetchCase(id: result.id, actor: amina).items.map(\.id).suffix(2)
        #expect(Array(written) == [first, second].map { $0.uuidString.lowercased() })

        // A note on a closed case is kept, but renews no claim: the case is no one's any more.
        try await fixture.db.transition(id: result.id, action: .close, actor: amina, outcome: "duplicate")
        let (lateID, late) = try fixture.sealed("after closing", kind: .note, in: result.id)
        try await fixture.db.addNote(caseID: result.id, objectID: lateID, envelope: late, actor: amina)
        #expect(try await fixture.db.caseSummary(id: result.id).claimExpiresAt == nil)
    }
}

@Suite struct KeyTests {
    @Test func enrollmentRefusesDuplicatesAndBadKeys() async throws {
        let fixture = try await StoreFixture()
        await #expect(throws: StoreError.code(.conflict)) { try await fixture.enroll("resp-amina", .responder, SealingPrivateKey.generate()) }
        await #expect(throws: StoreError.code(.conflict), "another person with amina's sealing key") {
            try await fixture.enroll("resp-bob", .responder, fixture.memberKeys[0])
        }
        await #expect(throws: StoreError.code(.invalid)) {
            try await fixture.db.enroll(name: PrincipalName(rawValue: "x")!, role: .responder, spkiFingerprint: "ab", sealingKey: "amanepk1garbage", actor: .admin("t"))
        }
        let names = try await fixture.db.principals().map(\.name.rawValue)
        #expect(names == ["helpline-rabat", "kiosk-casa", "resp-amina", "resp-youssef", "sup-khadija"])
        #expect(try fixture.db.principal(spkiFingerprint: fixture.gateway.spkiFingerprint)?.name == fixture.gateway.name)
    }

    @Test func reissuingMovesAPrincipalToANewCertificateKeyAndKeepsEverythingElse() async throws {
        let fixture = try await StoreFixture()
        let before = try await fixture.db.grants(for: fixture.responder)
        let moved = try await fixture.db.reissue(name: fixture.responder.name, spkiFingerprint: "new-key", actor: .admin("t"))
        #expect(moved.id == fixture.responder.id && moved.role == .responder && moved.sealingKey == fixture.responder.sealingKey)
        #expect(try fixture.db.principal(spkiFingerprint: fixture.responder.spkiFingerprint) == nil, "the old certificate maps to no one")
        #expect(try fixture.db.principal(spkiFingerprint: "new-key")?.id == fixture.responder.id)
        #expect(try await fixture.db.grants(for: moved).map(\.epochID) == before.map(\.epochID))
        #expect(try await fixture.db.auditEntries().last?.entry.action == "principal.reissue")
        #expect(try await fixture.db.auditEntries().last?.entry.detail == #"{"fingerprint":"new-key","key":"new"}"#)
        // A renewal for the key the principal has is said so, and access lasts until the later of the two ends.
        let trail = try fixture.db.verifyAudit()
        let unsaid = await #expect(throws: StoreError.self) {
            try await fixture.db.reissue(name: fixture.responder.name, spkiFingerprint: "new-key", certificateEndsAt: 1_900_000_000, actor: .admin("t"))
        }
        #expect(unsaid?.code == .conflict && unsaid?.reason.contains("--keep-key") == true && unsaid?.reason.contains("--new-key") == true)
        await #expect(throws: StoreError.code(.conflict), "--keep-key with another key") {
            try await fixture.db.reissue(name: fixture.responder.name, spkiFingerprint: "third-key", keepingKey: true, actor: .admin("t"))
        }
        #expect(try fixture.db.verifyAudit() == trail && fixture.db.principal(spkiFingerprint: "new-key")?.id == fixture.responder.id, "a refusal writes nothing")
        _ = try await fixture.db.reissue(name: fixture.responder.name, spkiFingerprint: "new-key", certificateEndsAt: 1_900_000_000,
                                         keepingKey: true, actor: .admin("t"))
        _ = try await fixture.db.reissue(name: fixture.responder.name, spkiFingerprint: "new-key", certificateEndsAt: 1_800_000_000,
                                         keepingKey: true, actor: .admin("t"))
        #expect(try await fixture.db.certificateEnds()[fixture.responder.name] == 1_900_000_000, "the older certificate still works until then")
        #expect(try await fixture.db.auditEntries().last?.entry.detail == #"{"fingerprint":"new-key","key":"kept"}"#)
        // A key a reissue replaced is never taken again, by anyone.
        for (name, key) in [(fixture.responder.name, fixture.responder.spkiFingerprint), (fixture.colleague.name, fixture.responder.spkiFingerprint)] {
            let retired = await #expect(throws: StoreError.self) {
                try await fixture.db.reissue(name: name, spkiFingerprint: key, actor: .admin("t"))
            }
            #expect(retired?.code == .conflict && retired?.reason.contains("retired when resp-amina's certificate was reissued") == true, "\(String(describing: retired))")
        }
        await #expect(throws: StoreError.code(.conflict)) {
            try await fixture.db.enroll(name: PrincipalName(rawValue: "resp-again")!, role: .responder, spkiFingerprint: fixture.responder.spkiFingerprint,
                                        sealingKey: SealingPrivateKey.generate().publicKey.text, actor: .admin("t"))
        }
        await #expect(throws: StoreError.code(.conflict)) {
            try await fixture.db.reissue(name: fixture.colleague.name, spkiFingerprint: "new-key", actor: .admin("t"))
        }
        await #expect(throws: StoreError.code(.notFound)) {
            try await fixture.db.reissue(name: PrincipalName(rawValue: "nobody")!, spkiFingerprint: "other", actor: .admin("t"))
        }
        try await fixture.db.revoke(name: fixture.colleague.name, actor: .admin("t"))
        await #expect(throws: StoreError.code(.invalidState)) {
            try await fixture.db.reissue(name: fixture.colleague.name, spkiFingerprint: "other", actor: .admin("t"))
        }
        let revokedName = await #expect(throws: StoreError.self) {
            try await fixture.db.enroll(name: fixture.colleague.name, role: .responder, spkiFingerprint: "yet-another",
                                        sealingKey: SealingPrivateKey.generate().publicKey.text, actor: .admin("t"))
        }
        #expect(revokedName?.reason.contains("was revoked") == true && revokedName?.reason.contains("new name") == true, "\(String(describing: revokedName))")
        let otherCase = await #expect(throws: StoreError.self) {
            try await fixture.db.enroll(name: PrincipalName(rawValue: fixture.colleague.name.rawValue.uppercased())!, role: .responder, spkiFingerprint: "in-capitals",
                                        sealingKey: SealingPrivateKey.generate().publicKey.text, actor: .admin("t"))
        }
        #expect(otherCase?.reason.hasPrefix("\(fixture.colleague.name) was revoked") == true, "the same name in capitals: \(String(describing: otherCase))")
        let liveInCapitals = await #expect(throws: StoreError.self) {
            try await fixture.db.enroll(name: PrincipalName(rawValue: fixture.responder.name.rawValue.uppercased())!, role: .responder, spkiFingerprint: "capitals-2",
                                        sealingKey: SealingPrivateKey.generate().publicKey.text, actor: .admin("t"))
        }
        #expect(liveInCapitals?.reason.hasPrefix("a principal named \(fixture.responder.name) exists") == true, "\(String(describing: liveInCapitals))")
        await #expect(throws: StoreError.code(.conflict), "a revoked principal's sealing key stays theirs") {
            try await fixture.enroll("resp-new", .responder, fixture.memberKeys[1])
        }
        #expect(try fixture.db.verifyAudit() > 0)
    }

    @Test func rotationMakesTheNewEpochCurrentAndGrantsAreChecked() async throws {
        let fixture = try await StoreFixture()
        let sealedToFirst = try await fixture.submit("before the rotation")
        let first = try fixture.db.currentEpoch(queue: .national)!
        try await fixture.rotate(by: fixture.colleague)
        let second = try fixture.db.currentEpoch(queue: .national)!
        #expect(first.id != second.id && second.id == fixture.epochKey.id.uuidString.lowercased())
        #expect(try await fixture.db.epochs(queue: .national).count == 2)

        let stray = SealingPrivateKey.generate()
        let wrongMember = try Grant.seal(stray, to: fixture.memberKeys[1].publicKey)
        await #expect(throws: StoreError.code(.invalid)) {
            try await fixture.db.createEpoch(queue: .national, publicKey: stray.publicKey.text, grants: ["resp-amina": wrongMember], actor: StoreActor(fixture.responder))
        }
        await #expect(throws: StoreError.code(.forbidden)) {
            try await fixture.db.createEpoch(queue: .national, publicKey: stray.publicKey.text, grants: [:], actor: StoreActor(fixture.gateway))
        }
        let late = try await fixture.enroll("resp-late", .responder, SealingPrivateKey.generate())
        let grant = try Grant.seal(fixture.epochKey, to: SealingPublicKey(text: late.sealingKey!))
        await #expect(throws: StoreError.code(.forbidden)) {
            try await fixture.db.addGrants(epochID: second.id, grants: ["resp-late": grant], actor: StoreActor(late))
        }
        #expect(try await fixture.db.addGrants(epochID: second.id, grants: ["resp-late": grant], actor: StoreActor(fixture.responder)).isEmpty)
        #expect(try await fixture.db.grants(for: late).map(\.epochID) == [second.id])

        // The relay cannot tell a grant that opens from one that does not: a colleague's grant keeps the one held (else any
        // key holder could lock a member out), a supervisor's replaces it (the way to mend one that does not open).
        let another = try Grant.seal(fixture.epochKey, to: SealingPublicKey(text: late.sealingKey!))
        let trail = try fixture.db.verifyAudit()
        #expect(try await fixture.db.addGrants(epochID: second.id, grants: ["resp-late": another], actor: StoreActor(fixture.colleague)) == ["resp-late"])
        #expect(try await fixture.db.grants(for: late).map(\.sealed) == [grant] && fixture.db.verifyAudit() == trail, "kept, and nothing audited")
        #expect(try await fixture.db.addGrants(epochID: second.id, grants: ["resp-late": another], actor: StoreActor(fixture.supervisor)).isEmpty)
        #expect(try await fixture.db.grants(for: late).map(\.sealed) == [another])
        #expect(try await fixture.db.grants(for: late).map(\.grantedBy) == [fixture.supervisor.name.rawValue])
        let replaced = try await fixture.db.auditEntries(after: trail)
        #expect(replaced.map(\.entry.action) == ["grant"] && replaced.first?.entry.detail.contains("\"replaced\":\"true\"") == true)

        // A case is claimed or assigned only by whoever holds the epoch it is sealed to, current or not.
        let sealedToSecond = try await fixture.submit("after the rotation")
        let refused = await #expect(throws: StoreError.self) { try await fixture.db.transition(id: sealedToFirst.id, action: .claim, actor: StoreActor(late)) }
        #expect(refused?.code == .forbidden && refused?.reason.contains("no key for the epoch this case is sealed to") == true, "\(String(describing: refused))")
        await #expect(throws: StoreError.code(.forbidden)) {
            try await fixture.db.transition(id: sealedToFirst.id, action: .assign, actor: StoreActor(fixture.supervisor), assignee: late.name)
        }
        #expect(try await fixture.db.transition(id: sealedToSecond.id, action: .claim, actor: StoreActor(late)).assignee == "resp-late")
        #expect(try await fixture.db.transition(id: sealedToFirst.id, action: .claim, actor: StoreActor(fixture.responder)).state == .claimed,
                "an older grant still opens an older case")
    }

    /// What no one can open is never acknowledged: once no active member holds the current key, intake refuses until a
    /// member replaces it. While colleagues hold it, only one of them may: anyone else would lock them out of new cases.
    @Test func aKeyNoActiveMemberHoldsTakesNoDisclosureAndOnlyItsHoldersReplaceIt() async throws {
        let fixture = try await StoreFixture()
        let newcomerKey = SealingPrivateKey.generate()
        let newcomer = try await fixture.enroll("resp-new", .responder, newcomerKey)
        func rotateByNewcomer() async throws {
            let epoch = SealingPrivateKey.generate()
            _ = try await fixture.db.createEpoch(queue: .national, publicKey: epoch.publicKey.text,
                                                 grants: ["resp-new": try Grant.seal(epoch, to: newcomerKey.publicKey)], actor: StoreActor(newcomer))
            fixture.epochKey = epoch
        }
        let refused = await #expect(throws: StoreError.self) { try await rotateByNewcomer() }
        #expect(refused?.code == .forbidden && refused?.reason.contains("you do not hold the current key") == true, "\(String(describing: refused))")

        for member in [fixture.responder, fixture.colleague, fixture.supervisor].compactMap({ $0 }) {
            _ = try await fixture.db.revoke(name: member.name, actor: .admin("test"))
        }
        let unheld = await #expect(throws: StoreError.self) { try await fixture.submit("sealed to a key no one holds any more") }
        #expect(unheld?.code == .noSealingKey && unheld?.reason.contains("no active member holds the current key") == true, "\(String(describing: unheld))")
        #expect(try await fixture.db.queuesWithoutSealingKey() == [.national] && !fixture.db.currentEpochIsHeld(queue: .national))

        try await rotateByNewcomer()
        #expect(try await fixture.db.queuesWithoutSealingKey().isEmpty && fixture.db.currentEpochIsHeld(queue: .national))
        let stored = try await fixture.submit("sealed to the newcomer's key")

        // A gateway revoked while its request was on the way (its certificate passed when the headers came) stores
        // nothing and reads nothing.
        _ = try await fixture.db.revoke(name: fixture.gateway.name, actor: .admin("test"))
        await #expect(throws: StoreError.code(.revoked)) { try await fixture.submit("after the gateway was revoked") }
        let (followupID, followup) = try fixture.sealed("more, after the revocation", kind: .followup, in: stored.id)
        await #expect(throws: StoreError.code(.revoked)) {
            try await fixture.db.addFollowup(gateway: fixture.gateway, caseID: stored.id, objectID: followupID, envelope: followup,
                                             idempotencyKey: "followup-after-revocation", requestHash: Array(followupID.uuidString.utf8))
        }
        await #expect(throws: StoreError.code(.revoked)) {
            try await fixture.db.replies(gateway: fixture.gateway, receiptHash: stored.receipt.digest)
        }
    }
}

@Suite struct UpdatedFlagTests {
    /// A follow-up flags the case; only the responder who holds it (or anyone, while no one does) clears the flag by opening it.
    @Test func aFollowUpStaysFlaggedUntilTheResponderHoldingTheCaseOpensIt() async throws {
        let fixture = try await StoreFixture()
        let result = try await fixture.submit("the disclosure")
        let amina = StoreActor(fixture.responder), khadija = StoreActor(fixture.supervisor)
        try await fixture.db.transition(id: result.id, action: .claim, actor: amina)
        func followUp() async throws {
            let (id, envelope) = try fixture.sealed("more", kind: .followup, in: result.id)
            _ = try await fixture.db.addFollowup(gateway: fixture.gateway, caseID: result.id, objectID: id, envelope: envelope,
                                                 idempotencyKey: "followup-key-\(UUID().uuidString)", requestHash: Array(id.uuidString.utf8))
        }
        try await followUp()
        #expect(try await fixture.db.caseSummary(id: result.id).updated)
        _ = try await fixture.db.fetchCase(id: result.id, actor: khadija)
        #expect(try await fixture.db.caseSummary(id: result.id).updated, "a supervisor looking in does not hide it from amina")
        _ = try await fixture.db.fetchCase(id: result.id, actor: amina)
        #expect(try await fixture.db.caseSummary(id: result.id).updated == false)

        try await fixture.db.transition(id: result.id, action: .release, actor: amina)
        try await followUp()
        _ = try await fixture.db.fetchCase(id: result.id, actor: khadija)
        #expect(try await fixture.db.caseSummary(id: result.id).updated == false, "while no one holds the case, whoever opens it has seen it")
    }

    /// A case `holder` claimed and fetched, with a follow-up sealed to a new epoch that only `keyHolder` holds.
    private func caseWithFollowUpSealedBeyond(_ fixture: StoreFixture, holder: Principal,
                                              keyHolder: Principal) async throws -> (IntakeResult, EpochInfo, SealingPrivateKey) {
        let result = try await fixture.submit("the disclosure")
        try await fixture.db.transition(id: result.id, action: .claim, actor: StoreActor(holder))
        let newKey = SealingPrivateKey.generate(suite: .x25519ChaChaPoly)
        let epoch = try await fixture.db.createEpoch(queue: .national, publicKey: newKey.publicKey.text, grants: [
            keyHolder.name.rawValue: try Grant.seal(newKey, to: fixture.key(of: keyHolder).publicKey),
        ], actor: StoreActor(keyHolder))
        let (id, envelope) = try fixture.sealed("he moved to Tanger", kind: .followup, in: result.id, to: newKey.publicKey)
        _ = try await fixture.db.addFollowup(gateway: fixture.gateway, caseID: result.id, objectID: id, envelope: envelope,
                                             idempotencyKey: "followup-key-\(UUID().uuidString)", requestHash: Array(id.uuidString.utf8))
        _ = try await fixture.db.fetchCase(id: result.id, actor: StoreActor(holder))
        return (result, epoch, newKey)
    }

    /// Fetching is not reading: a holder without the key a follow-up is sealed to leaves it flagged, and so cannot
    /// close over it, until a colleague grants that key and the holder opens the case again.
    @Test func aFollowUpTheOpenerHasNoKeyForStaysFlagged() async throws {
        let fixture = try await StoreFixture()
        let amina = StoreActor(fixture.responder), khadija = StoreActor(fixture.supervisor)
        let (result, epoch, newKey) = try await caseWithFollowUpSealedBeyond(fixture, holder: fixture.responder, keyHolder: fixture.supervisor)
        #expect(try await fixture.db.caseSummary(id: result.id).updated, "amina fetched a follow-up she cannot open")
        let refusal = await #expect(throws: StoreError.self) {
            try await fixture.db.transition(id: result.id, action: .close, actor: amina, outcome: "no_further_action")
        }
        #expect(refusal?.code == .invalidState && refusal?.reason.contains("a queue key you do not hold") == true
                && refusal?.reason.contains("amane grant resp-amina") == true, "opening again would not help: \(String(describing: refusal))")
        try await fixture.db.addGrants(epochID: epoch.id, grants: [
            fixture.responder.name.rawValue: try Grant.seal(newKey, to: fixture.key(of: fixture.responder).publicKey),
        ], actor: khadija)
        _ = try await fixture.db.fetchCase(id: result.id, actor: amina)
        #expect(try await fixture.db.caseSummary(id: result.id).updated == false, "with the key, opening is reading")
    }

    /// A supervisor who holds such a case has no supervisor above to close it: the way out is another holder.
    @Test func aSupervisorHoldingACaseWithAFollowUpSheCannotOpenIsToldToAssignIt() async throws {
        let fixture = try await StoreFixture()
        let amina = StoreActor(fixture.responder), khadija = StoreActor(fixture.supervisor)
        let (result, _, _) = try await caseWithFollowUpSealedBeyond(fixture, holder: fixture.supervisor, keyHolder: fixture.responder)
        let refusal = await #expect(throws: StoreError.self) {
            try await fixture.db.transition(id: result.id, action: .close, actor: khadija, outcome: "no_further_action")
        }
        #expect(refusal?.reason.contains("assign it to a colleague who holds that key") == true
                && refusal?.reason.contains("a supervisor who does not hold") == false, "\(String(describing: refusal))")
        try await fixture.db.transition(id: result.id, action: .assign, actor: khadija, assignee: fixture.responder.name)
        _ = try await fixture.db.fetchCase(id: result.id, actor: amina)
        #expect(try await fixture.db.transition(id: result.id, action: .close, actor: amina, outcome: "no_further_action").state == .closed)
    }

    @Test func aCaseWithAnUnopenedFollowUpIsNeitherClosedNorReferredByItsHolder() async throws {
        let fixture = try await StoreFixture()
        let result = try await fixture.submit("the disclosure")
        let amina = StoreActor(fixture.responder), khadija = StoreActor(fixture.supervisor)
        try await fixture.db.transition(id: result.id, action: .claim, actor: amina)
        _ = try await fixture.db.fetchCase(id: result.id, actor: amina)
        let (id, envelope) = try fixture.sealed("she is in Tanger now", kind: .followup, in: result.id)
        _ = try await fixture.db.addFollowup(gateway: fixture.gateway, caseID: result.id, objectID: id, envelope: envelope,
                                             idempotencyKey: "followup-key-\(UUID().uuidString)", requestHash: Array(id.uuidString.utf8))
        let trailBefore = try fixture.db.verifyAudit()
        for (action, referral, outcome) in [(TriageAction.close, nil, "no_further_action"), (.refer, "police", nil)] {
            let refusal = await #expect(throws: StoreError.self, "\(action)") {
                try await fixture.db.transition(id: result.id, action: action, actor: amina, referral: referral, outcome: outcome)
            }
            #expect(refusal?.code == .invalidState && refusal?.reason.contains("follow-up that you have not opened") == true, "\(String(describing: refusal))")
        }
        #expect(try fixture.db.verifyAudit() == trailBefore, "a refusal writes nothing")
        #expect(try await fixture.db.caseSummary(id: result.id).state == .claimed)
        // The reply key opens nothing, so it leaves the follow-up unread.
        _ = try await fixture.db.replyKey(caseID: result.id, actor: amina)
        #expect(try await fixture.db.caseSummary(id: result.id).updated)
        _ = try await fixture.db.fetchCase(id: result.id, actor: amina)
        try await fixture.db.transition(id: result.id, action: .refer, actor: amina, referral: "police")
        #expect(try await fixture.db.caseSummary(id: result.id).referral == "police")

        // The rule binds the case's holder: a supervisor may still close it over their head (a duplicate, a mistake).
        let other = try await fixture.submit("another")
        try await fixture.db.transition(id: other.id, action: .claim, actor: amina)
        let (otherID, otherEnvelope) = try fixture.sealed("more", kind: .followup, in: other.id)
        _ = try await fixture.db.addFollowup(gateway: fixture.gateway, caseID: other.id, objectID: otherID, envelope: otherEnvelope,
                                             idempotencyKey: "followup-key-\(UUID().uuidString)", requestHash: Array(otherID.uuidString.utf8))
        try await fixture.db.transition(id: other.id, action: .close, actor: khadija, outcome: "duplicate")
        #expect(try await fixture.db.caseSummary(id: other.id).state == .closed)
    }
}
