public import Foundation
import GRDB
public import RelayCore
import RelayFormat

/// Which cases to list. Empty fields do not filter.
public struct QueueFilter: Sendable, Equatable {
    public var queue: QueueName?
    public var states: Set<CaseState>
    public var urgency: Urgency?
    public var category: String?
    public var assigneeID: String?
    /// Lowercase hex digits (and dashes) that a case id starts or ends with: how a short id is resolved.
    public var idMatch: String?
    /// Only cases past their SLA (`CaseSummary.slaDeadline`): what a page of the SLA alarm asks about.
    public var overdue: Bool

    public init(queue: QueueName? = nil, states: Set<CaseState> = [], urgency: Urgency? = nil, category: String? = nil, assigneeID: String? = nil,
                idMatch: String? = nil, overdue: Bool = false) {
        self.queue = queue
        self.states = states
        self.urgency = urgency
        self.category = category
        self.assigneeID = assigneeID
        self.idMatch = idMatch
        self.overdue = overdue
    }
}

/// A position in the queue's order (urgency, then arrival): the last case of a page.
public struct QueueCursor: Sendable, Equatable {
    public var urgencyRank: Int
    public var id: String

    public init(urgencyRank: Int, id: String) {
        self.urgencyRank = urgencyRank
        self.id = id
    }

    /// An opaque token for clients.
    public var token: String { Data("\(urgencyRank):\(id)".utf8).base64EncodedString() }

    public init?(token: String) {
        guard let data = Data(base64Encoded: token), let text = String(data: data, encoding: .utf8) else { return nil }
        let parts = text.split(separator: ":", maxSplits: 1)
        guard parts.count == 2, let rank = Int(parts[0]), Urgency(rank: rank) != nil, UUID(uuidString: String(parts[1])) != nil else { return nil }
        self.init(urgencyRank: rank, id: String(parts[1]))
    }
}

public struct QueuePage: Sendable, Equatable {
    public var cases: [CaseSummary]
    public var next: QueueCursor?
}

/// A case with everything sealed in it, for a member to open locally.
public struct CaseDetail: Sendable, Equatable {
    public var summary: CaseSummary
    public var disclosure: SealedItem?
    public var items: [SealedItem]
    /// The submitting gateway's sealing key, for sealing replies to the reporter.
    public var gatewayKey: String?
}

extension RelayDatabase {
    /// Lists cases urgent first, then in order of arrival, one page after `cursor`. Walks the urgency index
    /// (its entries are ordered by rowid within a rank), never OFFSET.
    public func listQueue(_ filter: QueueFilter, after cursor: QueueCursor? = nil, limit: Int = 50) async throws -> QueuePage {
        let limit = max(1, min(limit, 500))
        let pastSLA = filter.overdue ? Self.pastSLA(at: nowSeconds, policy: options.policy) : nil
        return try await pool.read { db in
            var records: [DisclosureRecord] = []
            for request in try Self.queueRequests(db, filter, pastSLA: pastSLA, after: cursor) where records.count <= limit {
                records += try request.limit(limit + 1 - records.count).fetchAll(db)
            }
            let names = try Self.principalNames(db)
            let page = records.prefix(limit)
            let next = records.count > limit ? page.last.map { QueueCursor(urgencyRank: $0.urgencyRank, id: $0.id) } : nil
            return QueuePage(cases: page.map { $0.summary(assigneeName: $0.assigneeID.flatMap { names[$0] }) }, next: next)
        }
    }

    /// The queries of a page, read in turn until it is full: after a cursor, the rest of its urgency from the
    /// cursor's case on, then the urgencies after it. Each is a seek into the index, however deep the page.
    static func queueRequests(_ db: Database, _ filter: QueueFilter, pastSLA: SQL? = nil, after cursor: QueueCursor?) throws -> [QueryInterfaceRequest<DisclosureRecord>] {
        // A purged case is listed no more, but its short id still resolves: its labels remain.
        var request = filter.idMatch == nil ? DisclosureRecord.filter(DisclosureRecord.Columns.purgedAt == nil) : DisclosureRecord.all()
        if let queue = filter.queue { request = request.filter(DisclosureRecord.Columns.queue == queue.rawValue) }
        if !filter.states.isEmpty { request = request.filter(filter.states.map(\.rawValue).contains(DisclosureRecord.Columns.state)) }
        if let urgency = filter.urgency { request = request.filter(DisclosureRecord.Columns.urgencyRank == urgency.rank) }
        if let category = filter.category { request = request.filter(DisclosureRecord.Columns.category == category) }
        if let assignee = filter.assigneeID { request = request.filter(DisclosureRecord.Columns.assigneeID == assignee) }
        if let pastSLA { request = request.filter(pastSLA) }
        if let match = filter.idMatch {
            request = request.filter(DisclosureRecord.Columns.id.like("\(match)%") || DisclosureRecord.Columns.id.like("%\(match)"))
        }
        request = request
            .select(sql: """
                id, queue, gatewayID, epochID, urgencyRank, category, language, channel, region, state, assigneeID,
                claimExpiresAt, onHold, updated, referral, outcome, receivedAt, closedAt, purgedAt, waitingSince, unopenedSince,
                NULL AS receiptHash, NULL AS envelope
                """)
            .order(DisclosureRecord.Columns.urgencyRank, Column.rowID)
        guard let cursor else { return [request] }
        var position = DisclosureRecord.select(Column.rowID, as: Int64.self).filter(DisclosureRecord.Columns.id == cursor.id)
        if let queue = filter.queue { position = position.filter(DisclosureRecord.Columns.queue == queue.rawValue) }
        guard let rowID = try position.fetchOne(db) else { throw StoreError(.invalid, "the cursor names no case") }
        return [request.filter(DisclosureRecord.Columns.urgencyRank == cursor.urgencyRank && Column.rowID > rowID),
                request.filter(DisclosureRecord.Columns.urgencyRank > cursor.urgencyRank)]
    }

    /// True for a case past its SLA at `now`: the SQL of `CaseSummary.slaDeadline`.
    static func pastSLA(at now: Int64, policy: TriagePolicy) -> SQL {
        let limits = Urgency.allCases.map { "WHEN \($0.rank) THEN \(now - policy.slaWait($0))" }.joined(separator: " ")
        return SQL(sql: """
            COALESCE((CASE WHEN state = 'new' THEN COALESCE(waitingSince, receivedAt) \
            WHEN state IN ('claimed', 'in_progress', 'referred') THEN unopenedSince END) < (CASE urgencyRank \(limits) END), 0)
            """)
    }

    static func principalNames(_ db: Database) throws -> [String: String] {
        Dictionary(uniqueKeysWithValues: try Row.fetchAll(db, sql: "SELECT id, name FROM principal").map { ($0["id"], $0["name"]) })
    }

    /// The metadata of one case, without sealed content and without an audit entry.
    public func caseSummary(id: String) async throws -> CaseSummary {
        try await pool.read { db in
            let record = try Self.record(db, id: id)
            return record.summary(assigneeName: try Self.principalNames(db)[record.assigneeID ?? ""])
        }
    }

    /// Every sealed object of a case, appending a `fetch` audit entry. Opening renews the opener's claim, and
    /// clears the `updated` flag when the opener holds the case or no one does, and holds the key of every
    /// follow-up: someone else looking in, or a fetch that cannot open what came, does not hide a follow-up.
    public func fetchCase(id: String, actor: StoreActor) async throws -> CaseDetail {
        guard actor.role.isMember else { throw StoreError(.forbidden, "only responders and supervisors open cases") }
        let now = nowSeconds
        let claimExpiry = claimExpiry(now)
        return try await committer.write { db in
            let visibleQueue = try Self.requireActive(db, actor)
            var record = try Self.record(db, id: id, queue: visibleQueue)
            let items = try Self.sealedItems(db, caseID: id)
            let names = try Self.principalNames(db)
            let gatewayKey = try String.fetchOne(db, sql: "SELECT sealingKey FROM principal WHERE id = ?", arguments: [record.gatewayID])
            let seen = try record.updated && (record.assigneeID == nil || record.assigneeID == actor.principalID)
                && Self.followupEpochsWithoutKey(db, caseID: record.id, member: actor.principalID).isEmpty
            if seen { record.markOpened() }
            if record.renewClaim(by: actor.principalID, until: claimExpiry) || seen { try record.update(db) }
            try AuditLog.append(db, time: now, actor: actor, action: "fetch", subject: id,
                                detail: ["objects": String(items.count + (record.envelope == nil ? 0 : 1))])
            let disclosure = record.envelope.map {
                SealedItem(id: id, kind: .disclosure, author: names[record.gatewayID] ?? "", epochID: record.epochID,
                           envelope: Array($0), gatewayEnvelope: nil, createdAt: record.receivedAt)
            }
            return CaseDetail(summary: record.summary(assigneeName: record.assigneeID.flatMap { names[$0] }),
                              disclosure: disclosure, items: items, gatewayKey: gatewayKey)
        }
    }

    /// When a claim taken or renewed now lapses: rounded up to the minute, so that it does not date the work to the second.
    private func claimExpiry(_ now: Int64) -> Int64 {
        (now + Int64(options.policy.claimLeaseSeconds) + 59) / 60 * 60
    }

    /// "; NAME holds it until TIME" for an open case someone holds, else nothing (a closed case keeps who closed it).
    static func claimant(_ db: Database, _ record: DisclosureRecord) throws -> String {
        guard record.caseState != .closed, let holder = try record.assigneeID.flatMap({ try principalNames(db)[$0] }) else { return "" }
        let until = record.claimExpiresAt.map { " until " + Date(timeIntervalSince1970: TimeInterval($0)).formatted(.iso8601) } ?? ""
        return "; \(holder) holds it\(until)"
    }

    /// Revocation takes effect inside the store too, whatever the caller checked before.
    /// Throws unless the actor is an active principal, and returns its queue (nil for the relay and admins).
    @discardableResult
    static func requireActive(_ db: Database, _ actor: StoreActor) throws -> String? {
        guard let id = actor.principalID else { return nil }
        guard let queue = try String.fetchOne(db.cachedStatement(sql: "SELECT queue FROM principal WHERE id = ? AND revokedAt IS NULL"), arguments: [id]) else {
            throw StoreError(.revoked, "\(actor.name) is revoked")
        }
        return queue
    }

    /// The case `id`. Given a queue, a case of any other queue is not found, as if it did not exist.
    static func record(_ db: Database, id: String, queue: String? = nil) throws -> DisclosureRecord {
        guard let record = try DisclosureRecord.fetchOne(db, key: id.lowercased()), queue == nil || record.queue == queue else {
            throw StoreError(.notFound, "no case \(id)")
        }
        return record
    }

    /// Applies a triage action through the state machine, with the actor's role and claim checked.
    /// - Parameters:
    ///   - referral: for `refer`, a referral code from the taxonomy.
    ///   - outcome: for `close`, an outcome code from the taxonomy.
    ///   - assignee: for `assign`, the member who gets the case.
    @discardableResult
    public func transition(id: String, action: TriageAction, actor: StoreActor, referral: String? = nil, outcome: String? = nil,
                           assignee: PrincipalName? = nil) async throws -> CaseSummary {
        let now = nowSeconds
        let claimExpiry = claimExpiry(now)
        let taxonomy = self.taxonomy
        if action == .refer, !taxonomy.contains(referral ?? "", in: .referral) {
            throw StoreError(.invalid, taxonomy.unknown(referral ?? "", in: .referral))
        }
        if action == .close, !taxonomy.contains(outcome ?? "", in: .outcome) {
            throw StoreError(.invalid, taxonomy.unknown(outcome ?? "", in: .outcome))
        }
        return try await committer.write { db in
            let visibleQueue = try Self.requireActive(db, actor)
            var record = try Self.record(db, id: id, queue: visibleQueue)
            guard record.purgedAt == nil else { throw StoreError(.invalidState, "case \(id) was purged") }
            let isAssignee = record.assigneeID != nil && record.assigneeID == actor.principalID
            // Claiming a case one already holds renews the lease, as a note or reply does.
            if action == .claim, record.renewClaim(by: actor.principalID, until: claimExpiry) {
                try record.update(db)
                try AuditLog.append(db, time: now, actor: actor, action: "claim.renew", subject: record.id, detail: ["state": record.state])
                return record.summary(assigneeName: try Self.principalNames(db)[record.assigneeID ?? ""])
            }
            let next: CaseState
            do {
                next = try TriageMachine.next(after: action, from: record.caseState, by: actor.role, isAssignee: isAssignee)
            } catch let error as CoreError {
                // Who holds it matters unless the role alone forbids the action.
                let holder = error.code == .roleNotAllowed ? "" : try Self.claimant(db, record)
                throw StoreError(error.code == .transitionNotAllowed ? .invalidState : .forbidden, error.reason + holder)
            }
            // Closing or referring is deciding: not before its holder (or, unclaimed, anyone) has opened what the reporter added.
            if action == .close || action == .refer, record.updated, isAssignee || record.assigneeID == nil {
                let verb = action == .close ? "close" : "refer"
                throw StoreError(.invalidState, try Self.followupEpochsWithoutKey(db, caseID: record.id, member: actor.principalID).isEmpty ? """
                    the reporter sent a follow-up that \(isAssignee ? "you have" : "no one has") not opened yet: open the case before you \(verb) it
                    """ : """
                    the reporter sent a follow-up sealed to a queue key you do not hold, so you have not read it: a colleague who holds \
                    it runs `amane grant \(actor.name) --fingerprint …`, then open the case again before you \(verb) it (meanwhile \
                    \(actor.role == .supervisor ? "assign it to a colleague who holds that key" : "a supervisor who does not hold the case may \(verb) it"))
                    """)
            }
            var detail = ["from": record.state, "to": next.rawValue]
            switch action {
            case .claim:
                try Self.requireKey(db, for: record, member: actor.principalID, name: actor.name, claiming: true)
                record.assigneeID = actor.principalID
                record.claimExpiresAt = claimExpiry
            case .assign:
                guard let assignee, let member = try PrincipalRecord.filter(PrincipalRecord.Columns.name == assignee.rawValue).fetchOne(db)?.principal,
                      member.isActive, member.role.isMember, member.queue.rawValue == record.queue else {
                    throw StoreError(.notFound, "no active responder named \(assignee?.rawValue ?? "") in the queue \(record.queue)")
                }
                try Self.requireKey(db, for: record, member: member.id, name: member.name.rawValue, claiming: false)
                if let previous = record.assigneeID, previous != member.id { detail["previousAssignee"] = try Self.principalNames(db)[previous] }
                record.assigneeID = member.id
                record.claimExpiresAt = claimExpiry
                detail["assignee"] = member.name.rawValue
            case .start:
                record.claimExpiresAt = claimExpiry
            case .release, .reopen, .expire, .followup:
                record.returnToQueue(as: next, reopenedAt: action == .reopen || action == .followup ? now : nil)
            case .refer:
                record.referral = referral
                record.claimExpiresAt = nil
                detail["referral"] = referral
            case .close:
                record.outcome = outcome
                record.closedAt = now / 60 * 60
                record.claimExpiresAt = nil
                detail["outcome"] = outcome
            }
            record.state = next.rawValue
            try record.update(db)
            try AuditLog.append(db, time: now, actor: actor, action: action.rawValue, subject: record.id, detail: detail)
            return record.summary(assigneeName: try Self.principalNames(db)[record.assigneeID ?? ""])
        }
    }

    /// Sets or lifts a hold, which keeps a closed case from being purged. Supervisors only.
    public func setHold(id: String, on: Bool, actor: StoreActor) async throws {
        guard actor.role == .supervisor else { throw StoreError(.forbidden, "only a supervisor sets a hold") }
        let now = nowSeconds
        try await committer.write { db in
            let visibleQueue = try Self.requireActive(db, actor)
            let record = try Self.record(db, id: id, queue: visibleQueue)
            guard record.purgedAt == nil else { throw StoreError(.invalidState, "case \(id) was purged") }
            try db.execute(sql: "UPDATE disclosure SET onHold = ? WHERE id = ?", arguments: [on, record.id])
            try AuditLog.append(db, time: now, actor: actor, action: on ? "hold.on" : "hold.off", subject: record.id)
        }
    }

    /// Returns cases whose claim ran out to `new`; returns how many.
    public func reapExpiredClaims() async throws -> Int {
        let now = nowSeconds
        return try await committer.write { db in
            let expired = try DisclosureRecord.filter(DisclosureRecord.Columns.claimExpiresAt < now
                && [CaseState.claimed.rawValue, CaseState.inProgress.rawValue].contains(DisclosureRecord.Columns.state)).fetchAll(db)
            for var record in expired {
                let next = try TriageMachine.next(after: .expire, from: record.caseState, by: .system, isAssignee: false)
                let detail = ["from": record.state, "to": next.rawValue]
                record.returnToQueue(as: next, reopenedAt: nil)
                try record.update(db)
                try AuditLog.append(db, time: now, actor: .relay, action: "expire", subject: record.id, detail: detail)
            }
            return expired.count
        }
    }

    /// Adds a note sealed to the queue's current epoch. Renews the actor's claim.
    public func addNote(caseID: String, objectID: UUID, envelope: [UInt8], actor: StoreActor) async throws {
        try await addSealed(caseID: caseID, objectID: objectID, kind: .note, envelope: envelope, gatewayEnvelope: nil, actor: actor)
    }

    /// Adds a reply: the copy sealed to the submitting gateway, and the copy sealed to the epoch for the record.
    public func addReply(caseID: String, objectID: UUID, envelope: [UInt8], gatewayEnvelope: [UInt8], actor: StoreActor) async throws {
        try await addSealed(caseID: caseID, objectID: objectID, kind: .reply, envelope: envelope, gatewayEnvelope: gatewayEnvelope, actor: actor)
    }

    /// A case held by someone who cannot open it is a case no one works on: its holder needs a grant of the
    /// epoch its disclosure is sealed to.
    /// The epochs of a case's follow-ups that `member` holds no key for: what fetching cannot have let them read.
    static func followupEpochsWithoutKey(_ db: Database, caseID: String, member: String?) throws -> [String] {
        try String.fetchAll(db.cachedStatement(sql: """
            SELECT DISTINCT epochID FROM sealedObject WHERE disclosureID = ? AND kind = 'followup'
                AND epochID NOT IN (SELECT epochID FROM "grant" WHERE principalID = ?)
            """), arguments: [caseID, member])
    }

    static func requireKey(_ db: Database, for record: DisclosureRecord, member: String?, name: String, claiming: Bool) throws {
        guard try !holdsGrant(db, epochID: record.epochID, principalID: member) else { return }
        throw StoreError(.forbidden, """
            \(claiming ? "you have" : "\(name) has") no key for the epoch this case is sealed to, so \(claiming ? "you" : "they") could not \
            open it: a colleague who has that key grants it first (amane grant \(name))
            """)
    }

    /// The key a reply to the case is sealed to (its gateway's), once the actor may add one. Asked before the
    /// reply is written, so that a refusal comes first; it opens nothing and changes nothing.
    public func replyKey(caseID: String, actor: StoreActor) async throws -> (gateway: String, key: String) {
        guard actor.role.isMember else { throw StoreError(.forbidden, "only responders and supervisors reply") }
        return try await pool.read { db in
            let record = try Self.record(db, id: caseID, queue: try Self.requireActive(db, actor))
            try Self.checkMayAdd(.reply, to: record, by: actor, db)
            let (gateway, key) = try Self.replyingGateway(db, record)
            return (gateway, key.text)
        }
    }

    /// The gateway that took the disclosure, and its key, while it can still hand a reply to the reporter.
    private static func replyingGateway(_ db: Database, _ record: DisclosureRecord) throws -> (String, SealingPublicKey) {
        guard let gateway = try PrincipalRecord.fetchOne(db, key: record.gatewayID), let keyText = gateway.sealingKey,
              let key = try? SealingPublicKey(text: keyText) else {
            throw StoreError(.invalidState, "the gateway that sent this case has no sealing key, so it cannot show a reply")
        }
        guard gateway.revokedAt == nil else {
            throw StoreError(.invalidState, """
                the gateway that took this disclosure (\(gateway.name)) is revoked, so the reporter can no longer fetch a reply \
                through it; add a note instead
                """)
        }
        return (gateway.name, key)
    }

    /// A supervisor adds to any case of the queue; a responder only to the case they hold.
    private static func checkMayAdd(_ kind: ObjectKind, to record: DisclosureRecord, by actor: StoreActor, _ db: Database) throws {
        guard record.purgedAt == nil else { throw StoreError(.invalidState, "case \(record.id) was purged") }
        if actor.role != .supervisor && record.assigneeID != actor.principalID {
            if [.closed, .referred].contains(record.caseState) {
                throw StoreError(.forbidden, "the case is \(record.state): only its holder, or a supervisor, adds a \(kind.name) now")
            }
            let lapsed = record.assigneeID == nil ? " (a claim lapses when its holder neither opens the case nor writes to it for a while)" : ""
            throw StoreError(.forbidden, "claim the case before adding a \(kind.name)\(lapsed)\(try Self.claimant(db, record))")
        }
    }

    private func addSealed(caseID: String, objectID: UUID, kind: ObjectKind, envelope: [UInt8], gatewayEnvelope: [UInt8]?,
                           actor: StoreActor) async throws {
        guard actor.role.isMember, let actorID = actor.principalID else { throw StoreError(.forbidden, "only responders and supervisors add \(kind.name)s") }
        let now = nowSeconds
        let claimExpiry = claimExpiry(now)
        try await committer.write { db in
            let visibleQueue = try Self.requireActive(db, actor)
            var record = try Self.record(db, id: caseID, queue: visibleQueue)
            try Self.checkMayAdd(kind, to: record, by: actor, db)
            let epochID = try Self.checkEnvelope(db, envelope, kind: kind, objectID: objectID, queue: QueueName(rawValue: record.queue) ?? .national)
            if let gatewayEnvelope {
                let (_, gatewayKey) = try Self.replyingGateway(db, record)
                let header: EnvelopeHeader
                do { header = try EnvelopeHeader.inspect(gatewayEnvelope) } catch let error as FormatError { throw StoreError(.invalid, "the gateway copy: \(error.plainReason)") }
                guard header.kind == .reply, header.objectID == objectID, header.keyID == gatewayKey.id else {
                    throw StoreError(.invalid, "the gateway copy is not a reply sealed to the submitting gateway's key")
                }
            }
            do {
                try SealedObjectRecord(id: objectID.uuidString.lowercased(), disclosureID: record.id, kind: kind.name, authorID: actorID,
                                       epochID: epochID, envelope: Data(envelope), gatewayEnvelope: gatewayEnvelope.map { Data($0) },
                                       createdAt: now / 60 * 60).insert(db)
            } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_PRIMARYKEY {
                throw StoreError(.duplicate, "an object with this id is stored already: seal a new one, with a new id, for another \(kind.name)")
            }
            if record.renewClaim(by: actorID, until: claimExpiry) { try record.update(db) }
            try AuditLog.append(db, time: now, actor: actor, action: kind.name, subject: record.id,
                                detail: ["object": objectID.uuidString.lowercased()])
        }
    }
}
