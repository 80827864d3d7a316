import Foundation
import GRDB
public import RelayCore
import RelayFormat

/// An epoch as stored: its public key, never its private key.
public struct EpochInfo: Sendable, Codable, Equatable {
    public var id: String
    public var queue: String
    public var publicKey: String
    public var createdBy: String
    public var createdAt: Int64
    public var isCurrent: Bool
}

/// An epoch private key sealed to one member.
public struct GrantInfo: Sendable, Codable, Equatable {
    public var epochID: String
    public var queue: String
    public var member: String
    public var sealed: [UInt8]
    public var grantedBy: String
    public var createdAt: Int64
    public var isCurrent: Bool
}

extension RelayDatabase {
    /// Creates the queue if it does not exist yet.
    public func ensureQueue(_ queue: QueueName, actor: StoreActor) async throws {
        let now = nowSeconds
        try await committer.write { db in
            if try !Self.queueExists(db, queue) { try Self.createQueue(db, queue, at: now, actor: actor) }
        }
    }

    private static func queueExists(_ db: Database, _ queue: QueueName) throws -> Bool {
        try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM queue WHERE name = ?", arguments: [queue.rawValue]) == 1
    }

    private static func createQueue(_ db: Database, _ queue: QueueName, at now: Int64, actor: StoreActor) throws {
        try db.execute(sql: "INSERT INTO queue (name, createdAt) VALUES (?, ?)", arguments: [queue.rawValue, now])
        try AuditLog.append(db, time: now, actor: actor, action: "queue.create", subject: queue.rawValue)
    }

    /// The queues, by name.
    public func queueNames() async throws -> [QueueName] {
        try await pool.read { db in try String.fetchAll(db, sql: "SELECT name FROM queue ORDER BY name").compactMap(QueueName.init(rawValue:)) }
    }

    /// Registers a principal for a certificate's SPKI fingerprint.
    /// - Parameter creatingQueue: create `queue` in the same transaction; one that exists already is a conflict, so
    ///   that a second organisation never joins the first one's queue by picking the same name.
    public func enroll(name: PrincipalName, role: Role, spkiFingerprint: String, sealingKey: String?, queue: QueueName = .national,
                       creatingQueue: Bool = false, certificateEndsAt: Int64? = nil, actor: StoreActor) async throws -> Principal {
        guard Role.enrollable.contains(role) else { throw StoreError(.invalid, "cannot enroll the role \(role.rawValue)") }
        if let sealingKey {
            do { _ = try SealingPublicKey(text: sealingKey) } catch { throw StoreError(.invalid, "the sealing key is not valid: \(error)") }
        } else {
            throw StoreError(.invalid, "a \(role.rawValue) needs a sealing key")
        }
        let record = PrincipalRecord(id: UUID.v7().uuidString.lowercased(), name: name.rawValue, role: role.rawValue,
                                     spkiFingerprint: spkiFingerprint, sealingKey: sealingKey, queue: queue.rawValue,
                                     createdAt: nowSeconds, revokedAt: nil, certificateEndsAt: certificateEndsAt)
        try await committer.write { db in
            if creatingQueue {
                guard try !Self.queueExists(db, queue) else {
                    throw StoreError(.conflict, "a queue named \(queue) exists already: to enroll them in it, leave out --new-queue")
                }
                try Self.createQueue(db, queue, at: record.createdAt, actor: actor)
            }
            guard try Self.queueExists(db, queue) else { throw StoreError(.notFound, "no queue named \(queue)") }
            // Names differing only in letter case would read as one person in the audit trail.
            if let existing = try PrincipalRecord.filter(PrincipalRecord.Columns.name.collating(.nocase) == record.name).fetchOne(db) {
                throw StoreError(.conflict, existing.revokedAt == nil
                    ? "a principal named \(existing.name) exists; if this is the same person, `amane-relayd admin reissue \(existing.name)` gives them a new certificate"
                    : "\(existing.name) was revoked, and a revoked name, in any letter case, stays in the audit trail: enroll them under a new name")
            }
            try Self.requireUnusedCertificateKey(db, record.spkiFingerprint)
            // Whoever holds that key, even one revoked, would open everything sealed or granted to the new principal too.
            if let holder = try PrincipalRecord.filter(PrincipalRecord.Columns.sealingKey == sealingKey).fetchOne(db) {
                throw StoreError(.conflict, "that sealing key belongs to \(holder.name); each person and gateway makes their own with `amane keygen`")
            }
            try record.insert(db)
            try AuditLog.append(db, time: record.createdAt, actor: actor, action: "principal.enroll", subject: record.name,
                                detail: ["role": record.role, "queue": record.queue, "fingerprint": String(record.spkiFingerprint.prefix(16))])
        }
        return record.principal!
    }

    /// Moves a principal to a new certificate key: the old certificate stops working at once, and the
    /// principal keeps its name, role, sealing key, grants and cases.
    /// - Parameter keepingKey: renew for the key the principal has now (its old certificate then works until it ends);
    ///   without it, that key is refused, and a new key retires the old one.
    public func reissue(name: PrincipalName, spkiFingerprint: String, certificateEndsAt: Int64? = nil, keepingKey: Bool = false,
                        actor: StoreActor) async throws -> Principal {
        let now = nowSeconds
        return try await committer.write { db in
            guard var record = try PrincipalRecord.filter(PrincipalRecord.Columns.name == name.rawValue).fetchOne(db) else {
                throw StoreError(.notFound, "no principal named \(name)")
            }
            guard record.revokedAt == nil else { throw StoreError(.invalidState, "\(name) is revoked; enroll them under a new name") }
            let keepsKey = record.spkiFingerprint == spkiFingerprint
            if keepsKey != keepingKey {
                throw StoreError(.conflict, keepsKey ? """
                    the request is for the key \(name) has now: to renew keeping it, add --keep-key; if it may be known to anyone \
                    else, have them make a new one (amane request-certificate \(name) --new-key)
                    """ : "--keep-key renews for the key \(name) has now, and this request is for another key")
            }
            var endsAt = certificateEndsAt
            if keepsKey {
                // The old certificate works until its own end: the principal's access lasts until the later one.
                endsAt = [record.certificateEndsAt, certificateEndsAt].compactMap { $0 }.max()
            } else {
                try Self.requireUnusedCertificateKey(db, spkiFingerprint)
                try db.execute(sql: "INSERT INTO retiredKey (spkiFingerprint, principalID, retiredAt) VALUES (?, ?, ?)",
                               arguments: [record.spkiFingerprint, record.id, now])
            }
            try db.execute(sql: "UPDATE principal SET spkiFingerprint = ?, certificateEndsAt = ? WHERE id = ?",
                           arguments: [spkiFingerprint, endsAt, record.id])
            try AuditLog.append(db, time: now, actor: actor, action: "principal.reissue", subject: record.name,
                                detail: ["key": keepsKey ? "kept" : "new", "fingerprint": String(spkiFingerprint.prefix(16))])
            record.spkiFingerprint = spkiFingerprint
            return record.principal!
        }
    }

    /// Refuses a certificate key that belongs, or belonged, to a principal.
    static func requireUnusedCertificateKey(_ db: Database, _ spkiFingerprint: String) throws {
        if let holder = try Row.fetchOne(db, sql: "SELECT name, revokedAt FROM principal WHERE spkiFingerprint = ?", arguments: [spkiFingerprint]) {
            let revoked = (holder["revokedAt"] as Int64?) != nil
            throw StoreError(.conflict, "that certificate key belongs to \(holder["name"] as String)\(revoked ? " (revoked)" : ""); a new certificate needs a new key")
        }
        if let retired = try Row.fetchOne(db, sql: """
            SELECT principal.name, retiredKey.retiredAt FROM retiredKey JOIN principal ON principal.id = retiredKey.principalID
            WHERE retiredKey.spkiFingerprint = ?
            """, arguments: [spkiFingerprint]) {
            throw StoreError(.conflict, """
                that certificate key was retired when \(retired[0] as String)'s certificate was reissued \
                (\(Date(timeIntervalSince1970: TimeInterval(retired[1] as Int64)).formatted(.iso8601.year().month().day()))); a retired key is never taken again: make a new one
                """)
        }
    }

    /// What a revocation did to the principal's cases, for the admin to pass on.
    public struct Revocation: Sendable {
        public var principal: Principal
        /// Cases it had claimed or was working on: back in the queue, as new.
        public var returnedToQueue: [String]
        /// Open cases still assigned to it (referred ones): a supervisor gives them to a colleague or reopens them.
        public var stillAssigned: [String]
    }

    /// Revokes a principal at once, deletes its grants and returns the cases it had claimed to the queue.
    @discardableResult
    public func revoke(name: PrincipalName, actor: StoreActor) async throws -> Revocation {
        let now = nowSeconds
        return try await committer.write { db in
            guard var record = try PrincipalRecord.filter(PrincipalRecord.Columns.name == name.rawValue).fetchOne(db) else {
                throw StoreError(.notFound, "no principal named \(name)")
            }
            guard record.revokedAt == nil else { throw StoreError(.invalidState, "\(name) is already revoked") }
            try db.execute(sql: "UPDATE principal SET revokedAt = ? WHERE id = ?", arguments: [now, record.id])
            try db.execute(sql: "DELETE FROM \"grant\" WHERE principalID = ?", arguments: [record.id])
            try AuditLog.append(db, time: now, actor: actor, action: "principal.revoke", subject: record.name)
            let released = try String.fetchAll(db, sql: "SELECT id FROM disclosure WHERE assigneeID = ? AND state IN ('claimed', 'in_progress')",
                                               arguments: [record.id])
            for caseID in released {
                try db.execute(sql: "UPDATE disclosure SET state = 'new', assigneeID = NULL, claimExpiresAt = NULL WHERE id = ?", arguments: [caseID])
                try AuditLog.append(db, time: now, actor: actor, action: "release", subject: caseID, detail: ["reason": "revoked", "to": "new"])
            }
            let stillAssigned = try String.fetchAll(db, sql: "SELECT id FROM disclosure WHERE assigneeID = ? AND state <> 'closed' AND purgedAt IS NULL ORDER BY id",
                                                    arguments: [record.id])
            record.revokedAt = now
            guard let principal = record.principal else { throw StoreError(.invalid, "the principal \(name) is stored with an unknown role or queue") }
            return Revocation(principal: principal, returnedToQueue: released.sorted(), stillAssigned: stillAssigned)
        }
    }

    public func principals() async throws -> [Principal] {
        try await pool.read { db in try PrincipalRecord.order(PrincipalRecord.Columns.name).fetchAll(db).compactMap(\.principal) }
    }

    /// When each active principal's client certificate ends, in Unix seconds, for those enrolled or reissued
    /// since the relay started keeping it.
    public func certificateEnds() async throws -> [PrincipalName: Int64] {
        try await pool.read { db in
            var ends: [PrincipalName: Int64] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT name, certificateEndsAt FROM principal WHERE revokedAt IS NULL AND certificateEndsAt IS NOT NULL") {
                if let name = PrincipalName(rawValue: row["name"]) { ends[name] = row["certificateEndsAt"] }
            }
            return ends
        }
    }

    /// The principal a client certificate maps to, revoked or not. Every request asks, so this one indexed
    /// lookup reads on the calling thread instead of hopping to a reader queue and back, and without a
    /// transaction: one statement reads one consistent snapshot by itself.
    public func principal(spkiFingerprint: String) throws -> Principal? {
        try pool.unsafeRead { db in
            let statement = try db.cachedStatement(sql: "SELECT * FROM principal WHERE spkiFingerprint = ?")
            return try PrincipalRecord.fetchOne(statement, arguments: [spkiFingerprint])?.principal
        }
    }

    /// Whose certificate key this was, when a reissue retired it: a certificate still presented with it may be a lost one.
    public func retiredKeyOwner(spkiFingerprint: String) throws -> String? {
        try pool.unsafeRead { db in
            let statement = try db.cachedStatement(sql: """
                SELECT principal.name FROM retiredKey JOIN principal ON principal.id = retiredKey.principalID WHERE retiredKey.spkiFingerprint = ?
                """)
            return try String.fetchOne(statement, arguments: [spkiFingerprint])
        }
    }

    public func principal(named name: PrincipalName) async throws -> Principal? {
        try await pool.read { db in try PrincipalRecord.filter(PrincipalRecord.Columns.name == name.rawValue).fetchOne(db)?.principal }
    }

    /// The queue's current epoch, if it has one. Read on the calling thread in one statement, as intake asks for every disclosure.
    public func currentEpoch(queue: QueueName) throws -> EpochInfo? {
        try pool.unsafeRead { db in
            let statement = try db.cachedStatement(sql: """
                SELECT epoch.* FROM epoch JOIN queue ON queue.currentEpochID = epoch.id WHERE queue.name = ?
                """)
            return try Row.fetchOne(statement, arguments: [queue.rawValue]).map { Self.epoch($0, isCurrent: true) }
        }
    }

    /// The ids of the principals granted the queue's current epoch key: who can open its new cases.
    public func currentKeyHolders(queue: QueueName) async throws -> Set<String> {
        try await pool.read { db in
            Set(try String.fetchAll(db, sql: """
                SELECT g.principalID FROM "grant" g JOIN queue q ON q.currentEpochID = g.epochID WHERE q.name = ?
                """, arguments: [queue.rawValue]))
        }
    }

    public func epochs(queue: QueueName) async throws -> [EpochInfo] {
        try await pool.read { db in try Self.epochs(db, queue: queue) }
    }

    static func epochs(_ db: Database, queue: QueueName) throws -> [EpochInfo] {
        let current = try String.fetchOne(db, sql: "SELECT currentEpochID FROM queue WHERE name = ?", arguments: [queue.rawValue])
        return try Row.fetchAll(db, sql: "SELECT * FROM epoch WHERE queue = ? ORDER BY createdAt, id", arguments: [queue.rawValue]).map { row in
            epoch(row, isCurrent: row["id"] == current)
        }
    }

    private static func epoch(_ row: Row, isCurrent: Bool) -> EpochInfo {
        EpochInfo(id: row["id"], queue: row["queue"], publicKey: row["publicKey"], createdBy: row["createdBy"],
                  createdAt: row["createdAt"], isCurrent: isCurrent)
    }

    /// Stores a new epoch with its first grants and makes it the queue's current one.
    /// - Parameter grants: sealed epoch keys by member name; each must be a grant for this epoch to that member's key.
    public func createEpoch(queue: QueueName, publicKey: String, grants: [String: [UInt8]], actor: StoreActor) async throws -> EpochInfo {
        guard actor.role.isMember else { throw StoreError(.forbidden, "only responders and supervisors create epochs") }
        let key: SealingPublicKey
        do { key = try SealingPublicKey(text: publicKey) } catch { throw StoreError(.invalid, "the epoch key is not valid: \(error)") }
        guard grants.keys.contains(actor.name) else { throw StoreError(.invalid, "the new epoch must be granted to its creator") }
        let epochID = key.id.uuidString.lowercased()
        let now = nowSeconds
        return try await committer.write { db in
            try Self.requireActive(db, actor)
            guard let current = try Row.fetchOne(db, sql: "SELECT currentEpochID, \(Self.currentEpochIsHeld) AS held FROM queue WHERE name = ?",
                                                 arguments: [queue.rawValue]) else {
                throw StoreError(.notFound, "no queue named \(queue)")
            }
            // While colleagues hold the current key, only one of them replaces it: anyone else would lock them out of
            // new cases. A key no active member holds is replaced by any member.
            if current["held"] as Bool, let currentID = current["currentEpochID"] as String?,
               try Int.fetchOne(db, sql: #"SELECT COUNT(*) FROM "grant" WHERE epochID = ? AND principalID = ?"#, arguments: [currentID, actor.principalID]) == 0 {
                throw StoreError(.forbidden, "you do not hold the current key of the queue \(queue): a colleague who holds it rotates it (or grants it to you first)")
            }
            try db.execute(sql: "INSERT INTO epoch (id, queue, publicKey, createdBy, createdAt) VALUES (?, ?, ?, ?, ?)",
                           arguments: [epochID, queue.rawValue, publicKey, actor.name, now])
            try Self.insertGrants(db, epochID: key.id, grants: grants, actor: actor, now: now)
            try db.execute(sql: "UPDATE queue SET currentEpochID = ? WHERE name = ?", arguments: [epochID, queue.rawValue])
            try AuditLog.append(db, time: now, actor: actor, action: "epoch.rotate", subject: epochID,
                                detail: ["queue": queue.rawValue, "grants": String(grants.count)])
            return try Self.epochs(db, queue: queue).first { $0.id == epochID }!
        }
    }

    /// Adds grants of an epoch the actor holds, for members who joined later. A grant a member holds already is
    /// replaced only by a supervisor's (the way to mend one that does not open): the relay cannot tell a grant
    /// that opens from one that does not, so a responder's would let any key holder lock a colleague out.
    /// - Returns: the members who held a grant of this epoch already and kept it.
    @discardableResult
    public func addGrants(epochID: String, grants: [String: [UInt8]], actor: StoreActor) async throws -> [String] {
        guard actor.role.isMember, let actorID = actor.principalID else { throw StoreError(.forbidden, "only members grant keys") }
        guard let id = UUID(uuidString: epochID) else { throw StoreError(.invalid, "not an epoch id") }
        let now = nowSeconds
        return try await committer.write { db in
            try Self.requireActive(db, actor)
            guard try Self.holdsGrant(db, epochID: epochID.lowercased(), principalID: actorID) else {
                throw StoreError(.forbidden, "you hold no grant for epoch \(epochID)")
            }
            return try Self.insertGrants(db, epochID: id, grants: grants, actor: actor, now: now)
        }
    }

    /// Whether the principal holds a grant of the epoch (a lowercased id).
    static func holdsGrant(_ db: Database, epochID: String, principalID: String?) throws -> Bool {
        try Bool.fetchOne(db, sql: #"SELECT EXISTS (SELECT 1 FROM "grant" WHERE epochID = ? AND principalID = ?)"#,
                          arguments: [epochID, principalID]) == true
    }

    @discardableResult
    private static func insertGrants(_ db: Database, epochID: UUID, grants: [String: [UInt8]], actor: StoreActor, now: Int64) throws -> [String] {
        var kept: [String] = []
        let queue = try String.fetchOne(db, sql: "SELECT queue FROM epoch WHERE id = ?", arguments: [epochID.uuidString.lowercased()])
        for (memberName, sealed) in grants.sorted(by: { $0.key < $1.key }) {
            guard let member = try PrincipalRecord.filter(PrincipalRecord.Columns.name == memberName).fetchOne(db)?.principal,
                  member.isActive, member.role.isMember, member.queue.rawValue == queue, let keyText = member.sealingKey,
                  let memberKey = try? SealingPublicKey(text: keyText) else {
                throw StoreError(.notFound, "no active responder or supervisor named \(memberName) in the queue \(queue ?? "of this epoch")")
            }
            let header: EnvelopeHeader
            do { header = try EnvelopeHeader.inspect(sealed) } catch { throw StoreError(.invalid, "the grant for \(memberName) is not an envelope") }
            guard header.kind == .grant, header.objectID == epochID, header.keyID == memberKey.id else {
                throw StoreError(.invalid, "the grant for \(memberName) is not sealed to their key for this epoch")
            }
            let held = try Self.holdsGrant(db, epochID: epochID.uuidString.lowercased(), principalID: member.id)
            if held && actor.role != .supervisor {
                kept.append(memberName)
                continue
            }
            try db.execute(sql: """
                INSERT INTO "grant" (epochID, principalID, sealed, grantedBy, createdAt) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (epochID, principalID) DO UPDATE SET sealed = excluded.sealed, grantedBy = excluded.grantedBy, createdAt = excluded.createdAt
                """, arguments: [epochID.uuidString.lowercased(), member.id, Data(sealed), actor.name, now])
            try AuditLog.append(db, time: now, actor: actor, action: "grant", subject: epochID.uuidString.lowercased(),
                                detail: held ? ["member": memberName, "replaced": "true"] : ["member": memberName])
        }
        return kept
    }

    /// The grants a member holds, newest epoch first.
    public func grants(for principal: Principal) async throws -> [GrantInfo] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT g.*, e.queue, q.currentEpochID FROM "grant" g JOIN epoch e ON e.id = g.epochID JOIN queue q ON q.name = e.queue
                WHERE g.principalID = ? ORDER BY e.createdAt DESC, e.id
                """, arguments: [principal.id]).map { row in
                GrantInfo(epochID: row["epochID"], queue: row["queue"], member: principal.name.rawValue,
                          sealed: Array(row["sealed"] as Data), grantedBy: row["grantedBy"], createdAt: row["createdAt"],
                          isCurrent: row["epochID"] == (row["currentEpochID"] as String?))
            }
        }
    }
}
