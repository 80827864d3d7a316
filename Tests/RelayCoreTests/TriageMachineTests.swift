import RelayCore
import Testing

@Suite struct TriageMachineTests {
    /// The whole allowed set, written out by hand: "action from role assignee? -> to".
    /// `any` means the rule holds whether or not the actor holds the claim.
    static let allowed: Set<String> = {
        var lines: Set<String> = []
        func add(_ action: String, _ from: [String], _ roles: [String], assignee: [Bool], _ to: String) {
            for state in from { for role in roles { for a in assignee { lines.insert("\(action) \(state) \(role) \(a) -> \(to)") } } }
        }
        let both = [true, false]
        add("claim", ["new"], ["responder", "supervisor"], assignee: both, "claimed")
        add("release", ["claimed", "in_progress"], ["responder"], assignee: [true], "new")
        add("release", ["claimed", "in_progress"], ["supervisor"], assignee: both, "new")
        add("start", ["claimed"], ["responder"], assignee: [true], "in_progress")
        add("start", ["claimed"], ["supervisor"], assignee: both, "in_progress")
        add("refer", ["claimed", "in_progress"], ["responder"], assignee: [true], "referred")
        add("refer", ["claimed", "in_progress"], ["supervisor"], assignee: both, "referred")
        add("close", ["claimed", "in_progress", "referred"], ["responder"], assignee: [true], "closed")
        add("close", ["claimed", "in_progress", "referred"], ["supervisor"], assignee: both, "closed")
        add("reopen", ["closed", "referred"], ["supervisor"], assignee: both, "new")
        add("assign", ["new", "claimed", "in_progress"], ["supervisor"], assignee: both, "claimed")
        add("expire", ["claimed", "in_progress"], ["system"], assignee: both, "new")
        add("followup", ["closed"], ["system"], assignee: both, "new")
        return lines
    }()

    @Test func everyTransitionIsAllowedOrRefusedExactlyAsSpecified() {
        var actual: Set<String> = []
        for action in TriageAction.allCases {
            for state in CaseState.allCases {
                for role in Role.allCases {
                    for assignee in [true, false] {
                        if let next = try? TriageMachine.next(after: action, from: state, by: role, isAssignee: assignee) {
                            actual.insert("\(action.rawValue) \(state.rawValue) \(role.rawValue) \(assignee) -> \(next.rawValue)")
                        }
                    }
                }
            }
        }
        #expect(actual.subtracting(Self.allowed).sorted() == [], "allowed but should be refused")
        #expect(Self.allowed.subtracting(actual).sorted() == [], "refused but should be allowed")
    }

    @Test func refusalsSayWhy() {
        let cases: [(TriageAction, CaseState, Role, Bool, CoreError.Code, String)] = [
            (.claim, .new, .gateway, false, .roleNotAllowed, "a gateway may not claim a case"),
            (.claim, .closed, .responder, false, .transitionNotAllowed, "cannot claim a case that is closed"),
            (.close, .new, .responder, false, .transitionNotAllowed, "cannot close a case that is new: claim it first"),
            (.close, .claimed, .responder, false, .notAssignee, "only the responder who claimed the case, or a supervisor, may close it"),
            (.reopen, .closed, .responder, true, .roleNotAllowed, "a responder may not reopen a case"),
        ]
        for (action, state, role, isAssignee, code, reason) in cases {
            let error = #expect(throws: CoreError.self) { try TriageMachine.next(after: action, from: state, by: role, isAssignee: isAssignee) }
            #expect(error?.code == code && error?.reason == reason, "\(action) from \(state) by \(role): \(String(describing: error))")
        }
    }
}

@Suite struct LabelTests {
    let taxonomy = TaxonomyCodes(codes: [
        .urgency: Set(Urgency.allCases.map(\.rawValue)), .category: ["sexual_abuse"], .language: ["ar", "fr"],
        .channel: ["phone"], .region: ["casablanca-settat"],
    ])

    @Test func knownLabelsPass() throws {
        try taxonomy.validate(DisclosureLabels(urgency: .high, category: "sexual_abuse", language: "ar", channel: "phone", region: "casablanca-settat"))
        try taxonomy.validate(DisclosureLabels(urgency: .low, category: "sexual_abuse", language: "fr", channel: "phone"))
    }

    @Test func anUnknownLabelIsNamed() {
        do {
            try taxonomy.validate(DisclosureLabels(urgency: .high, category: "sexual_abuse", language: "de", channel: "phone"))
            Issue.record("accepted an unknown language")
        } catch {
            #expect(error.code == .invalidLabel && error.reason == "unknown language 'de' (known: ar, fr)")
        }
    }

    @Test func everyUnknownLabelIsNamedAtOnce() {
        do {
            try taxonomy.validate(DisclosureLabels(urgency: .high, category: "abuse", language: "ar", channel: "sms", region: "casablanca"))
            Issue.record("accepted unknown labels")
        } catch {
            #expect(error.reason == "unknown category 'abuse' (known: sexual_abuse); unknown channel 'sms' (known: phone); "
                    + "unknown region 'casablanca' (known: casablanca-settat)")
        }
    }

    @Test func urgencyOrdersMostUrgentFirst() {
        #expect([Urgency.low, .immediate, .normal, .high].sorted() == [.immediate, .high, .normal, .low])
        #expect(Urgency(rank: 0) == .immediate && Urgency(rank: 4) == nil)
    }

    @Test func namesAreValidated() {
        #expect(PrincipalName(rawValue: "kiosk-casa.01") != nil)
        #expect(PrincipalName(rawValue: "") == nil)
        #expect(PrincipalName(rawValue: "a b") == nil)
        #expect(PrincipalName(rawValue: String(repeating: "a", count: 65)) == nil)
        #expect(QueueName(rawValue: "national") != nil && QueueName(rawValue: "National") == nil)
    }
}
