/// An RFC 9457 problem: every error the API returns.
public struct Problem: Codable, Sendable, Equatable, Error {
    public var type: String
    public var title: String
    public var status: Int
    public var detail: String?
    /// What a client may program against (a `ProblemCode`); `detail` is for people. Kept as text so that a
    /// client still reads a problem whose code a newer relay added.
    public var code: String?

    public init(status: Int, title: String, detail: String? = nil, code: ProblemCode? = nil, type: String? = nil) {
        self.status = status
        self.title = title
        self.detail = detail
        self.code = (code ?? ProblemCode(status: status)).rawValue
        self.type = type ?? "about:blank"
    }
}

/// The stable causes of problems. Those that share a status are told apart here, so a client need not read `detail`.
public enum ProblemCode: String, Codable, Sendable, CaseIterable {
    case invalidRequest = "invalid_request"
    case receiptMisheard = "receipt_misheard"
    case staleEpoch = "stale_epoch"
    case notEnrolled = "not_enrolled"
    case certificateExpired = "certificate_expired"
    case revoked
    case forbidden
    case notFound = "not_found"
    case unknownReceipt = "unknown_receipt"
    case methodNotAllowed = "method_not_allowed"
    case requestTimeout = "request_timeout"
    case idempotencyKeyReused = "idempotency_key_reused"
    case duplicate
    case conflict
    case tooLarge = "too_large"
    case unsupportedMediaType = "unsupported_media_type"
    case rateLimited = "rate_limited"
    case unknownReceiptsLimited = "unknown_receipts_limited"
    case receiptLookupsLimited = "receipt_lookups_limited"
    case storageQuotaExceeded = "storage_quota_exceeded"
    case headersTooLarge = "headers_too_large"
    case internalError = "internal_error"
    case notImplemented = "not_implemented"
    case noSealingKey = "no_sealing_key"
    case unavailable

    /// The code a status has when nothing more precise is said.
    public init(status: Int) {
        self = Self.allCases.first { $0.status == status && $0.isDefault } ?? (status >= 500 ? .internalError : .invalidRequest)
    }

    public var status: Int {
        switch self {
        case .invalidRequest, .receiptMisheard, .staleEpoch: 400
        case .notEnrolled, .certificateExpired, .revoked, .forbidden: 403
        case .notFound, .unknownReceipt: 404
        case .methodNotAllowed: 405
        case .requestTimeout: 408
        case .idempotencyKeyReused, .duplicate, .conflict: 409
        case .tooLarge: 413
        case .unsupportedMediaType: 415
        case .rateLimited, .unknownReceiptsLimited, .receiptLookupsLimited, .storageQuotaExceeded: 429
        case .headersTooLarge: 431
        case .internalError: 500
        case .notImplemented: 501
        case .noSealingKey, .unavailable: 503
        }
    }

    private var isDefault: Bool {
        [.invalidRequest, .forbidden, .notFound, .methodNotAllowed, .requestTimeout, .conflict, .tooLarge, .unsupportedMediaType, .rateLimited,
         .headersTooLarge, .internalError, .notImplemented, .unavailable].contains(self)
    }

    /// What it means and what a client does about it, for the API description.
    public var meaning: String {
        switch self {
        case .invalidRequest: "malformed, or naming unknown values; do not send it again unchanged"
        case .receiptMisheard: "the receipt's check digit fails: a digit was misheard or mistyped; ask the reporter again (not counted as an unknown receipt)"
        case .staleEpoch: "sealed to a queue key that is no longer current; fetch the sealing key and seal again"
        case .notEnrolled: "the client certificate is not enrolled"
        case .certificateExpired: "the client certificate has ended (or has not begun): a TLS session resumed from before it ended is refused here; ask an admin for a new one (admin reissue)"
        case .revoked: "the principal has been revoked"
        case .forbidden: "the principal's role may not do this, or not on this case or queue"
        case .notFound: "no such case, route or principal"
        case .unknownReceipt: "the receipt names none of this gateway's cases"
        case .methodNotAllowed: "the path takes other methods, named in the Allow header"
        case .requestTimeout: "the request was not received in time"
        case .idempotencyKeyReused: "the idempotency key was used with another request; a new request needs a new key"
        case .duplicate: "an object with this id is stored already; seal a new one for another submission"
        case .conflict: "the case's state or claim does not allow this now"
        case .tooLarge: "the body, or a field, is larger than allowed"
        case .unsupportedMediaType: "a body in another media type, or compressed"
        case .rateLimited: "this principal's request rate, or its bodies on the way at once (as many bytes as four of the largest body a route takes, by their Content-Length); wait for Retry-After"
        case .unknownReceiptsLimited: "this gateway's limit of unknown receipts; wait for Retry-After (a receipt that names one of its cases is still answered)"
        case .receiptLookupsLimited: "this gateway's rate of receipt lookups, found or not (10 a minute by default); wait for Retry-After"
        case .storageQuotaExceeded: "this gateway stored its quota for the day (limits.gatewayBytesPerDay, 256 MiB by default, refilled over the day); wait for Retry-After (a retry of a stored submission is still answered)"
        case .headersTooLarge: "the request's headers are too large"
        case .internalError: "a fault in the relay"
        case .notImplemented: "a transfer coding other than chunked; send the body as it is"
        case .noSealingKey: "the queue has no sealing key, or none that an active member holds, until a member runs `amane rotate`; retry after Retry-After"
        case .unavailable: "the relay is busy or its storage cannot write; nothing was stored; retry after Retry-After"
        }
    }
}
