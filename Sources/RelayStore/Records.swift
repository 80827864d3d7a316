import Foundation
import GRDB
public import RelayCore

/// Who acts on the store: a principal, an admin on the host, or the relay itself.
public struct StoreActor: Sendable, Equatable {
    public var principalID: String?
    public var name: String
    public var role: Role

    public init(_ principal: Principal) {
        self.principalID = principal.id
        self.name = principal.name.rawValue
        self.role = principal.role
    }

    private init(principalID: String?, name: String, role: Role) {
        self.principalID = principalID
        self.name = name
        self.role = role
    }

    /// An admin working on the host with `amane-relayd admin`.
    public static func admin(_ user: String) -> StoreActor { StoreActor(principalID: nil, name: "admin:\(user)", role: .system) }

    /// The relay's own tasks: the lease reaper, the retention sweep.
    public static let relay = StoreActor(principalID: nil, name: "relay", role: .system)
}

struct PrincipalRecord: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "principal"
    var id: String
    var name: String
    var role: String
    var spkiFingerprint: String
    var sealingKey: String?
    var queue: String
    var createdAt: Int64
    var revokedAt: Int64?
    var certificateEndsAt: Int64?

    enum Columns {
        static let id = Column(CodingKeys.id)
        static let name = Column(CodingKeys.name)
        static let spkiFingerprint = Column(CodingKeys.spkiFingerprint)
        static let sealingKey = Column(CodingKeys.sealingKey)
        static let revokedAt = Column(CodingKeys.revokedAt)
    }

    var principal: Principal? {
        guard let name = PrincipalName(rawValue: name), let role = Role(rawValue: role), let queue = QueueName(rawValue: queue) else { return nil }
        return Principal(id: id, name: name, role: role, spkiFingerprint: spkiFingerprint, sealingKey: sealingKey,
                         queue: queue, createdAt: createdAt, revokedAt: revokedAt)
    }
}

struct DisclosureRecord: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "disclosure"
    var id: String
    var queue: String
    var gatewayID: String
    var epochID: String
    var urgencyRank: Int
    var category: String
    var language: String
    var channel: String
    var region: String?
    var state: String
    var assigneeID: String?
    var claimExpiresAt: Int64?
    var onHold: Bool
    var updated: Bool
    var referral: String?
    var outcome: String?
    var receiptHash: Data?
    var envelope: Data?
    var receivedAt: Int64
    var closedAt: Int64?
    var purgedAt: Int64?
    /// When a reopened case entered the queue again; nil for one never reopened (it waits since `receivedAt`).
    var waitingSince: Int64?
    /// When the earliest follow-up its holder has not opened came; nil while `updated` is false.
    var unopenedSince: Int64?

    enum Columns {
        static let id = Column(CodingKeys.id)
        static let queue = Column(CodingKeys.queue)
        static let gatewayID = Column(CodingKeys.gatewayID)
        static let urgencyRank = Column(CodingKeys.urgencyRank)
        static let category = Column(CodingKeys.category)
        static let state = Column(CodingKeys.state)
        static let assigneeID = Column(CodingKeys.assigneeID)
        static let claimExpiresAt = Column(CodingKeys.claimExpiresAt)
        static let onHold = Column(CodingKeys.onHold)
        static let receiptHash = Column(CodingKeys.receiptHash)
        static let closedAt = Column(CodingKeys.closedAt)
        static let purgedAt = Column(CodingKeys.purgedAt)
    }

    var caseState: CaseState { CaseState(rawValue: state) ?? .new }

    /// Extends the claim when `principalID` holds the case and works on it: on a note, a reply, or a claim again.
    /// Returns whether it did.
    mutating func renewClaim(by principalID: String?, until expiry: Int64) -> Bool {
        guard principalID != nil, assigneeID == principalID, [.claimed, .inProgress].contains(caseState) else { return false }
        claimExpiresAt = expiry
        return true
    }

    /// Moves the case to `state`, no one's: a release, an expired claim, or a reopen (`reopenedAt`: by a supervisor
    /// or a reporter's follow-up on a closed case). A reopened case is open again, so it has no outcome (the audit
    /// trail keeps the earlier one) and waits afresh, a follow-up not yet opened too; a referral made stays a fact of the case.
    mutating func returnToQueue(as state: CaseState, reopenedAt: Int64?) {
        self.state = state.rawValue
        assigneeID = nil
        claimExpiresAt = nil
        closedAt = nil
        if let reopenedAt {
            outcome = nil
            waitingSince = reopenedAt / 60 * 60
            unopenedSince = unopenedSince.map { max($0, reopenedAt / 60 * 60) }
        }
    }

    /// Raises the case to `urgency`, never lowers it; true if it rose. The case is then due no later than before,
    /// and no sooner than the new urgency's wait from `now`: it has not missed a limit it has only just been given.
    mutating func raise(to urgency: Urgency, at now: Int64, policy: TriagePolicy) -> Bool {
        guard urgency.rank < urgencyRank, let current = Urgency(rank: urgencyRank) else { return false }
        func sooner(_ since: Int64) -> Int64 { min(since + policy.slaWait(current) - policy.slaWait(urgency), now / 60 * 60) }
        waitingSince = sooner(waitingSince ?? receivedAt)
        unopenedSince = unopenedSince.map(sooner)
        urgencyRank = urgency.rank
        return true
    }

    /// A reporter's follow-up came: flagged until its holder opens it, counted from the earliest one not opened.
    mutating func markUpdated(at now: Int64) {
        updated = true
        unopenedSince = unopenedSince ?? now / 60 * 60
    }

    mutating func markOpened() {
        updated = false
        unopenedSince = nil
    }

    func summary(assigneeName: String?) -> CaseSummary {
        CaseSummary(
            id: id,
            labels: DisclosureLabels(queue: QueueName(rawValue: queue) ?? .national, urgency: Urgency(rank: urgencyRank) ?? .normal,
                                     category: category, language: language, channel: channel, region: region),
            state: caseState, assignee: assigneeName, claimExpiresAt: claimExpiresAt, onHold: onHold, updated: updated,
            referral: referral, outcome: outcome, receivedAt: receivedAt, waitingSince: waitingSince ?? receivedAt, purged: purgedAt != nil,
            epochID: epochID, unopenedSince: unopenedSince)
    }
}

struct SealedObjectRecord: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "sealedObject"
    var id: String
    var disclosureID: String
    var kind: String
    var authorID: String
    var epochID: String
    var envelope: Data
    var gatewayEnvelope: Data?
    var createdAt: Int64

    enum Columns {
        static let id = Column(CodingKeys.id)
        static let disclosureID = Column(CodingKeys.disclosureID)
        static let kind = Column(CodingKeys.kind)
    }
}

struct AuditRecord: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "audit"
    var seq: Int64
    var time: Int64
    var actor: String
    var action: String
    var subject: String
    var detail: String
    var prevHash: Data
    var hash: Data

    enum Columns {
        static let seq = Column(CodingKeys.seq)
    }

    init(_ chained: ChainedAuditEntry) {
        seq = chained.entry.seq
        time = chained.entry.time
        actor = chained.entry.actor
        action = chained.entry.action
        subject = chained.entry.subject
        detail = chained.entry.detail
        prevHash = Data(chained.prevHash)
        hash = Data(chained.hash)
    }

    var chained: ChainedAuditEntry {
        ChainedAuditEntry(entry: AuditEntry(seq: seq, time: time, actor: actor, action: action, subject: subject, detail: detail),
                          prevHash: Array(prevHash), hash: Array(hash))
    }
}
