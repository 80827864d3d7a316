/// A principal as the registry knows it. Names are pseudonymous; certificates map to it by SPKI fingerprint.
public struct Principal: Sendable, Codable, Equatable {
    public var id: String
    public var name: PrincipalName
    public var role: Role
    /// Hex SHA-256 of the client certificate's SubjectPublicKeyInfo.
    public var spkiFingerprint: String
    /// The personal sealing key (`amanepk1…`): a responder's for grants, a gateway's for replies.
    public var sealingKey: String?
    public var queue: QueueName
    public var createdAt: Int64
    public var revokedAt: Int64?

    public init(id: String, name: PrincipalName, role: Role, spkiFingerprint: String, sealingKey: String?,
                queue: QueueName, createdAt: Int64, revokedAt: Int64? = nil) {
        self.id = id
        self.name = name
        self.role = role
        self.spkiFingerprint = spkiFingerprint
        self.sealingKey = sealingKey
        self.queue = queue
        self.createdAt = createdAt
        self.revokedAt = revokedAt
    }

    public var isActive: Bool { revokedAt == nil }
}

/// What the queue shows of a case: labels and triage state, never content.
public struct CaseSummary: Sendable, Codable, Equatable {
    public var id: String
    public var labels: DisclosureLabels
    public var state: CaseState
    public var assignee: String?
    public var claimExpiresAt: Int64?
    public var onHold: Bool
    /// The reporter followed up since a responder last opened the case.
    public var updated: Bool
    public var referral: String?
    public var outcome: String?
    /// Unix seconds, rounded to the minute.
    public var receivedAt: Int64
    /// Since when the case waits for a responder: when received, or when last reopened. Its SLA counts from here.
    public var waitingSince: Int64
    public var purged: Bool
    /// The queue key the disclosure is sealed to: only its holders open, claim or are assigned the case.
    public var epochID: String
    /// When the earliest follow-up not yet opened came (nil unless `updated`). A held case's SLA counts from here.
    public var unopenedSince: Int64?

    public init(id: String, labels: DisclosureLabels, state: CaseState, assignee: String?, claimExpiresAt: Int64?,
                onHold: Bool, updated: Bool, referral: String?, outcome: String?, receivedAt: Int64, waitingSince: Int64, purged: Bool,
                epochID: String, unopenedSince: Int64? = nil) {
        self.id = id
        self.labels = labels
        self.state = state
        self.assignee = assignee
        self.claimExpiresAt = claimExpiresAt
        self.onHold = onHold
        self.updated = updated
        self.referral = referral
        self.outcome = outcome
        self.receivedAt = receivedAt
        self.waitingSince = waitingSince
        self.purged = purged
        self.epochID = epochID
        self.unopenedSince = unopenedSince
    }

    /// When the case passes its urgency's wait: unclaimed, for a responder; held (claimed, in progress or referred)
    /// with a follow-up its holder has not opened, for that holder. Nil when nothing waits on anyone.
    public func slaDeadline(_ policy: TriagePolicy) -> Int64? {
        switch state {
        case .new: policy.slaDeadline(urgency: labels.urgency, waitingSince: waitingSince)
        case .claimed, .inProgress, .referred: unopenedSince.map { policy.slaDeadline(urgency: labels.urgency, waitingSince: $0) }
        case .closed: nil
        }
    }
}

/// A sealed object attached to a case, as stored: the relay cannot open it.
public struct SealedItem: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable, CaseIterable {
        case disclosure, followup, note, reply
    }

    public var id: String
    public var kind: Kind
    public var author: String
    public var epochID: String
    public var envelope: [UInt8]
    /// For a reply, the copy sealed to the submitting gateway.
    public var gatewayEnvelope: [UInt8]?
    public var createdAt: Int64
    /// For a follow-up that made its case more urgent, the urgency it raised the case to.
    public var raisedUrgency: Urgency?

    public init(id: String, kind: Kind, author: String, epochID: String, envelope: [UInt8], gatewayEnvelope: [UInt8]?, createdAt: Int64,
                raisedUrgency: Urgency? = nil) {
        self.id = id
        self.kind = kind
        self.author = author
        self.epochID = epochID
        self.envelope = envelope
        self.gatewayEnvelope = gatewayEnvelope
        self.createdAt = createdAt
        self.raisedUrgency = raisedUrgency
    }
}
