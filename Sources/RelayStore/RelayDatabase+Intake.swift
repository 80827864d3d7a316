public import Foundation
import GRDB
public import RelayCore
import RelayFormat

/// A sealed disclosure on its way in.
public struct IntakeRequest: Sendable {
    public var gateway: Principal
    public var labels: DisclosureLabels
    /// The case id: a UUIDv7, the object id inside the envelope.
    public var id: UUID
    public var envelope: [UInt8]
    public var idempotencyKey: String
    /// SHA-256 of the request as the gateway sent it: a retry must match it exactly.
    public var requestHash: [UInt8]

    public init(gateway: Principal, labels: DisclosureLabels, id: UUID, envelope: [UInt8], idempotencyKey: String, requestHash: [UInt8]) {
        self.gateway = gateway
        self.labels = labels
        self.id = id
        self.envelope = envelope
        self.idempotencyKey = idempotencyKey
        self.requestHash = requestHash
    }
}

/// A stored follow-up, the same on every retry with the same idempotency key.
public struct FollowupResult: Sendable, Equatable {
    public var id: String
    public var receivedAt: Int64
    /// True when this answers a retry rather than a new follow-up.
    public var replayed: Bool
}

/// What the gateway gets back, the same on every retry with the same idempotency key.
public struct IntakeResult: Sendable, Equatable {
    public var id: String
    public var receipt: Receipt
    public var receivedAt: Int64
    /// True when this answers a retry rather than a new disclosure.
    public var replayed: Bool
}

extension RelayDatabase {
    /// Stores a sealed disclosure and returns its id and receipt once the commit is durable.
    /// The receipt is kept only as its SHA-256, and sealed under the idempotency key for retries.
    public func intake(_ request: IntakeRequest) async throws -> IntakeResult {
        try await committer.write(prepareIntake(request).write)
    }

    /// An intake's write, ready for the writer.
    package struct PreparedIntake: Sendable {
        fileprivate let write: @Sendable (Database) throws -> IntakeResult
    }

    /// Everything an intake does outside the single writer: hashing, sealing the answer for retries, checking the
    /// labels and the envelope. The benchmark runs it alone, to tell the callers' share of a row from the writer's.
    package func prepareIntake(_ request: IntakeRequest) throws -> PreparedIntake {
        let gateway = request.gateway
        guard gateway.role == .gateway else { throw StoreError(.forbidden, "only a gateway submits disclosures") }
        guard gateway.isActive else { throw StoreError(.revoked, "\(gateway.name) is revoked") }
        let keyHash = Data(Digest.sha256(Array(request.idempotencyKey.utf8)))
        let keyBytes = Array(request.idempotencyKey.utf8)
        let context = Array(gateway.id.utf8)
        let now = nowSeconds
        let receivedAt = now / 60 * 60
        let id = request.id.uuidString.lowercased()
        let labels = request.labels
        let receipt = Receipt.generate()
        let sealedAnswer = Data(KeyedBox.seal(Array(receipt.digits.utf8), secret: keyBytes, context: context))
        let detail = AuditLog.canonicalJSON(["queue": labels.queue.rawValue, "urgency": labels.urgency.rawValue, "category": labels.category])
        let (sealedTo, validation) = check(request)
        // The rows are ready before the writer takes them; the epoch id is the one the envelope is sealed to, once checked.
        let disclosureRow: StatementArguments = [id, labels.queue.rawValue, gateway.id, sealedTo, labels.urgency.rank, labels.category,
                                                 labels.language, labels.channel, labels.region, Data(receipt.digest), Data(request.envelope), receivedAt]
        let idempotencyRow: StatementArguments = [gateway.id, keyHash, Data(request.requestHash), id, sealedAnswer, receivedAt]
        let actor = StoreActor(gateway)
        return PreparedIntake { db in
            let standing = try Self.intakeStanding(db, gatewayID: gateway.id, queue: labels.queue)
            // Revoked while its body was on the way: the certificate was checked when the headers came.
            guard standing.gatewayIsActive else { throw StoreError(.revoked, "\(actor.name) is revoked") }
            if let previous = try Self.previousAnswer(db, gatewayID: gateway.id, keyHash: keyHash, requestHash: request.requestHash,
                                                      secret: keyBytes, context: context) {
                let receipt = try Receipt(parsing: String(decoding: previous.answer, as: UTF8.self))
                let receivedAt: Int64 = try Int64.fetchOne(db, sql: "SELECT receivedAt FROM disclosure WHERE id = ?", arguments: [previous.caseID]) ?? 0
                return IntakeResult(id: previous.caseID, receipt: receipt, receivedAt: receivedAt, replayed: true)
            }
            if let validation { throw validation }
            try Self.requireCurrentEpoch(standing.currentEpoch, sealedTo: sealedTo, queue: labels.queue)
            do {
                try db.cachedStatement(sql: """
                    INSERT INTO disclosure (id, queue, gatewayID, epochID, urgencyRank, category, language, channel, region, state,
                        onHold, updated, receiptHash, envelope, receivedAt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'new', 0, 0, ?, ?, ?)
                    """).execute(arguments: disclosureRow)
            } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_PRIMARYKEY {
                throw Self.storedAlready
            }
            try db.cachedStatement(sql: """
                INSERT INTO idempotency (gatewayID, keyHash, requestHash, disclosureID, sealedAnswer, createdAt) VALUES (?, ?, ?, ?, ?, ?)
                """).execute(arguments: idempotencyRow)
            try AuditLog.append(db, time: now, actor: actor, action: "intake", subject: id, detailJSON: detail)
            return IntakeResult(id: id, receipt: receipt, receivedAt: receivedAt, replayed: false)
        }
    }

    /// Commits a write that changes nothing: the benchmark's measure of what group commit's handoff alone costs a row.
    package func emptyWrite() async throws {
        try await committer.write { _ in }
    }

    static let storedAlready = StoreError(.duplicate, """
        an object with this id is stored already: send a sealed envelope once, under one idempotency key, and seal a new one for another submission
        """)
    static let keyUsedElsewhere = StoreError(.keyReused, "this idempotency key was used for another submission")

    /// The first answer to a gateway's idempotency key, opened; nil for a new key.
    /// - Throws: `keyReused` when the key came with another request.
    static func previousAnswer(_ db: Database, gatewayID: String, keyHash: Data, requestHash: [UInt8], formerRequestHash: [UInt8]? = nil,
                               secret: [UInt8], context: [UInt8]) throws -> (caseID: String, answer: [UInt8])? {
        guard let previous = try db.firstRow("SELECT requestHash, disclosureID, sealedAnswer FROM idempotency WHERE gatewayID = ? AND keyHash = ?",
                                             arguments: [gatewayID, keyHash], { row in
            (request: Array(row[0] as Data), caseID: row[1] as String, sealedAnswer: Array(row[2] as Data))
        }) else { return nil }
        guard Digest.constantTimeEquals(previous.request, requestHash)
                || formerRequestHash.map({ Digest.constantTimeEquals(previous.request, $0) }) == true else {
            throw Self.keyUsedElsewhere
        }
        return (previous.caseID, try KeyedBox.open(previous.sealedAnswer, secret: secret, context: context))
    }

    /// A queue's current epoch id and whether an active member holds it.
    typealias CurrentEpoch = (id: String, held: Bool)

    /// What an intake needs to know before it writes, in one lookup: whether the gateway is still active, and the queue's current epoch.
    /// The current epoch is nil when the queue has no key yet, or no such queue exists.
    static func intakeStanding(_ db: Database, gatewayID: String, queue: QueueName) throws -> (gatewayIsActive: Bool, currentEpoch: CurrentEpoch?) {
        try db.firstRow("""
            SELECT EXISTS (SELECT 1 FROM principal WHERE id = ? AND revokedAt IS NULL), currentEpochID, \(currentEpochIsHeld)
            FROM (SELECT 1) LEFT JOIN queue ON queue.name = ?
            """, arguments: [gatewayID, queue.rawValue]) { row in
            (row[0], (row[1] as String?).map { ($0, row[2] as Bool) })
        } ?? (false, nil) // never: the query answers one row, whatever the tables hold
    }

    /// What can be checked without the database: the labels, the id and the envelope's header. Returns the
    /// (lowercased) epoch id the envelope is sealed to, or why the request is refused once it is not a replay.
    private func check(_ request: IntakeRequest) -> (sealedTo: String, refusal: StoreError?) {
        do {
            try taxonomy.validate(request.labels)
            let sealedTo = try Self.inspect(request.envelope, kind: .disclosure, objectID: request.id).keyID.uuidString.lowercased()
            guard request.id.isMinuteVersion7 else { throw StoreError(.invalid, "the disclosure id must be a UUIDv7 that carries only the minute") }
            return (sealedTo, nil)
        } catch let error as CoreError {
            return ("", StoreError(.invalid, error.reason))
        } catch {
            return ("", error as? StoreError ?? StoreError(.invalid, "\(error)"))
        }
    }

    /// Checks that an envelope is what it claims to be, without the database.
    static func inspect(_ envelope: [UInt8], kind: ObjectKind, objectID: UUID) throws(StoreError) -> EnvelopeHeader {
        let header: EnvelopeHeader
        do { header = try EnvelopeHeader.inspect(envelope) } catch { throw StoreError(.invalid, "the sealed object: \(error.plainReason)") }
        guard header.kind == kind else { throw StoreError(.invalid, "the envelope holds a \(header.kind.name), not a \(kind.name)") }
        guard header.objectID == objectID else { throw StoreError(.invalid, "the envelope is sealed for another object id") }
        return header
    }

    /// Checks that an envelope sealed to the epoch `sealedTo` (a lowercased id) is sealed to the queue's current
    /// one, and that an active member holds it: what no one can open is never acknowledged.
    static func checkCurrentEpoch(_ db: Database, sealedTo: String, queue: QueueName) throws {
        let current = try db.firstRow("SELECT currentEpochID, \(currentEpochIsHeld) FROM queue WHERE name = ?", arguments: [queue.rawValue]) { row in
            (row[0] as String?).map { ($0, row[1] as Bool) }
        }
        try requireCurrentEpoch(current ?? nil, sealedTo: sealedTo, queue: queue)
    }

    static func requireCurrentEpoch(_ current: CurrentEpoch?, sealedTo: String, queue: QueueName) throws {
        guard let (current, held) = current else {
            throw StoreError(.noSealingKey, "the queue \(queue) has no sealing key yet")
        }
        guard held else { throw noHolder(queue) }
        guard sealedTo == current else {
            throw StoreError(.staleEpoch, "the envelope is not sealed to the queue's current epoch \(current); fetch the sealing key again")
        }
    }

    /// SQL, in a query over `queue`: whether an active member holds a grant of the queue's current key.
    static let currentEpochIsHeld = """
        EXISTS (SELECT 1 FROM "grant" g JOIN principal p ON p.id = g.principalID WHERE g.epochID = queue.currentEpochID AND p.revokedAt IS NULL)
        """

    public static func noHolder(_ queue: QueueName) -> StoreError {
        StoreError(.noSealingKey, "no active member holds the current key of the queue \(queue), so no one could open what is sealed to it; a member runs `amane rotate`")
    }

    /// Whether the queue has a current key that an active member holds: the key a gateway may seal to.
    public func currentEpochIsHeld(queue: QueueName) throws -> Bool {
        try pool.unsafeRead { db in
            try Bool.fetchOne(db.cachedStatement(sql: "SELECT \(Self.currentEpochIsHeld) FROM queue WHERE name = ?"), arguments: [queue.rawValue]) ?? false
        }
    }

    /// Checks an envelope's header against what it claims to be; returns the epoch id it is sealed to.
    static func checkEnvelope(_ db: Database, _ envelope: [UInt8], kind: ObjectKind, objectID: UUID, queue: QueueName) throws -> String {
        let sealedTo = try inspect(envelope, kind: kind, objectID: objectID).keyID.uuidString.lowercased()
        try checkCurrentEpoch(db, sealedTo: sealedTo, queue: queue)
        return sealedTo
    }

    /// Attaches a reporter's follow-up to the case its receipt named (`caseID(receiptHash:gateway:)`), the case
    /// it is sealed to. It flags the case `updated`, reopens it if closed, and raises its urgency to `urgency` when
    /// that is more urgent (never lowers it; `DisclosureRecord.raise`). A retry with the same idempotency
    /// key and request gets the first follow-up's id back, and stores nothing.
    /// - Parameter formerRequestHash: the request as an earlier release tagged it, which its acknowledged follow-ups were stored under.
    /// - Throws: `notFound` when the case is not this gateway's, or was purged meanwhile; `keyReused` when the key came with another request.
    public func addFollowup(gateway: Principal, caseID: String, objectID: UUID, envelope: [UInt8], raisingUrgencyTo urgency: Urgency? = nil,
                            idempotencyKey: String, requestHash: [UInt8], formerRequestHash: [UInt8]? = nil) async throws -> FollowupResult {
        guard gateway.role == .gateway else { throw StoreError(.forbidden, "only a gateway submits follow-ups") }
        guard gateway.isActive else { throw StoreError(.revoked, "\(gateway.name) is revoked") }
        guard objectID.isMinuteVersion7 else { throw StoreError(.invalid, "the follow-up id must be a UUIDv7 that carries only the minute") }
        let now = nowSeconds
        let id = objectID.uuidString.lowercased()
        let keyBytes = Array(idempotencyKey.utf8)
        let keyHash = Data(Digest.sha256(keyBytes))
        let context = Array(gateway.id.utf8)
        let sealedAnswer = Data(KeyedBox.seal(Array(id.utf8), secret: keyBytes, context: context))
        let policy = options.policy
        return try await committer.write { db in
            try Self.requireActive(db, StoreActor(gateway))
            if let previous = try Self.previousAnswer(db, gatewayID: gateway.id, keyHash: keyHash, requestHash: requestHash,
                                                      formerRequestHash: formerRequestHash, secret: keyBytes, context: context) {
                let id = String(decoding: previous.answer, as: UTF8.self)
                guard previous.caseID == caseID,
                      let receivedAt = try Int64.fetchOne(db, sql: "SELECT createdAt FROM sealedObject WHERE id = ?", arguments: [id]) else {
                    throw Self.keyUsedElsewhere
                }
                return FollowupResult(id: id, receivedAt: receivedAt, replayed: true)
            }
            guard var record = try DisclosureRecord.filter(DisclosureRecord.Columns.id == caseID
                                                           && DisclosureRecord.Columns.gatewayID == gateway.id
                                                           && DisclosureRecord.Columns.purgedAt == nil).fetchOne(db) else {
                throw StoreError(.notFound, "no case for that receipt")
            }
            let queue = QueueName(rawValue: record.queue) ?? .national
            let epochID = try Self.checkEnvelope(db, envelope, kind: .followup, objectID: objectID, queue: queue)
            do {
                try SealedObjectRecord(id: id, disclosureID: record.id, kind: "followup", authorID: gateway.id,
                                       epochID: epochID, envelope: Data(envelope), gatewayEnvelope: nil, createdAt: now / 60 * 60).insert(db)
            } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_PRIMARYKEY {
                throw Self.storedAlready
            }
            try db.cachedStatement(sql: """
                INSERT INTO idempotency (gatewayID, keyHash, requestHash, disclosureID, sealedAnswer, createdAt) VALUES (?, ?, ?, ?, ?, ?)
                """).execute(arguments: [gateway.id, keyHash, Data(requestHash), record.id, sealedAnswer, now / 60 * 60])
            var detail = ["object": id]
            if record.caseState == .closed {
                let next = try TriageMachine.next(after: .followup, from: .closed, by: .system, isAssignee: false)
                record.returnToQueue(as: next, reopenedAt: now)
                detail["state"] = next.rawValue
            }
            record.markUpdated(at: now)
            if let urgency, record.raise(to: urgency, at: now, policy: policy) {
                detail["urgency"] = urgency.rawValue
                try db.cachedStatement(sql: "UPDATE sealedObject SET raisedUrgency = ? WHERE id = ?").execute(arguments: [urgency.rawValue, id])
            }
            try record.update(db)
            try AuditLog.append(db, time: now, actor: StoreActor(gateway), action: "followup", subject: record.id, detail: detail)
            return FollowupResult(id: id, receivedAt: now / 60 * 60, replayed: false)
        }
    }

    /// Whether the gateway sent a request under this idempotency key already (within the seven days keys are kept).
    public func isKnownIdempotencyKey(_ key: String, gatewayID: String) throws -> Bool {
        let keyHash = Data(Digest.sha256(Array(key.utf8)))
        return try pool.unsafeRead { db in
            try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM idempotency WHERE gatewayID = ? AND keyHash = ?)"),
                              arguments: [gatewayID, keyHash]) ?? false
        }
    }

    /// The case a receipt names for the gateway that submitted it, unless purged.
    public func caseID(receiptHash: [UInt8], gateway: Principal) throws -> String? {
        try pool.unsafeRead { db in try Self.caseID(db, receiptHash: receiptHash, gatewayID: gateway.id) }
    }

    static func caseID(_ db: Database, receiptHash: [UInt8], gatewayID: String) throws -> String? {
        try String.fetchOne(db.cachedStatement(sql: "SELECT id FROM disclosure WHERE receiptHash = ? AND gatewayID = ? AND purgedAt IS NULL"),
                            arguments: [Data(receiptHash), gatewayID])
    }

    /// The case a receipt names and its replies, sealed to the submitting gateway. Audited as a fetch.
    public func replies(gateway: Principal, receiptHash: [UInt8]) async throws -> (caseID: String, replies: [SealedItem]) {
        guard gateway.role == .gateway else { throw StoreError(.forbidden, "only a gateway fetches replies") }
        guard gateway.isActive else { throw StoreError(.revoked, "\(gateway.name) is revoked") }
        let now = nowSeconds
        return try await committer.write { db in
            try Self.requireActive(db, StoreActor(gateway))
            guard let caseID = try Self.caseID(db, receiptHash: receiptHash, gatewayID: gateway.id) else {
                throw StoreError(.notFound, "no case for that receipt")
            }
            let items = try Self.sealedItems(db, caseID: caseID).filter { $0.kind == .reply }
            try AuditLog.append(db, time: now, actor: StoreActor(gateway), action: "replies.fetch", subject: caseID,
                                detail: ["count": String(items.count)])
            return (caseID, items)
        }
    }

    static func sealedItems(_ db: Database, caseID: String) throws -> [SealedItem] {
        try Row.fetchAll(db, sql: """
            SELECT s.*, p.name AS authorName FROM sealedObject s JOIN principal p ON p.id = s.authorID
            WHERE s.disclosureID = ? ORDER BY s.createdAt, s.rowid
            """, arguments: [caseID]).map { row in
            SealedItem(id: row["id"], kind: SealedItem.Kind(rawValue: row["kind"]) ?? .note, author: row["authorName"],
                       epochID: row["epochID"], envelope: Array(row["envelope"] as Data),
                       gatewayEnvelope: (row["gatewayEnvelope"] as Data?).map(Array.init), createdAt: row["createdAt"],
                       raisedUrgency: (row["raisedUrgency"] as String?).flatMap(Urgency.init(rawValue:)))
        }
    }
}
