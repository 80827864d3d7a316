import RelayCore

/// The one error type of RelayStore. Reasons hold ids and labels, never content or receipts.
public struct StoreError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable, Hashable {
        /// No such case, principal, epoch or receipt (for this gateway).
        case notFound
        /// A duplicate name or key.
        case conflict
        /// An idempotency key reused with another request.
        case keyReused
        /// A sealed object whose id is stored already.
        case duplicate
        /// The actor's role or claim does not allow this.
        case forbidden
        /// The actor has been revoked (perhaps while its request was on the way).
        case revoked
        /// The case's state does not allow this.
        case invalidState
        /// Input the store refuses: an unknown label, a bad envelope.
        case invalid
        /// The queue has no current epoch key yet.
        case noSealingKey
        /// The object is sealed to an epoch that is no longer the queue's current one.
        case staleEpoch
        /// The writer's queue is full; try again shortly.
        case busy
        /// The disk is full or failing: nothing was stored.
        case unavailable
    }

    public let code: Code
    public let reason: String

    package init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    public static func == (lhs: StoreError, rhs: StoreError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
    public var description: String { "\(code.rawValue): \(reason)" }
}

/// A database that a newer `amane-relayd` migrated: this build refuses to open it.
public struct NewerSchemaError: Error, CustomStringConvertible {
    public let directory: String
    public let unknownMigrations: [String]

    public var description: String {
        "the database in \(directory) was migrated by a newer amane-relayd (schema \(unknownMigrations.joined(separator: ", "))), which "
            + "amane-relayd \(RelayVersion.current) does not know; install that release again, or restore a backup taken before the upgrade"
    }
}
