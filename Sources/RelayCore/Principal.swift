/// What a principal may do. Certificates carry no role: the principal registry does.
public enum Role: String, Sendable, Codable, CaseIterable, Comparable {
    case gateway
    case responder
    case supervisor
    /// The relay itself: the lease reaper, the retention sweep, follow-ups reopening a case.
    case system

    /// Roles that an admin may enroll.
    public static let enrollable: [Role] = [.gateway, .responder, .supervisor]

    /// Whether this role works the queue (a supervisor is a responder too).
    public var isMember: Bool { self == .responder || self == .supervisor }

    public static func < (lhs: Role, rhs: Role) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

/// A name that identifies a principal in the registry, the audit trail and the logs.
/// Pseudonymous by design: letters, digits, `.`, `_` and `-`, 1 to 64 characters.
public struct PrincipalName: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: String

    public init?(rawValue: String) {
        guard (1...64).contains(rawValue.utf8.count),
              rawValue.utf8.allSatisfy({ byte in
                  (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                      || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: ".")
                      || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
              }) else { return nil }
        self.rawValue = rawValue
    }

    public var description: String { rawValue }
}

/// A queue: a routing and key domain (`national` by default). Lowercase letters, digits and `-`.
public struct QueueName: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
    public static let national = QueueName(rawValue: "national")!
    public let rawValue: String

    public init?(rawValue: String) {
        guard (1...32).contains(rawValue.utf8.count),
              rawValue.utf8.allSatisfy({ (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || $0 == UInt8(ascii: "-") })
        else { return nil }
        self.rawValue = rawValue
    }

    public var description: String { rawValue }
}
