/// How soon a case needs a responder. Cases are listed in this order.
public enum Urgency: String, Sendable, Codable, CaseIterable, Comparable {
    case immediate
    case high
    case normal
    case low

    /// 0 for the most urgent; the store sorts by it.
    public var rank: Int { Self.allCases.firstIndex(of: self)! }

    public init?(rank: Int) {
        guard Self.allCases.indices.contains(rank) else { return nil }
        self = Self.allCases[rank]
    }

    public static func < (lhs: Urgency, rhs: Urgency) -> Bool { lhs.rank < rhs.rank }
}

/// The clear triage labels of a disclosure: all that a stolen database shows of it.
public struct DisclosureLabels: Sendable, Codable, Equatable, Hashable {
    public var queue: QueueName
    public var urgency: Urgency
    public var category: String
    public var language: String
    public var channel: String
    public var region: String?

    public init(queue: QueueName = .national, urgency: Urgency, category: String, language: String, channel: String, region: String? = nil) {
        self.queue = queue
        self.urgency = urgency
        self.category = category
        self.language = language
        self.channel = channel
        self.region = region
    }
}

/// The codes that labels may take, per dimension. Loaded from `seeds/taxonomy.yaml`.
public struct TaxonomyCodes: Sendable, Equatable {
    public enum Dimension: String, Sendable, CaseIterable, Codable {
        case category, urgency, referral, outcome, language, channel, region
    }

    public var codes: [Dimension: Set<String>]

    public init(codes: [Dimension: Set<String>]) {
        self.codes = codes
    }

    public func contains(_ code: String, in dimension: Dimension) -> Bool {
        codes[dimension]?.contains(code) ?? false
    }

    /// - Throws: `invalidLabel` naming every field whose code is unknown.
    public func validate(_ labels: DisclosureLabels) throws(CoreError) {
        let checks: [(Dimension, String?)] = [
            (.urgency, labels.urgency.rawValue), (.category, labels.category), (.language, labels.language),
            (.channel, labels.channel), (.region, labels.region),
        ]
        let refusals = checks.compactMap { dimension, value in
            value.flatMap { contains($0, in: dimension) ? nil : unknown($0, in: dimension) }
        }
        if !refusals.isEmpty { throw CoreError(.invalidLabel, refusals.joined(separator: "; ")) }
    }

    /// "unknown referral 'x' (known: a, b, c)": what a refusal says, so that the caller can pick.
    public func unknown(_ value: String, in dimension: Dimension) -> String {
        "unknown \(dimension.rawValue) '\(value.prefix(64))' (known: \((codes[dimension] ?? []).sorted().joined(separator: ", ")))"
    }
}
