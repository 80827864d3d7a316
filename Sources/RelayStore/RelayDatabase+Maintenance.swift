import Foundation
import GRDB
public import RelayCore

/// What counts can be grouped by in reports.
public enum StatisticsDimension: String, Sendable, CaseIterable, Codable {
    case month, category, urgency, channel, region, outcome, language, referral
}

/// One queue's cases of one urgency, for the SLA monitor.
public struct QueueDepth: Sendable, Equatable {
    /// Unclaimed.
    public var waiting = 0
    /// Past their SLA, unclaimed or held.
    public var pastSLA = 0
    /// Held with a follow-up unopened past the SLA (counted in `pastSLA` too).
    public var unopened = 0

    public init(waiting: Int = 0, pastSLA: Int = 0, unopened: Int = 0) {
        self.waiting = waiting
        self.pastSLA = pastSLA
        self.unopened = unopened
    }
}

extension RelayDatabase {
    /// Purges cases closed longer than the retention policy allows and not on hold: removes the envelope and
    /// every sealed object, keeps a tombstone with the labels. Works in short batches; returns how many it purged.
    /// - Parameter actor: the relay's hourly sweep, or the admin who ran one.
    public func purgeExpiredCases(batchSize: Int = 50, actor: StoreActor = .relay) async throws -> Int {
        let cutoff = nowSeconds - Int64(options.policy.closedRetentionDays) * 86_400
        var total = 0
        while true {
            let now = nowSeconds
            let purged = try await committer.write { db in
                let ids = try String.fetchAll(db, sql: """
                    SELECT id FROM disclosure WHERE state = 'closed' AND purgedAt IS NULL AND onHold = 0 AND closedAt <= ? LIMIT ?
                    """, arguments: [cutoff, batchSize])
                for id in ids {
                    try db.execute(sql: "DELETE FROM sealedObject WHERE disclosureID = ?", arguments: [id])
                    try db.execute(sql: "DELETE FROM idempotency WHERE disclosureID = ?", arguments: [id])
                    try db.execute(sql: "UPDATE disclosure SET envelope = NULL, receiptHash = NULL, purgedAt = ? WHERE id = ?",
                                   arguments: [now / 60 * 60, id])
                    try AuditLog.append(db, time: now, actor: actor, action: "purge", subject: id)
                }
                return ids.count
            }
            total += purged
            if purged < batchSize { return total }
        }
    }

    /// What the next sweep would purge, oldest first: closed cases past the retention period and not on hold;
    /// and how many others past it a hold keeps.
    public func casesDueForPurge() async throws -> (due: [(id: String, closedAt: Int64)], held: Int) {
        let cutoff = nowSeconds - Int64(options.policy.closedRetentionDays) * 86_400
        return try await pool.read { db in
            let due = try Row.fetchAll(db, sql: """
                SELECT id, closedAt FROM disclosure WHERE state = 'closed' AND purgedAt IS NULL AND onHold = 0 AND closedAt <= ? ORDER BY closedAt, id
                """, arguments: [cutoff]).map { (id: $0["id"] as String, closedAt: $0["closedAt"] as Int64) }
            let held = try Int.fetchOne(db, sql: """
                SELECT count(*) FROM disclosure WHERE state = 'closed' AND purgedAt IS NULL AND onHold = 1 AND closedAt <= ?
                """, arguments: [cutoff]) ?? 0
            return (due, held)
        }
    }

    /// Forgets idempotency records older than `maxAgeSeconds` (their sealed receipts with them).
    public func expireIdempotencyKeys(maxAgeSeconds: Int64 = 7 * 86_400) async throws -> Int {
        let cutoff = nowSeconds - maxAgeSeconds
        return try await committer.write { db in
            try db.execute(sql: "DELETE FROM idempotency WHERE createdAt < ?", arguments: [cutoff])
            return db.changesCount
        }
    }

    /// Copies the database with SQLite's online backup API while writes go on.
    /// The copy is created with mode 0600 before any byte is written, and never over an existing file.
    public func backup(to path: String) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            if errno == EEXIST { throw StoreError(.conflict, "\(path) exists; refusing to overwrite it") }
            throw StoreError(.unavailable, "cannot create \(path): \(String(cString: strerror(errno)))")
        }
        Glibc.close(descriptor)
        do {
            let destination = try DatabaseQueue(path: path)
            try pool.backup(to: destination)
            try destination.close()
        } catch let error as DatabaseError {
            // SQLite names a full disk "not an error" (its message for SQLITE_FULL during a backup step).
            let reason = (GroupCommitter.storeError(error, onDiskOf: path) as? StoreError)?.reason ?? "\(error)"
            throw StoreError(.unavailable, "cannot write the backup \(path): \(reason)")
        }
    }

    /// Makes a closed database file whole in itself, out of WAL mode, its log folded in: a copy moved or opened
    /// read-only later needs no -wal or -shm file beside it, and leaves none.
    /// - Throws: `busy` while another connection has it open (SQLite then keeps WAL mode).
    public static func makeSelfContained(file path: String) throws {
        let mode: String?
        do {
            let queue = try DatabaseQueue(path: path)
            mode = try queue.writeWithoutTransaction { db in try String.fetchOne(db, sql: "PRAGMA journal_mode = DELETE") }
            try queue.close()
        } catch let error as DatabaseError {
            throw GroupCommitter.storeError(error, onDiskOf: path)
        }
        guard mode?.lowercased() == "delete" else { throw StoreError(.busy, "another process has \(path) open") }
    }

    /// Counts of a queue's cases by one label, from labels only (purged cases included), for the NGOs' reports.
    /// - Parameter received: only cases received in this range of Unix seconds.
    public func statistics(by dimension: StatisticsDimension, received: Range<Int64>? = nil, queue: QueueName) async throws -> [(key: String, count: Int)] {
        let expression: String = switch dimension {
        case .month: "strftime('%Y-%m', receivedAt, 'unixepoch')"
        case .urgency: "CASE urgencyRank \(Urgency.allCases.map { "WHEN \($0.rank) THEN '\($0.rawValue)'" }.joined(separator: " ")) END"
        case .category, .channel, .region, .outcome, .language, .referral: "COALESCE(\(dimension.rawValue), '-')"
        }
        let order = dimension == .urgency ? "MIN(urgencyRank)" : "key"
        return try await pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT \(expression) AS key, COUNT(*) AS count FROM disclosure WHERE queue = ? AND receivedAt >= ? AND receivedAt < ?
                GROUP BY key ORDER BY \(order)
                """, arguments: [queue.rawValue, received?.lowerBound ?? Int64.min, received?.upperBound ?? Int64.max])
                .map { (key: $0["key"], count: $0["count"]) }
        }
    }

    /// Every disclosure id in the store, for checking after a load or a crash that nothing acknowledged is missing.
    public func disclosureIDs() async throws -> Set<String> {
        try await pool.read { db in Set(try String.fetchAll(db, sql: "SELECT id FROM disclosure")) }
    }

    /// By queue and urgency: unclaimed cases, and how many cases are past their SLA (`CaseSummary.slaDeadline`):
    /// unclaimed ones, and held ones whose holder has not opened a follow-up in time (`unopened`, also counted in
    /// `pastSLA`). Every queue and urgency is there, with zeros when it has no case. For metrics, alerts and pages.
    public func queueDepth() async throws -> [QueueName: [Urgency: QueueDepth]] {
        let request = Self.queueDepthRequest(at: nowSeconds, policy: options.policy)
        return try await pool.read { db in
            let none = Dictionary(uniqueKeysWithValues: Urgency.allCases.map { ($0, QueueDepth()) })
            var depth = Dictionary(uniqueKeysWithValues: try String.fetchAll(db, sql: "SELECT name FROM queue").compactMap(QueueName.init(rawValue:)).map { ($0, none) })
            for row in try request.fetchAll(db) {
                guard let urgency = Urgency(rank: row["urgencyRank"]), let queue = QueueName(rawValue: row["queue"]) else { continue }
                depth[queue, default: none][urgency] = QueueDepth(waiting: row["waiting"], pastSLA: row["pastSLA"], unopened: row["unopened"])
            }
            return depth
        }
    }

    /// Reads only the index of open cases (`disclosure_open`), never the table.
    static func queueDepthRequest(at now: Int64, policy: TriagePolicy) -> SQLRequest<Row> {
        let late = pastSLA(at: now, policy: policy)
        return SQLRequest(literal: """
            SELECT urgencyRank, queue, SUM(state = 'new') AS waiting, SUM(\(late)) AS pastSLA, SUM(state <> 'new' AND \(late)) AS unopened
            FROM disclosure WHERE state <> 'closed' AND purgedAt IS NULL GROUP BY urgencyRank, queue
            """)
    }

    /// Queues without a current epoch key that an active member holds: intake to them answers 503 until a member runs `amane rotate`.
    public func queuesWithoutSealingKey() async throws -> [QueueName] {
        try await pool.read { db in
            try String.fetchAll(db, sql: "SELECT name FROM queue WHERE NOT \(Self.currentEpochIsHeld) ORDER BY name").compactMap(QueueName.init(rawValue:))
        }
    }

    /// How many active members hold a grant of each queue's current key (0 for a queue with none yet): one alone
    /// means only they can claim new cases.
    public func currentKeyHolders() async throws -> [QueueName: Int] {
        try await pool.read { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT queue.name AS queue, COUNT(principal.id) AS holders FROM queue
                LEFT JOIN "grant" ON "grant".epochID = queue.currentEpochID
                LEFT JOIN principal ON principal.id = "grant".principalID AND principal.revokedAt IS NULL
                GROUP BY queue.name
                """)
            return Dictionary(uniqueKeysWithValues: rows.compactMap { row in QueueName(rawValue: row["queue"]).map { ($0, row["holders"] as Int) } })
        }
    }

    /// Whether the database answers: for readiness probes.
    public func isReadable() async -> Bool {
        (try? await pool.read { db in try Int.fetchOne(db, sql: "SELECT 1") }) == 1
    }
}
