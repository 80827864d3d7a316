import GRDB

/// Shipped migrations never change: add a new one instead.
enum Migrations {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE queue (
                    name TEXT PRIMARY KEY,
                    currentEpochID TEXT,
                    createdAt INTEGER NOT NULL
                );
                CREATE TABLE principal (
                    id TEXT PRIMARY KEY,
                    name TEXT NOT NULL UNIQUE,
                    role TEXT NOT NULL CHECK (role IN ('gateway', 'responder', 'supervisor')),
                    spkiFingerprint TEXT NOT NULL UNIQUE,
                    sealingKey TEXT,
                    queue TEXT NOT NULL REFERENCES queue(name),
                    createdAt INTEGER NOT NULL,
                    revokedAt INTEGER
                );
                CREATE TABLE epoch (
                    id TEXT PRIMARY KEY,
                    queue TEXT NOT NULL REFERENCES queue(name),
                    publicKey TEXT NOT NULL,
                    createdBy TEXT NOT NULL,
                    createdAt INTEGER NOT NULL
                );
                CREATE TABLE "grant" (
                    epochID TEXT NOT NULL REFERENCES epoch(id),
                    principalID TEXT NOT NULL REFERENCES principal(id) ON DELETE CASCADE,
                    sealed BLOB NOT NULL,
                    grantedBy TEXT NOT NULL,
                    createdAt INTEGER NOT NULL,
                    PRIMARY KEY (epochID, principalID)
                );
                CREATE TABLE disclosure (
                    id TEXT PRIMARY KEY,
                    queue TEXT NOT NULL REFERENCES queue(name),
                    gatewayID TEXT NOT NULL REFERENCES principal(id),
                    epochID TEXT NOT NULL REFERENCES epoch(id),
                    urgencyRank INTEGER NOT NULL,
                    category TEXT NOT NULL,
                    language TEXT NOT NULL,
                    channel TEXT NOT NULL,
                    region TEXT,
                    state TEXT NOT NULL,
                    assigneeID TEXT REFERENCES principal(id),
                    claimExpiresAt INTEGER,
                    onHold INTEGER NOT NULL DEFAULT 0,
                    updated INTEGER NOT NULL DEFAULT 0,
                    referral TEXT,
                    outcome TEXT,
                    receiptHash BLOB UNIQUE,
                    envelope BLOB,
                    receivedAt INTEGER NOT NULL,
                    closedAt INTEGER,
                    purgedAt INTEGER
                );
                CREATE INDEX disclosure_order ON disclosure(urgencyRank, id);
                CREATE INDEX disclosure_closed ON disclosure(closedAt) WHERE state = 'closed' AND purgedAt IS NULL;
                CREATE INDEX disclosure_claims ON disclosure(claimExpiresAt) WHERE claimExpiresAt IS NOT NULL;
                CREATE TABLE sealedObject (
                    id TEXT PRIMARY KEY,
                    disclosureID TEXT NOT NULL REFERENCES disclosure(id),
                    kind TEXT NOT NULL CHECK (kind IN ('followup', 'note', 'reply')),
                    authorID TEXT NOT NULL REFERENCES principal(id),
                    epochID TEXT NOT NULL REFERENCES epoch(id),
                    envelope BLOB NOT NULL,
                    gatewayEnvelope BLOB,
                    createdAt INTEGER NOT NULL
                );
                CREATE INDEX sealedObject_disclosure ON sealedObject(disclosureID, id);
                CREATE TABLE idempotency (
                    gatewayID TEXT NOT NULL REFERENCES principal(id),
                    keyHash BLOB NOT NULL,
                    requestHash BLOB NOT NULL,
                    disclosureID TEXT NOT NULL REFERENCES disclosure(id),
                    sealedReceipt BLOB NOT NULL,
                    createdAt INTEGER NOT NULL,
                    PRIMARY KEY (gatewayID, keyHash)
                );
                CREATE TABLE audit (
                    seq INTEGER PRIMARY KEY,
                    time INTEGER NOT NULL,
                    actor TEXT NOT NULL,
                    action TEXT NOT NULL,
                    subject TEXT NOT NULL,
                    detail TEXT NOT NULL,
                    prevHash BLOB NOT NULL,
                    hash BLOB NOT NULL
                );
                CREATE TRIGGER audit_append_only_update BEFORE UPDATE ON audit
                    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
                CREATE TRIGGER audit_append_only_delete BEFORE DELETE ON audit
                    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
                CREATE TABLE taxonomy (
                    dimension TEXT NOT NULL,
                    code TEXT NOT NULL,
                    position INTEGER NOT NULL,
                    labelFr TEXT NOT NULL,
                    labelAr TEXT NOT NULL,
                    labelEn TEXT NOT NULL,
                    PRIMARY KEY (dimension, code)
                );
                """)
        }
        // The queue's order within an urgency is arrival (rowid), not the id's random bits: true oldest-first, and
        // an insert appends to the index instead of dirtying a random page of it.
        migrator.registerMigration("v2") { db in
            try db.execute(sql: """
                DROP INDEX disclosure_order;
                CREATE INDEX disclosure_queue ON disclosure(urgencyRank);
                """)
        }
        // A retried follow-up gets its first answer too: the sealed answer is a disclosure's receipt or a follow-up's id.
        migrator.registerMigration("v3") { db in
            try db.execute(sql: "ALTER TABLE idempotency RENAME COLUMN sealedReceipt TO sealedAnswer")
        }
        // When each client certificate ends, so that ops hear of it before a kiosk stops: the relay issues them.
        migrator.registerMigration("v4") { db in
            try db.execute(sql: "ALTER TABLE principal ADD COLUMN certificateEndsAt INTEGER")
        }
        // Certificate keys a reissue replaced: never enrolled again, so that a certificate retired with its key stays dead.
        migrator.registerMigration("v5") { db in
            try db.execute(sql: """
                CREATE TABLE retiredKey (
                    spkiFingerprint TEXT PRIMARY KEY,
                    principalID TEXT NOT NULL REFERENCES principal(id),
                    retiredAt INTEGER NOT NULL
                )
                """)
        }
        // A reopened case waits again from its reopening: its SLA is not spent before anyone could see it (NULL: since received).
        migrator.registerMigration("v6") { db in
            try db.execute(sql: "ALTER TABLE disclosure ADD COLUMN waitingSince INTEGER")
        }
        // Since when a held case has a follow-up its holder has not opened: a referred case has no claim to lapse, so
        // its SLA counts from here. A case flagged before this counts from its latest follow-up, or its latest reopening if later. The SLA monitor
        // counts open cases from an index of their own, however many closed ones and tombstones the years leave.
        migrator.registerMigration("v7") { db in
            try db.execute(sql: """
                ALTER TABLE disclosure ADD COLUMN unopenedSince INTEGER;
                UPDATE disclosure SET unopenedSince = MAX(COALESCE(waitingSince, receivedAt), COALESCE((SELECT MAX(createdAt) FROM sealedObject
                    WHERE sealedObject.disclosureID = disclosure.id AND sealedObject.kind = 'followup'), 0)) WHERE updated = 1;
                CREATE INDEX disclosure_open ON disclosure(urgencyRank, state, waitingSince, receivedAt, unopenedSince, purgedAt)
                    WHERE state <> 'closed' AND purgedAt IS NULL;
                """)
        }
        // The SLA monitor counts each queue apart, so that each organisation's pager hears of its own cases: still from the index alone.
        migrator.registerMigration("v8") { db in
            try db.execute(sql: """
                DROP INDEX disclosure_open;
                CREATE INDEX disclosure_open ON disclosure(urgencyRank, queue, state, waitingSince, receivedAt, unopenedSince, purgedAt)
                    WHERE state <> 'closed' AND purgedAt IS NULL;
                """)
        }
        // Which follow-up made its case more urgent, for the responder reading the case: from the audit trail before
        // this, in one pass over it (it adds a column that references nothing: no foreign key check of the whole database).
        migrator.registerMigration("v9", foreignKeyChecks: .immediate) { db in
            try db.execute(sql: """
                ALTER TABLE sealedObject ADD COLUMN raisedUrgency TEXT;
                UPDATE sealedObject SET raisedUrgency = raised.urgency
                    FROM (SELECT json_extract(detail, '$.object') AS object, json_extract(detail, '$.urgency') AS urgency
                          FROM audit WHERE action = 'followup' AND json_extract(detail, '$.urgency') IS NOT NULL) AS raised
                    WHERE sealedObject.id = raised.object AND sealedObject.kind = 'followup';
                """)
        }
        return migrator
    }
}
