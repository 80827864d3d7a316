/// The one error type of RelayCore.
public struct CoreError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable, Hashable {
        case invalidReceipt
        /// 16 digits whose check digit fails: one was misheard or mistyped.
        case receiptMisheard
        case invalidLabel
        case transitionNotAllowed
        case roleNotAllowed
        case notAssignee
    }

    public let code: Code
    public let reason: String

    package init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    public static func == (lhs: CoreError, rhs: CoreError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
    public var description: String { "\(code.rawValue): \(reason)" }
}
