/// Where a case stands.
public enum CaseState: String, Sendable, Codable, CaseIterable {
    case new
    case claimed
    case inProgress = "in_progress"
    case referred
    case closed
}

/// What can happen to a case.
public enum TriageAction: String, Sendable, Codable, CaseIterable {
    case claim
    case release
    case start
    case refer
    case close
    case reopen
    case assign
    /// The lease reaper returns a claim that ran out.
    case expire
    /// A follow-up from the reporter reopens a closed case.
    case followup
}

/// The triage state machine as one table. Anything not in it is refused.
public enum TriageMachine {
    public struct Rule: Sendable {
        public let action: TriageAction
        public let from: Set<CaseState>
        public let to: CaseState
        public let roles: Set<Role>
        /// A responder must hold the claim; a supervisor need not.
        public let assigneeOnly: Bool
    }

    private static let members: Set<Role> = [.responder, .supervisor]
    private static let working: Set<CaseState> = [.claimed, .inProgress]

    public static let rules: [Rule] = [
        Rule(action: .claim, from: [.new], to: .claimed, roles: members, assigneeOnly: false),
        Rule(action: .release, from: working, to: .new, roles: members, assigneeOnly: true),
        Rule(action: .start, from: [.claimed], to: .inProgress, roles: members, assigneeOnly: true),
        Rule(action: .refer, from: working, to: .referred, roles: members, assigneeOnly: true),
        Rule(action: .close, from: working.union([.referred]), to: .closed, roles: members, assigneeOnly: true),
        Rule(action: .reopen, from: [.closed, .referred], to: .new, roles: [.supervisor], assigneeOnly: false),
        Rule(action: .assign, from: [.new, .claimed, .inProgress], to: .claimed, roles: [.supervisor], assigneeOnly: false),
        Rule(action: .expire, from: working, to: .new, roles: [.system], assigneeOnly: false),
        Rule(action: .followup, from: [.closed], to: .new, roles: [.system], assigneeOnly: false),
    ]

    /// The state after `action`, or the reason it is refused.
    /// - Parameter isAssignee: whether the actor holds the case's claim.
    public static func next(after action: TriageAction, from state: CaseState, by role: Role,
                            isAssignee: Bool) throws(CoreError) -> CaseState {
        let candidates = rules.filter { $0.action == action }
        guard candidates.contains(where: { $0.roles.contains(role) }) else {
            throw CoreError(.roleNotAllowed, "a \(role.rawValue) may not \(action.rawValue) a case")
        }
        guard let rule = candidates.first(where: { $0.from.contains(state) && $0.roles.contains(role) }) else {
            let claimFirst = state == .new && candidates.contains { $0.from.contains(.claimed) } ? ": claim it first" : ""
            throw CoreError(.transitionNotAllowed, "cannot \(action.rawValue) a case that is \(state.rawValue)\(claimFirst)")
        }
        if rule.assigneeOnly && role != .supervisor && !isAssignee {
            throw CoreError(.notAssignee, "only the responder who claimed the case, or a supervisor, may \(action.rawValue) it")
        }
        return rule.to
    }
}

/// How long things may wait, from `seeds/policy.yaml`.
public struct TriagePolicy: Sendable, Equatable {
    /// How long a claim lasts before the reaper returns the case to `new`.
    public var claimLeaseSeconds: Int
    /// How long a case of each urgency may stay unclaimed, or a held one's follow-up unopened by its holder.
    public var slaSeconds: [Urgency: Int]
    /// Closed cases are purged this many days after closing, unless on hold.
    public var closedRetentionDays: Int

    public static let `default` = TriagePolicy(
        claimLeaseSeconds: 15 * 60,
        slaSeconds: [.immediate: 15 * 60, .high: 2 * 3600, .normal: 24 * 3600, .low: 72 * 3600],
        closedRetentionDays: 180)

    public init(claimLeaseSeconds: Int, slaSeconds: [Urgency: Int], closedRetentionDays: Int) {
        self.claimLeaseSeconds = claimLeaseSeconds
        self.slaSeconds = slaSeconds
        self.closedRetentionDays = closedRetentionDays
    }

    /// How long, in seconds, a case of `urgency` may wait for a responder (`slaSeconds`).
    public func slaWait(_ urgency: Urgency) -> Int64 { Int64(slaSeconds[urgency] ?? 86_400) }

    /// When a case of `urgency` waiting since `waitingSince` (Unix seconds) passes its SLA if no one takes it up.
    public func slaDeadline(urgency: Urgency, waitingSince: Int64) -> Int64 { waitingSince + slaWait(urgency) }
}
