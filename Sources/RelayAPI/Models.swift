public import RelayCore

/// What a reporter told, as a gateway posts it in the clear. The relay seals it at once.
public struct DisclosureContent: Codable, Sendable, Equatable {
    public var narrative: String
    public var answers: [String: AnswerValue]?

    public init(narrative: String, answers: [String: AnswerValue]? = nil) {
        self.narrative = narrative
        self.answers = answers
    }
}

/// An answer to a gateway's question: one string or a list of strings.
public enum AnswerValue: Codable, Sendable, Equatable {
    case text(String)
    case list([String])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let text = try? container.decode(String.self) {
            self = .text(text)
        } else {
            self = .list(try container.decode([String].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .text(let text): try container.encode(text)
        case .list(let list): try container.encode(list)
        }
    }
}

/// `POST /v1/disclosures`: labels plus exactly one of `content` and `sealed`.
public struct DisclosureSubmission: Codable, Sendable, Equatable {
    public var queue: String?
    public var urgency: String
    public var category: String
    public var language: String
    public var channel: String
    public var region: String?
    public var content: DisclosureContent?
    /// A base64 envelope the gateway sealed to `GET /v1/queues/{q}/sealing-key`; its payload is `DisclosureContent` as JSON.
    public var sealed: String?
    /// With `sealed`: a value the gateway derives from the plaintext under the idempotency key, the same for the
    /// same content. A retry sealed afresh is then recognised by it instead of by the envelope's bytes.
    public var contentTag: String?

    public init(queue: String? = nil, urgency: String, category: String, language: String, channel: String, region: String? = nil,
                content: DisclosureContent? = nil, sealed: String? = nil, contentTag: String? = nil) {
        self.queue = queue
        self.urgency = urgency
        self.category = category
        self.language = language
        self.channel = channel
        self.region = region
        self.content = content
        self.sealed = sealed
        self.contentTag = contentTag
    }
}

/// The answer to an accepted disclosure. The receipt is shown to the reporter and never stored in the clear.
public struct DisclosureReceipt: Codable, Sendable, Equatable {
    public var id: String
    public var receipt: String
    public var receivedAt: String

    public init(id: String, receipt: String, receivedAt: String) {
        self.id = id
        self.receipt = receipt
        self.receivedAt = receivedAt
    }
}

/// `POST /v1/followups`.
public struct FollowupSubmission: Codable, Sendable, Equatable {
    public var receipt: String
    public var content: DisclosureContent?
    /// For `sealed`, the follow-up's object id must be given, as in the envelope.
    public var id: String?
    public var sealed: String?
    /// With `sealed`: as a disclosure's, so that a retry sealed afresh (another id) is recognised.
    public var contentTag: String?
    /// What the reporter now tells may make the case more urgent: it is raised to this, never lowered.
    public var urgency: String?

    public init(receipt: String, content: DisclosureContent? = nil, id: String? = nil, sealed: String? = nil, contentTag: String? = nil,
                urgency: String? = nil) {
        self.receipt = receipt
        self.content = content
        self.id = id
        self.sealed = sealed
        self.contentTag = contentTag
        self.urgency = urgency
    }
}

public struct FollowupAccepted: Codable, Sendable, Equatable {
    public var id: String
    public var receivedAt: String

    public init(id: String, receivedAt: String) {
        self.id = id
        self.receivedAt = receivedAt
    }
}

/// The id of what a note, a reply or a grant upload stored.
public struct Accepted: Codable, Sendable, Equatable {
    public var id: String
    public init(id: String) { self.id = id }
}

/// `POST /v1/grants`: the epoch, and the members who held a grant of it already and kept it (only a supervisor's replaces one).
public struct GrantsStored: Codable, Sendable, Equatable {
    public var id: String
    public var kept: [String]
    public init(id: String, kept: [String]) {
        self.id = id
        self.kept = kept
    }

    /// A relay older than `kept` answers without it: it replaced every grant, so none was kept.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(String.self, forKey: .id)
        kept = try container.decodeIfPresent([String].self, forKey: .kept) ?? []
    }
}

/// `POST /v1/replies/fetch`: the receipt travels in the body, never in a URL.
public struct ReplyFetch: Codable, Sendable, Equatable {
    public var receipt: String
    public init(receipt: String) { self.receipt = receipt }
}

public struct SealedReply: Codable, Sendable, Equatable {
    public var id: String
    public var sealed: String
    public var createdAt: String

    public init(id: String, sealed: String, createdAt: String) {
        self.id = id
        self.sealed = sealed
        self.createdAt = createdAt
    }
}

/// `GET /v1/disclosures/{id}/reply-key`: what a reply to the case is sealed to, besides the queue's epoch.
public struct ReplyKey: Codable, Sendable, Equatable {
    public var caseId: String
    /// The sealing key of the gateway that sent the case.
    public var gatewayKey: String
    /// Its name, under which `amane` pins the key (absent from relays before it was added).
    public var gateway: String?
    public init(caseId: String, gatewayKey: String, gateway: String?) {
        self.caseId = caseId
        self.gatewayKey = gatewayKey
        self.gateway = gateway
    }
}

public struct ReplyList: Codable, Sendable, Equatable {
    /// The case the receipt names: replies are sealed bound to it, and so must a gateway's own sealed follow-up be.
    public var caseId: String
    public var replies: [SealedReply]
    public init(caseId: String, replies: [SealedReply]) {
        self.caseId = caseId
        self.replies = replies
    }
}

/// `GET /v1/queues/{q}/sealing-key`.
public struct SealingKeyInfo: Codable, Sendable, Equatable {
    public var queue: String
    public var epoch: String
    public var publicKey: String
    public var fingerprint: String
    /// The limits the relay holds plaintext content to, which a gateway that seals applies itself: the relay cannot
    /// look inside an envelope. Nil from a relay older than them.
    public var narrativeMaxBytes: Int?
    public var contentMaxBytes: Int?

    public init(queue: String, epoch: String, publicKey: String, fingerprint: String, narrativeMaxBytes: Int?, contentMaxBytes: Int?) {
        self.queue = queue
        self.epoch = epoch
        self.publicKey = publicKey
        self.fingerprint = fingerprint
        self.narrativeMaxBytes = narrativeMaxBytes
        self.contentMaxBytes = contentMaxBytes
    }
}

/// A case as the queue shows it.
public struct CaseView: Codable, Sendable, Equatable {
    public var id: String
    public var queue: String
    public var urgency: String
    public var category: String
    public var language: String
    public var channel: String
    public var region: String?
    public var state: String
    public var assignee: String?
    public var claimExpiresAt: String?
    public var onHold: Bool
    public var updated: Bool
    public var referral: String?
    public var outcome: String?
    public var receivedAt: String
    /// When the case passes the wait the triage policy allows its urgency: unclaimed, or held with a follow-up not yet opened.
    public var slaDueAt: String?
    public var purged: Bool
    /// The queue key the disclosure is sealed to (absent from older relays).
    public var epoch: String?

    public init(_ summary: CaseSummary, policy: TriagePolicy) {
        id = summary.id
        queue = summary.labels.queue.rawValue
        urgency = summary.labels.urgency.rawValue
        category = summary.labels.category
        language = summary.labels.language
        channel = summary.labels.channel
        region = summary.labels.region
        state = summary.state.rawValue
        assignee = summary.assignee
        claimExpiresAt = summary.claimExpiresAt.map(Timestamp.iso8601)
        onHold = summary.onHold
        updated = summary.updated
        referral = summary.referral
        outcome = summary.outcome
        receivedAt = Timestamp.iso8601(summary.receivedAt)
        slaDueAt = summary.slaDeadline(policy).map(Timestamp.iso8601)
        purged = summary.purged
        epoch = summary.epochID
    }
}

public struct QueueListing: Codable, Sendable, Equatable {
    public var cases: [CaseView]
    /// Pass as `cursor` for the next page; absent on the last page.
    public var next: String?

    public init(cases: [CaseView], next: String?) {
        self.cases = cases
        self.next = next
    }
}

/// A sealed object of a case, base64.
public struct SealedObjectView: Codable, Sendable, Equatable {
    public var id: String
    public var kind: String
    public var author: String
    public var epoch: String
    public var sealed: String
    public var createdAt: String
    public var raisedUrgency: String?

    public init(_ item: SealedItem) {
        id = item.id
        kind = item.kind.rawValue
        author = item.author
        epoch = item.epochID
        sealed = Base64.encode(item.envelope)
        createdAt = Timestamp.iso8601(item.createdAt)
        raisedUrgency = item.raisedUrgency?.rawValue
    }
}

/// `GET /v1/disclosures/{id}`: everything sealed in a case, for opening on the member's machine.
public struct CaseFile: Codable, Sendable, Equatable {
    public var `case`: CaseView
    public var disclosure: SealedObjectView?
    public var items: [SealedObjectView]
    public var gatewayKey: String?

    public init(case view: CaseView, disclosure: SealedObjectView?, items: [SealedObjectView], gatewayKey: String?) {
        self.case = view
        self.disclosure = disclosure
        self.items = items
        self.gatewayKey = gatewayKey
    }
}

/// `POST …/transition`.
public struct TransitionRequest: Codable, Sendable, Equatable {
    /// `start`, `refer`, `close` or `reopen`.
    public var action: String
    public var referral: String?
    public var outcome: String?

    public init(action: String, referral: String? = nil, outcome: String? = nil) {
        self.action = action
        self.referral = referral
        self.outcome = outcome
    }
}

public struct AssignRequest: Codable, Sendable, Equatable {
    public var to: String
    public init(to: String) { self.to = to }
}

public struct HoldRequest: Codable, Sendable, Equatable {
    public var on: Bool
    public init(on: Bool) { self.on = on }
}

/// `POST …/notes`.
public struct NoteSubmission: Codable, Sendable, Equatable {
    public var id: String
    public var sealed: String

    public init(id: String, sealed: String) {
        self.id = id
        self.sealed = sealed
    }
}

/// `POST …/replies`: the epoch copy and the copy for the submitting gateway, under one object id.
public struct ReplySubmission: Codable, Sendable, Equatable {
    public var id: String
    public var sealed: String
    public var gatewaySealed: String

    public init(id: String, sealed: String, gatewaySealed: String) {
        self.id = id
        self.sealed = sealed
        self.gatewaySealed = gatewaySealed
    }
}

public struct GrantView: Codable, Sendable, Equatable {
    public var epoch: String
    public var queue: String
    public var sealed: String
    public var grantedBy: String
    public var current: Bool

    public init(epoch: String, queue: String, sealed: String, grantedBy: String, current: Bool) {
        self.epoch = epoch
        self.queue = queue
        self.sealed = sealed
        self.grantedBy = grantedBy
        self.current = current
    }
}

public struct GrantList: Codable, Sendable, Equatable {
    public var grants: [GrantView]
    public init(grants: [GrantView]) { self.grants = grants }
}

/// `POST /v1/epochs`: a new epoch's public key and its grants by member name (base64).
public struct EpochCreation: Codable, Sendable, Equatable {
    public var queue: String?
    public var publicKey: String
    public var grants: [String: String]

    public init(queue: String? = nil, publicKey: String, grants: [String: String]) {
        self.queue = queue
        self.publicKey = publicKey
        self.grants = grants
    }
}

public struct EpochView: Codable, Sendable, Equatable {
    public var id: String
    public var queue: String
    public var publicKey: String
    public var createdBy: String
    public var current: Bool

    public init(id: String, queue: String, publicKey: String, createdBy: String, current: Bool) {
        self.id = id
        self.queue = queue
        self.publicKey = publicKey
        self.createdBy = createdBy
        self.current = current
    }
}

/// `POST /v1/grants`: grants of an epoch the caller holds.
public struct GrantUpload: Codable, Sendable, Equatable {
    public var epoch: String
    public var grants: [String: String]

    public init(epoch: String, grants: [String: String]) {
        self.epoch = epoch
        self.grants = grants
    }
}

public struct MemberView: Codable, Sendable, Equatable {
    public var name: String
    public var role: String
    public var sealingKey: String?
    public var fingerprint: String?
    /// Granted the queue's current key, so able to open its new cases; absent from older relays.
    public var holdsCurrentKey: Bool?

    public init(name: String, role: String, sealingKey: String?, fingerprint: String?, holdsCurrentKey: Bool? = nil) {
        self.name = name
        self.role = role
        self.sealingKey = sealingKey
        self.fingerprint = fingerprint
        self.holdsCurrentKey = holdsCurrentKey
    }
}

public struct MemberList: Codable, Sendable, Equatable {
    public var members: [MemberView]
    public init(members: [MemberView]) { self.members = members }
}

public struct AuditEntryView: Codable, Sendable, Equatable {
    public var seq: Int64
    public var time: Int64
    public var actor: String
    public var action: String
    public var subject: String
    public var detail: String
    public var prevHash: String
    public var hash: String
    /// True for an entry about another queue: its contents are blank, and only its place in the chain is given.
    public var withheld: Bool?

    public init(_ chained: ChainedAuditEntry, withheld: Bool = false) {
        self.withheld = withheld ? true : nil
        seq = chained.entry.seq
        time = chained.entry.time
        actor = chained.entry.actor
        action = chained.entry.action
        subject = chained.entry.subject
        detail = chained.entry.detail
        prevHash = Hex.encode(chained.prevHash)
        hash = Hex.encode(chained.hash)
    }

    /// Back to the chained form, to verify locally.
    public var chained: ChainedAuditEntry? {
        guard let prev = Hex.decode(prevHash), let hash = Hex.decode(hash) else { return nil }
        return ChainedAuditEntry(entry: AuditEntry(seq: seq, time: time, actor: actor, action: action, subject: subject, detail: detail),
                                 prevHash: prev, hash: hash)
    }
}

public struct AuditPage: Codable, Sendable, Equatable {
    public var entries: [AuditEntryView]
    /// Pass as `after` for the next page; absent on the last page.
    public var next: Int64?

    public init(entries: [AuditEntryView], next: Int64?) {
        self.entries = entries
        self.next = next
    }
}

public struct StatRow: Codable, Sendable, Equatable {
    public var key: String
    public var count: Int
    public init(key: String, count: Int) {
        self.key = key
        self.count = count
    }
}

public struct Statistics: Codable, Sendable, Equatable {
    public var by: String
    public var rows: [StatRow]
    /// The months counted (YYYY-MM, both included), when the request named them; else every case.
    public var from: String?
    public var to: String?
    /// The queue counted: the caller's.
    public var queue: String?
    public init(by: String, rows: [StatRow], from: String? = nil, to: String? = nil, queue: String? = nil) {
        self.by = by
        self.rows = rows
        self.from = from
        self.to = to
        self.queue = queue
    }
}

/// One label of the taxonomy, as a kiosk shows it.
public struct TaxonomyLabel: Codable, Sendable, Equatable {
    public var code: String
    public var fr: String
    public var ar: String
    public var en: String

    public init(code: String, fr: String, ar: String, en: String) {
        self.code = code
        self.fr = fr
        self.ar = ar
        self.en = en
    }
}

/// `GET /v1/taxonomy`: the codes each label field takes, by field name (category, urgency, language, channel,
/// region; referral and outcome for responders), in the order to show them.
public struct TaxonomyListing: Codable, Sendable, Equatable {
    public var labels: [String: [TaxonomyLabel]]

    public init(labels: [String: [TaxonomyLabel]]) {
        self.labels = labels
    }
}

/// `GET /v1/me`: who the relay thinks the caller is.
public struct Identity: Codable, Sendable, Equatable {
    public var name: String
    public var role: String
    public var queue: String
    public init(name: String, role: String, queue: String) {
        self.name = name
        self.role = role
        self.queue = queue
    }
}

/// What an audit trail verification found, as `--json` prints it (the relay's admin and `amane audit --verify`).
public struct AuditVerification: Codable, Sendable, Equatable {
    public var intact: Bool
    public var verified: Int64?
    public var head: String?
    public var brokenAt: Int64?
    public var reason: String?

    public static func intact(verified: Int64, head: String) -> AuditVerification {
        AuditVerification(intact: true, verified: verified, head: head)
    }

    /// A break of the whole trail (seq 0, its guards gone) has no entry to name.
    public static func broken(at seq: Int64, reason: String) -> AuditVerification {
        AuditVerification(intact: false, brokenAt: seq == 0 ? nil : seq, reason: reason)
    }
}
