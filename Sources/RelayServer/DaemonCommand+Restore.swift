import ArgumentParser
import Foundation
import RelayCore
import RelayStore

/// Puts a backup in place of the relay's database, only while the relay is stopped and only once the copy
/// checks out; the database it replaces is kept beside it, never removed.
struct Restore: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Restore a backup into the data directory while the relay is stopped; the database it replaces is kept.",
        discussion: """
            The copy must pass its integrity check and audit verification (and hold --expect-head, the head backup \
            printed when it took it) before anything moves. The current relay.sqlite, with its -wal and -shm, is renamed \
            replaced-<time>.sqlite in the data directory. Refused while amane-relayd serves the directory: \
            a database swapped under a running relay is damaged. Example: systemctl stop amane-relayd; \
            sudo -u amane-relay amane-relayd restore /var/backups/amane-relay/relay-20261129T020000.sqlite --config /etc/amane-relay/amane-relayd.yaml
            """)

    /// The folder a restore checks its copy in, inside the data directory, which it holds locked meanwhile.
    static let stagingPrefix = ".restore-"

    @OptionGroup var common: CommonOptions
    @Argument(help: ArgumentHelp("The backup file (relay-<time>.sqlite).", valueName: "backup")) var backup: String
    @Option(name: .customLong("expect-head"), help: ArgumentHelp("The head backup printed for this copy, which it must hold.", valueName: "seq:hash"))
    var expectHead: String?

    func validate() throws {
        if let expectHead, AuditHead(text: expectHead) == nil {
            throw ValidationError("--expect-head takes SEQ:HASH as a verification printed it, such as 1042:9f86d081…")
        }
    }

    func run() async throws {
        let configuration = try await common.load()
        let directory = configuration.dataDirectory
        guard FileManager.default.fileExists(atPath: backup) else { throw CommandFailure("no backup at \(backup)") }
        guard !FileManager.default.fileExists(atPath: backup + "-wal") else {
            throw CommandFailure("\(backup) has a write-ahead log beside it (\(backup)-wal), which a copy of the file alone would lose; nothing was restored")
        }
        guard FileManager.default.fileExists(atPath: directory) else {
            throw CommandFailure("no data directory at \(directory): give the relay's --data-dir (or --config), or create it with `amane-relayd init`")
        }
        let lock: Int32
        do { lock = try DataDirectoryLock.acquire(directory) } catch {
            throw CommandFailure("amane-relayd is serving \(directory), or another restore is running: stop it first (systemctl stop amane-relayd); a database swapped under a running relay is damaged")
        }
        defer { close(lock) }
        let current = (directory as NSString).appendingPathComponent(RelayDatabase.fileName)
        if !FileManager.default.fileExists(atPath: current), FileManager.default.fileExists(atPath: current + "-wal") {
            throw CommandFailure("""
                \(current)-wal is there without its database: an earlier restore stopped partway. Move it beside the \
                replaced-*.sqlite it belongs to (as replaced-<time>.sqlite-wal), then restore again
                """)
        }

        FolderLock.removeLeftovers(in: directory, prefix: Self.stagingPrefix, leftBy: "a restore", say: Console.warn)
        let staging = (directory as NSString).appendingPathComponent(Self.stagingPrefix + UUID().uuidString)
        try RelayFiles.makeDirectory(staging)
        try RelayFiles.ownLike(directory, staging)
        defer { try? FileManager.default.removeItem(atPath: staging) }
        let staged = (staging as NSString).appendingPathComponent(RelayDatabase.fileName)
        do { try FileManager.default.copyItem(atPath: backup, toPath: staged) } catch let error as CocoaError {
            throw CommandFailure("cannot copy \(backup) into \(directory) to check it: \(RelayFiles.reason(error)); nothing was restored")
        }
        let verified: (count: Int64, head: String)
        do {
            try RelayDatabase.checkSchema(directory: staging)
            let integrity = try RelayDatabase.integrityCheck(ofFile: staged)
            guard integrity == "ok" else { throw CommandFailure("\(backup) fails its integrity check (\(integrity)); nothing was restored") }
            verified = try RelayDatabase.verifyAuditReadOnly(directory: staging, expecting: expectHead.flatMap(AuditHead.init(text:)))
        } catch let error as AuditVerifier.Break {
            let next = expectHead == nil ? "Treat it as a possible compromise, and restore an older copy"
                : "Unless --expect-head was mistyped (check it against the head backup printed when it took this copy), treat it as a possible compromise, and restore an older copy"
            FileHandle.standardError.write(Data("The audit trail of \(backup) is BROKEN\(error.place): \(error.reason). Nothing was restored. \(next).\n".utf8))
            throw ExitCode.brokenAuditTrail
        } catch let error as CommandFailure {
            throw error
        } catch {
            throw CommandFailure("\(backup) is not a relay database that this amane-relayd can read (\(error)); nothing was restored")
        }
        try Self.ownLikeTheDirectory(staged, directory: directory)
        try Self.sync(staged)

        let stamp = Backup.timestamp()
        // Two restores within a second (one undoing the other) keep both.
        let replaced = (1...).lazy.map { (directory as NSString).appendingPathComponent("replaced-\(stamp)\($0 == 1 ? "" : "-\($0)").sqlite") }
            .first { name in ["", "-wal", "-shm"].allSatisfy { !FileManager.default.fileExists(atPath: name + $0) } }!
        var keptAs: String?
        if FileManager.default.fileExists(atPath: current) {
            // Its log folded in, the database is one file, moved in one step; this also fails while another process has it open.
            do { try RelayDatabase.makeSelfContained(file: current) } catch let error as StoreError where error.code == .busy {
                throw CommandFailure("another process has \(current) open (an admin command or a backup?); nothing was restored, try again once it ends")
            } catch {
                // A damaged database may not fold: it moves with its -wal and -shm, under one name, the database first.
                Console.warn("could not fold the write-ahead log into \(current) (\(error)); it is kept beside it")
            }
            for suffix in ["", "-wal", "-shm"] where FileManager.default.fileExists(atPath: current + suffix) {
                try FileManager.default.moveItem(atPath: current + suffix, toPath: replaced + suffix)
            }
            keptAs = replaced
        }
        do {
            try FileManager.default.moveItem(atPath: staged, toPath: current)
        } catch {
            if keptAs != nil { try? FileManager.default.moveItem(atPath: replaced, toPath: current) }
            throw CommandFailure("cannot put the backup in place (\(error)); the database is as it was")
        }
        try Self.sync(directory)
        for warning in RelayFiles.openToOthers(configuration) { Console.warn(warning) }
        if expectHead == nil {
            Console.warn("""
                restored without --expect-head: the copy's trail verifies in itself, but only the head backup printed when it \
                took the copy shows that no one cut or rewrote it since; compare \(verified.head) with that head
                """)
        }
        let folder = (backup as NSString).deletingLastPathComponent.isEmpty ? "." : (backup as NSString).deletingLastPathComponent
        let name = (backup as NSString).lastPathComponent
        let copies = (try? Backup.backups("relay-", in: folder)) ?? []
        let newer = copies.filter { Backup.order($0) > Backup.order(name) }
        let toMove = switch (copies.contains(name), newer.isEmpty) {
        case (true, true): "No backup in \(folder) is newer than this one."
        case (true, false): """
            Before starting the relay: move the backups newer than this one out of \(folder), so that the next backup \
            does not report the entries this copy lacks as a cut: \(newer.joined(separator: ", ")).
            """
        // A copy restored from elsewhere: the backup folder is not known here.
        case (false, _): """
            Before starting the relay: move the backups newer than this copy out of the backup folder, so that the next \
            backup does not report the entries this copy lacks as a cut.
            """
        }
        print("""
            Restored \(backup) into \(directory) (audit trail verified: \(verified.count) entries, head \(verified.head)).
            \(keptAs.map { "The database it replaced is kept as \($0)." } ?? "There was no database to replace.")
            \(toMove) Once it runs: revoke again anyone revoked \
            since the copy was taken, enroll again anyone enrolled since, and have a responder run `amane rotate`.
            """)
    }

    /// Flushes a file, or a folder's entries, to the disk.
    static func sync(_ path: String) throws {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw CommandFailure("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw CommandFailure("cannot flush \(path) to the disk: \(String(cString: strerror(errno)))") }
    }

    /// The restored file belongs to whoever owns the data directory (the service user, when root restores), mode 0600.
    static func ownLikeTheDirectory(_ path: String, directory: String) throws {
        guard chmod(path, 0o600) == 0 else { throw CommandFailure("cannot make \(path) private: \(String(cString: strerror(errno)))") }
        try RelayFiles.ownLike(directory, path)
    }
}
