/// The one error type of RelayFormat. Descriptions never carry key or plaintext bytes.
public struct FormatError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What went wrong, coarsely, so that callers can match it and attackers learn little.
    public enum Code: String, Sendable, Hashable {
        case malformed
        case unsupportedVersion
        case unsupportedSuite
        case openFailed
        case wrongPassphrase
        case damagedKeyFile
        case fileExists
        case io
    }

    public let code: Code
    /// A short reason for people; never contains secret material.
    public let reason: String

    package init(_ code: Code, _ reason: String = "") {
        self.code = code
        self.reason = reason
    }

    public static func == (lhs: FormatError, rhs: FormatError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }

    /// The reason, or the code when there is none: what a refusal tells a person.
    public var plainReason: String { reason.isEmpty ? code.rawValue : reason }

    public var description: String {
        reason.isEmpty ? code.rawValue : "\(code.rawValue): \(reason)"
    }

    package static let malformed = FormatError(.malformed)
    package static let openFailed = FormatError(.openFailed)
}
