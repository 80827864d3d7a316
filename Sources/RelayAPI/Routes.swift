/// The API's paths, shared by the daemon and the CLI.
public enum APIPath {
    public static let disclosures = "/v1/disclosures"
    public static let followups = "/v1/followups"
    public static let repliesFetch = "/v1/replies/fetch"
    public static let queue = "/v1/queue"
    public static let grants = "/v1/grants"
    public static let epochs = "/v1/epochs"
    public static let members = "/v1/members"
    public static let audit = "/v1/audit"
    public static let stats = "/v1/stats"
    public static let me = "/v1/me"
    public static let taxonomy = "/v1/taxonomy"
    public static let openAPI = "/v1/openapi.yaml"

    public static func sealingKey(queue: String) -> String { "/v1/queues/\(queue)/sealing-key" }
    public static func disclosure(_ id: String) -> String { "/v1/disclosures/\(id)" }
    public static func disclosure(_ id: String, _ action: CaseAction) -> String { "/v1/disclosures/\(id)/\(action.rawValue)" }
    public static func replyKey(_ id: String) -> String { "/v1/disclosures/\(id)/reply-key" }
}

/// The per-case POST routes.
public enum CaseAction: String, Sendable, CaseIterable {
    case claim, release, transition, notes, replies, assign, hold
}

/// The media types the API speaks.
public enum MediaType {
    public static let json = "application/json"
    public static let problem = "application/problem+json"
    public static let yaml = "application/yaml"
}

/// Header names.
public enum HeaderName {
    public static let idempotencyKey = "Idempotency-Key"
    public static let requestID = "Request-Id"
}
