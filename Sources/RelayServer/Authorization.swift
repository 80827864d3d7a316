public import RelayCore

/// A route as the router knows it: method and path pattern.
public struct RouteKey: Hashable, Sendable, CustomStringConvertible {
    public let method: String
    public let path: String

    public init(_ method: String, _ path: String) {
        self.method = method
        self.path = path
    }

    public var description: String { "\(method) \(path)" }
}

/// The one table that says which role may call which route. Routes are registered from it.
public enum Authorization {
    static let gateway: Set<Role> = [.gateway]
    static let members: Set<Role> = [.responder, .supervisor]
    static let supervisors: Set<Role> = [.supervisor]
    static let everyone: Set<Role> = [.gateway, .responder, .supervisor]

    public static let table: [RouteKey: Set<Role>] = [
        RouteKey("POST", "/v1/disclosures"): gateway,
        RouteKey("POST", "/v1/followups"): gateway,
        RouteKey("POST", "/v1/replies/fetch"): gateway,
        RouteKey("GET", "/v1/queues/{queue}/sealing-key"): gateway,
        RouteKey("GET", "/v1/queue"): members,
        RouteKey("GET", "/v1/disclosures/{id}"): members,
        RouteKey("POST", "/v1/disclosures/{id}/claim"): members,
        RouteKey("POST", "/v1/disclosures/{id}/release"): members,
        RouteKey("POST", "/v1/disclosures/{id}/transition"): members,
        RouteKey("POST", "/v1/disclosures/{id}/notes"): members,
        RouteKey("POST", "/v1/disclosures/{id}/replies"): members,
        RouteKey("GET", "/v1/disclosures/{id}/reply-key"): members,
        RouteKey("POST", "/v1/disclosures/{id}/assign"): supervisors,
        RouteKey("POST", "/v1/disclosures/{id}/hold"): supervisors,
        RouteKey("GET", "/v1/grants"): members,
        RouteKey("POST", "/v1/grants"): members,
        RouteKey("POST", "/v1/epochs"): members,
        RouteKey("GET", "/v1/members"): members,
        RouteKey("GET", "/v1/stats"): members,
        RouteKey("GET", "/v1/audit"): supervisors,
        RouteKey("GET", "/v1/me"): everyone,
        RouteKey("GET", "/v1/taxonomy"): everyone,
        RouteKey("GET", "/v1/openapi.yaml"): everyone,
    ]

    /// The routes the table serves at a concrete path (a `{name}` segment matches any one segment).
    static func routes(at path: String) -> [RouteKey] {
        // Empty segments are skipped, as the router skips them.
        let segments = path.split(separator: "/")
        return table.keys.filter { route in
            let pattern = route.path.split(separator: "/")
            return pattern.count == segments.count && zip(pattern, segments).allSatisfy { $0 == $1 || $0.hasPrefix("{") }
        }
    }

    public static func roles(for route: RouteKey) -> Set<Role> {
        guard let roles = table[route] else { preconditionFailure("route \(route) is missing from the authorization table") }
        return roles
    }
}
