import RelayAPI

/// Every failure the CLI reports, with the exit code it ends with and a hint at what to do next.
public struct CLIError: Error, CustomStringConvertible {
    public enum Code: Int32, Sendable {
        /// A usage error: a bad argument or option, a missing file.
        case usage = 1
        /// The relay refused the request (4xx); its problem title and detail are printed.
        case refused = 2
        /// The relay could not be reached, or TLS failed.
        case unreachable = 3
        /// A wrong passphrase, a damaged key file, or no key (or too old an amane) for something sealed.
        case key = 4
        /// The relay failed (5xx).
        case server = 5
        /// The audit trail does not verify, or a sealed item was altered or moved.
        case verification = 6
    }

    public let code: Code
    public let message: String
    public let hint: String?
    /// What `--json` prints instead of the generic error object, when a command has a better form.
    let json: (any Encodable & Sendable)?
    /// The relay's problem code (`conflict`, `stale_epoch`…) when it refused: what a script tells causes apart by.
    let problemCode: String?
    /// The request went out, and no answer says whether the relay acted on it.
    let outcomeUnknown: Bool
    /// Where the key a submission went under was saved, when it may have been stored: to retry with.
    var idempotencyKeyFile: String?
    /// TLS refused a certificate in the handshake, before anything was sent: trying again at once cannot help.
    var secureConnectionFailed = false

    /// A failure of the relay that says it stored nothing (503 `unavailable`, `no_sealing_key`); other 5xx may have.
    var storedNothing: Bool { [ProblemCode.unavailable, .noSealingKey].map(\.rawValue).contains(problemCode ?? "") }

    public init(_ code: Code, _ message: String, hint: String? = nil) {
        self.init(code, message, hint: hint, json: nil)
    }

    init(_ code: Code, _ message: String, hint: String? = nil, json: (any Encodable & Sendable)?, problemCode: String? = nil,
         outcomeUnknown: Bool = false) {
        self.code = code
        self.message = message
        self.hint = hint
        self.json = json
        self.problemCode = problemCode
        self.outcomeUnknown = outcomeUnknown
    }

    /// The same failure with another hint.
    func with(hint: String?) -> CLIError {
        var error = CLIError(code, message, hint: hint, json: json, problemCode: problemCode, outcomeUnknown: outcomeUnknown)
        error.idempotencyKeyFile = idempotencyKeyFile
        error.secureConnectionFailed = secureConnectionFailed
        return error
    }

    /// `{"error": …, "hint": …, "exitCode": …, "code": …, "idempotencyKeyFile": …}`: what `--json` prints on stdout for
    /// a failure; `code` only when the relay refused, as its problem's code; `idempotencyKeyFile` only when a submission
    /// may have been stored under a key made here.
    struct JSONForm: Encodable {
        let error: String
        let hint: String?
        let exitCode: Int32
        let code: String?
        let idempotencyKeyFile: String?
    }

    public var description: String {
        hint.map { "Error: \(message)\n\($0)" } ?? "Error: \(message)"
    }
}
