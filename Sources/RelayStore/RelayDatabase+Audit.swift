import Foundation
import GRDB
public import RelayCore

enum AuditLog {
    /// Appends one entry after the current head, inside the caller's transaction.
    static func append(_ db: Database, time: Int64, actor: StoreActor, action: String, subject: String,
                       detail: [String: String] = [:]) throws {
        try append(db, time: time, actor: actor, action: action, subject: subject, detailJSON: canonicalJSON(detail))
    }

    /// The same, with the detail already encoded (work done before entering the writer).
    static func append(_ db: Database, time: Int64, actor: StoreActor, action: String, subject: String, detailJSON: String) throws {
        let head = try db.firstRow("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1") { row in
            (seq: row[0] as Int64, hash: Array(row[1] as Data))
        }
        let seq = (head?.seq ?? 0) + 1
        let previous = head?.hash ?? AuditChain.genesis
        let entry = AuditEntry(seq: seq, time: time / 60 * 60, actor: actor.name, action: action, subject: subject, detail: detailJSON)
        let chained = AuditChain.append(entry, after: previous)
        try db.cachedStatement(sql: "INSERT INTO audit (seq, time, actor, action, subject, detail, prevHash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
            .execute(arguments: [entry.seq, entry.time, entry.actor, entry.action, entry.subject, entry.detail,
                                 Data(chained.prevHash), Data(chained.hash)])
    }

    static func canonicalJSON(_ detail: [String: String]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(detail)) ?? Data("{}".utf8), as: UTF8.self)
    }
}

/// An entry of the trail as a member of one queue reads it.
public struct QueueAuditEntry: Sendable, Equatable {
    /// With its contents blanked when withheld.
    public var chained: ChainedAuditEntry
    /// About another queue (its cases, members, keys, or the queue itself): only its place in the chain is given.
    public var withheld: Bool
}

extension RelayDatabase {
    /// A page of the trail, oldest first, after `seq`, as a member of `queue` may read it.
    public func auditEntries(after seq: Int64 = 0, limit: Int = 500, readableIn queue: QueueName) async throws -> [QueueAuditEntry] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT audit.*, CASE
                    WHEN action LIKE 'principal.%' THEN (SELECT queue FROM principal WHERE name = subject)
                    WHEN action = 'queue.create' THEN subject
                    WHEN action IN ('grant', 'epoch.rotate') THEN (SELECT queue FROM epoch WHERE id = subject)
                    ELSE (SELECT queue FROM disclosure WHERE id = subject) END AS entryQueue
                FROM audit WHERE seq > ? ORDER BY seq LIMIT ?
                """, arguments: [seq, limit]).map { row in
                var chained = try AuditRecord(row: row).chained
                // Only what is known to be another queue's: an entry edited to name nothing stays in view, to fail its check.
                let withheld = (row["entryQueue"] as String?).map { $0 != queue.rawValue } ?? false
                if withheld { chained.entry = AuditEntry(seq: chained.entry.seq, time: 0, actor: "", action: "", subject: "", detail: "") }
                return QueueAuditEntry(chained: chained, withheld: withheld)
            }
        }
    }

    /// A page of the whole trail, oldest first, after `seq`.
    public func auditEntries(after seq: Int64 = 0, limit: Int = 500) async throws -> [ChainedAuditEntry] {
        try await pool.read { db in
            try AuditRecord.filter(AuditRecord.Columns.seq > seq).order(AuditRecord.Columns.seq).limit(limit).fetchAll(db).map(\.chained)
        }
    }

    /// Recomputes the whole chain; returns how many entries verified.
    /// - Throws: `AuditVerifier.Break` naming the first broken entry.
    public func verifyAudit() throws -> Int64 {
        try verifyAuditWithHead().count
    }

    /// The same, with the last entry it verified as `SEQ:HASH`, the form `--expect-head` checks later; and
    /// checking that the trail still holds `expected`, a head printed by an earlier verification.
    public func verifyAuditWithHead(expecting expected: AuditHead? = nil) throws -> (count: Int64, head: String) {
        try pool.read { db in try Self.verifyAudit(db, expecting: expected) }
    }

    /// What can be checked at every start without reading the whole trail: the triggers that keep it
    /// append-only are there, and its last entry links to the one before and hashes right. Returns what is
    /// wrong, or nil. Only `verifyAudit` checks every entry.
    public func auditTailProblem() throws -> String? {
        try pool.read { db in
            guard try Self.hasAppendOnlyTriggers(db) else { return "the triggers that keep the audit trail append-only are missing" }
            let tail = try AuditRecord.order(AuditRecord.Columns.seq.desc).limit(2).fetchAll(db)
            guard let last = tail.first else { return nil }
            var verifier = AuditVerifier(after: tail.dropFirst().first.map { Array($0.hash) } ?? AuditChain.genesis, seq: tail.dropFirst().first?.seq ?? 0)
            do { try verifier.check(last.chained) } catch { return "its last \(error)" }
            return nil
        }
    }

    /// The same on a database opened read-only, which it leaves byte for byte as it was: a copy kept as evidence.
    public static func verifyAuditReadOnly(directory: String, expecting expected: AuditHead? = nil) throws -> (count: Int64, head: String) {
        try readOnly(directory: directory) { db in try verifyAudit(db, expecting: expected) }
    }

    /// The last entry of the trail in a database file (a backup), opened read-only: what a later copy must still hold.
    public static func auditHead(ofFile path: String) throws -> AuditHead? {
        try readOnly(path: path) { db in
            try AuditRecord.order(AuditRecord.Columns.seq.desc).fetchOne(db).flatMap { AuditHead(text: "\($0.seq):\(Hex.encode(Array($0.hash)))") }
        }
    }

    /// Both triggers, as the first migration made them: one of the same name that does nothing does not count.
    private static func hasAppendOnlyTriggers(_ db: Database) throws -> Bool {
        let triggers = try String.fetchAll(db, sql: "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit'")
        let found = Set(triggers.map { $0.split(whereSeparator: \.isWhitespace).joined(separator: " ") })
        return ["UPDATE", "DELETE"].allSatisfy { operation in
            found.contains("CREATE TRIGGER audit_append_only_\(operation.lowercased()) BEFORE \(operation) ON audit BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END")
        }
    }

    /// Checks every entry even when the triggers are missing, so that an entry altered meanwhile is still named.
    private static func verifyAudit(_ db: Database, expecting expected: AuditHead?) throws -> (count: Int64, head: String) {
        let guarded = try hasAppendOnlyTriggers(db)
        var verifier = AuditVerifier()
        do {
            let cursor = try AuditRecord.order(AuditRecord.Columns.seq).fetchCursor(db)
            while let record = try cursor.next() {
                try verifier.check(record.chained)
                try expected?.check(record.chained)
            }
            try expected?.checkReached(verifier)
        } catch let error as AuditVerifier.Break where !guarded {
            throw AuditVerifier.Break(seq: error.seq, reason: error.reason + "; and the triggers that keep the trail append-only are missing too")
        }
        guard guarded else {
            throw AuditVerifier.Break(seq: 0, reason: "the triggers that keep it append-only are missing, so entries may have been changed since without a trace")
        }
        return (verifier.count, verifier.headText)
    }
}
