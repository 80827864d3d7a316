public import Foundation
import GRDB
public import RelayCore

/// The relay's store, in the GRDB AppDatabase pattern: one SQLite file in WAL mode, written only
/// through the group committer. Every state change appends its audit entry in the same transaction.
public final class RelayDatabase: Sendable {
    public struct Options: Sendable {
        public var maxBatch = 256
        public var windowMicroseconds = 500
        public var maxPending = 4096
        public var policy = TriagePolicy.default
        public var now: @Sendable () -> Date = { Date() }
        /// Called with the size of every committed batch, for metrics.
        public var batchObserver: @Sendable (Int) -> Void = { _ in }
        /// Called when the store stops being able to write (with why) and when it writes again (nil).
        public var writeHealthObserver: @Sendable (String?) -> Void = { _ in }
        /// Benchmarks only: false commits without fsync (not durable), to measure what a write costs apart from the disk.
        package var syncsCommits = true

        public init() {}
    }

    let pool: DatabasePool
    let committer: GroupCommitter
    /// A second connection that only checkpoints, so that copying the WAL into the file never holds up a commit.
    let checkpointer: DatabaseQueue
    public let options: Options
    /// The label codes loaded from the taxonomy table.
    public let taxonomy: TaxonomyCodes

    public static let fileName = "relay.sqlite"

    /// Opens (and creates or migrates) the database in `directory`, then adds the codes of `taxonomyYAML` it lacks
    /// and takes that file's labels for the codes it has.
    public init(directory: String, taxonomyYAML: String? = nil, options: Options = Options()) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        try Self.requireWritable(directory)
        var configuration = Configuration()
        configuration.foreignKeysEnabled = true
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA secure_delete = ON")
        }
        let path = (directory as NSString).appendingPathComponent(Self.fileName)
        // Read-only first: opening a newer build's database to write would change it before refusing it.
        try Self.checkSchema(directory: directory)
        let pool = try Self.opening(path) {
            let pool = try DatabasePool(path: path, configuration: configuration)
            // GRDB sets synchronous=NORMAL on the WAL writer after prepareDatabase; acknowledged writes need FULL.
            // The writer checkpoints only if the checkpointer falls behind.
            try pool.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA synchronous = \(options.syncsCommits ? "FULL" : "OFF")")
                try db.execute(sql: "PRAGMA wal_autocheckpoint = \(Self.backstopCheckpointPages)")
            }
            return pool
        }
        // Again on the pool: a newer build may have migrated it in between.
        try pool.read { db in try Self.refuseNewerSchema(db, directory: directory) }
        try Migrations.migrator.migrate(pool)
        if let taxonomyYAML {
            let entries = try TaxonomyFile.parse(taxonomyYAML)
            try pool.write { db in try TaxonomyFile.merge(entries, into: db) }
        }
        self.pool = pool
        var checkpointerConfiguration = Configuration()
        checkpointerConfiguration.busyMode = .timeout(10)
        // A checkpoint syncs the WAL before copying and the file after, by this connection's setting.
        checkpointerConfiguration.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        self.checkpointer = try DatabaseQueue(path: pool.path, configuration: checkpointerConfiguration)
        self.options = options
        self.taxonomy = try pool.read(TaxonomyFile.codes)
        self.committer = GroupCommitter(
            writer: pool,
            options: .init(maxBatch: options.maxBatch, window: .microseconds(options.windowMicroseconds), maxPending: options.maxPending),
            observer: options.batchObserver, healthObserver: options.writeHealthObserver)
    }

    /// Why the store cannot write now (a full disk, an I/O error, a read-only file), or nil while it can.
    public var writeFailure: String? { committer.writeFailure }

    /// Tries a write that changes nothing anyone reads (it rewrites a queue's creation time with itself), so that a
    /// failure shows, or clears once the disk takes writes again, without waiting for a client. Returns the failure
    /// that remains, nil when the write went through.
    public func probeWrite() async -> String? {
        _ = try? await committer.write { db in
            try db.execute(sql: "UPDATE queue SET createdAt = createdAt WHERE name = (SELECT MIN(name) FROM queue)")
        }
        return committer.writeFailure
    }

    /// Runs the group-commit writer until the task is cancelled; pending writes finish first.
    public func runWriter() async {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.checkpointWhileWriting() }
            await committer.run()
            group.cancelAll()
        }
    }

    static let backstopCheckpointPages = 10_000

    /// Copies committed WAL frames into the database file on its own connection, at most ten times a second.
    /// A checkpoint that fails or leaves frames behind (the file is busy or full) is tried again at the next tick.
    private func checkpointWhileWriting() async {
        var checkpointed = committer.committedBatches
        while (try? await Task.sleep(for: .milliseconds(100))) != nil {
            let committed = committer.committedBatches
            guard committed != checkpointed else { continue }
            let frames = try? await checkpointer.writeWithoutTransaction { db in try db.checkpoint(.passive) }
            if let frames, frames.checkpointedFrameCount == frames.walFrameCount { checkpointed = committed }
        }
    }

    /// Stops taking writes; those already queued are still committed by `runWriter`.
    public func closeWriter() {
        committer.close()
    }

    var nowSeconds: Int64 { Int64(options.now().timeIntervalSince1970) }

    /// Reads a pragma from the writer connection, for checks and tests.
    public func writerPragma(_ name: String) throws -> String? {
        try pool.writeWithoutTransaction { db in try String.fetchOne(db, sql: "PRAGMA \(name)") }
    }

    /// Moves the WAL into the database file and truncates it. It runs on the checkpointer's connection, so it
    /// never meets the background checkpoint. SQLite does not wait for another connection's checkpoint, even
    /// with a busy timeout, so meeting one (the writer's backstop, another process) is retried for ten seconds.
    public func checkpoint() throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while true {
            do {
                _ = try checkpointer.writeWithoutTransaction { db in try db.checkpoint(.truncate) }
                return
            } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY && ContinuousClock.now < deadline {
                Thread.sleep(forTimeInterval: 0.01)
            }
        }
    }

    /// SQLite opens a file it may not write read-only without a word, and fails every write later: say so now.
    public static func requireWritable(_ directory: String) throws {
        let file = (directory as NSString).appendingPathComponent(fileName)
        for path in [directory, file, file + "-wal", file + "-shm"] where access(path, F_OK) == 0 && access(path, W_OK) != 0 {
            let error = errno
            let reason = String(cString: strerror(error))
            var status = stat()
            let owner = stat(path, &status) == 0 ? status.st_uid : getuid()
            let fix = if error == EROFS {
                "the file system is mounted read-only"
            } else if owner != getuid() {
                "it belongs to uid \(owner), not to the user running this command (uid \(getuid())): run as that user, or chown it"
            } else if status.st_mode & 0o200 == 0 {
                "it belongs to this user (uid \(owner)) but its mode \(String(status.st_mode & 0o777, radix: 8)) lets no one write it: chmod u+w \(path)"
            } else {
                "its mode lets this user write it, so an ACL, a file attribute or a security policy denies it"
            }
            throw StoreError(.unavailable, "cannot write \(path) (\(reason)): \(fix)")
        }
    }

    /// An older build must not write a schema it does not know: its queries could miss what a later migration added.
    static func refuseNewerSchema(_ db: Database, directory: String) throws {
        guard try Migrations.migrator.hasBeenSuperseded(db) else { return }
        let applied = try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations")
        throw NewerSchemaError(directory: directory, unknownMigrations: applied.filter { !knownMigrations.contains($0) })
    }

    /// Checks, without writing anything, that a database (if there is one yet) is not from a newer build.
    public static func checkSchema(directory: String) throws {
        let path = (directory as NSString).appendingPathComponent(fileName)
        guard access(path, F_OK) == 0 else {
            if errno == ENOENT { return }
            throw StoreError(.unavailable, "cannot read \(path): \(String(cString: strerror(errno)))")
        }
        try readOnly(directory: directory) { _ in }
    }

    /// Runs `body` on the database opened read-only, which leaves the file byte for byte as it was, once it is
    /// known not to come from a newer build.
    static func readOnly<T>(directory: String, _ body: (Database) throws -> T) throws -> T {
        try readOnly(path: (directory as NSString).appendingPathComponent(fileName), body)
    }

    static func readOnly<T>(path: String, _ body: (Database) throws -> T) throws -> T {
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(10)
        let queue = try opening(path) { try DatabaseQueue(path: path, configuration: configuration) }
        defer { try? queue.close() }
        return try queue.read { db in
            try refuseNewerSchema(db, directory: (path as NSString).deletingLastPathComponent)
            return try body(db)
        }
    }

    /// Runs what opens a database, saying why it failed in words (a full disk, a file of another user), with its path.
    static func opening<T>(_ path: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let error as DatabaseError {
            let reason = [.SQLITE_CANTOPEN, .SQLITE_PERM, .SQLITE_AUTH].contains(error.resultCode)
                ? "it and its folder must be readable and writable by the user running this (uid \(getuid()))"
                : (GroupCommitter.storeError(error, onDiskOf: path) as? StoreError)?.reason ?? "\(error)"
            throw StoreError(.unavailable, "cannot open \(path): \(reason)")
        }
    }

    /// Every migration this build knows, oldest first.
    public static var knownMigrations: [String] { Migrations.migrator.migrations }

    /// The current schema's applied migrations, oldest first.
    public func appliedMigrations() throws -> [String] {
        try pool.read { db in try Migrations.migrator.appliedMigrations(db) }
    }
}

extension RelayDatabase {
    /// `PRAGMA integrity_check`: "ok" when the file is sound.
    public func integrityCheck() throws -> String {
        try pool.read(Self.integrityCheck)
    }

    /// The same of a database file (a backup) opened read-only.
    public static func integrityCheck(ofFile path: String) throws -> String {
        try readOnly(path: path, integrityCheck)
    }

    private static func integrityCheck(_ db: Database) throws -> String {
        try String.fetchAll(db, sql: "PRAGMA integrity_check").joined(separator: "; ")
    }

    /// Closes every connection. The writer task must have ended.
    public func close() throws {
        try checkpointer.close()
        try pool.close()
    }

    /// Caps the file's size in pages on the writer connection: how tests make the disk full.
    package func setMaxPageCount(_ pages: Int) throws {
        try pool.writeWithoutTransaction { db in _ = try Int.fetchOne(db, sql: "PRAGMA max_page_count = \(pages)") }
    }

    package func pageCount() throws -> Int {
        try pool.read { db in try Int.fetchOne(db, sql: "PRAGMA page_count") ?? 0 }
    }
}

extension Database {
    /// The first row of a cached statement, read in place by column index: on the writer's hot path, without copying
    /// the row. The row is valid only inside `read`: return values taken from it, never the row.
    func firstRow<T>(_ sql: String, arguments: StatementArguments? = nil, _ read: (Row) throws -> T) throws -> T? {
        let cursor = try Row.fetchCursor(cachedStatement(sql: sql), arguments: arguments)
        return try withExtendedLifetime(cursor) { try cursor.next().map(read) }
    }
}
