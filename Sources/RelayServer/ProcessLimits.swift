import CRelayProcess
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Resource limits the daemon sets on itself. Under the systemd unit, `LimitNOFILE=` and `LimitCORE=`
/// set them instead (its system-call filter refuses `setrlimit`); these cover a daemon started by hand.
enum ProcessLimits {
    /// Every connection holds a descriptor, and a process often starts with a soft limit of 1,024 open
    /// files. Raises the soft limit to the hard limit; returns the limit now in force.
    @discardableResult
    static func raiseOpenFiles() -> UInt64 {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { return UInt64(raised.rlim_cur) }
        }
        return UInt64(limit.rlim_cur)
    }

    /// A core dump could hold plaintext in flight or a live sealing context: allow none. The limit alone is
    /// not enough where cores go to a program (`core_pattern` with a pipe); a process that is not dumpable
    /// leaves no core at all, and its memory cannot be read through ptrace or /proc by its own user either.
    /// - Returns: false when the process could not be made undumpable (a system-call filter or a security module refused).
    @discardableResult
    static func refuseCoreDumps() -> Bool {
        var none = rlimit(rlim_cur: 0, rlim_max: 0)
        _ = setrlimit(Int32(RLIMIT_CORE.rawValue), &none)
        return relay_forbid_dumping() == 0
    }
}

/// One daemon per data directory: a second would fight the first over the database's writer and, with
/// --dev, rewrite the demo profiles to its own port. The lock lasts as long as the process.
enum DataDirectoryLock {
    static let fileName = "relay.lock"

    /// Takes the lock, or says who holds it; returns the descriptor that holds it.
    static func acquire(_ directory: String) throws -> Int32 {
        try FolderLock.acquire(directory, fileName: fileName,
                               held: "another amane-relayd is serving \(directory); stop it first, or give this one its own --data-dir")
    }
}

/// An exclusive lock on a folder, held until its descriptor closes: the holder alone works in it, so what an
/// earlier holder left half-made (it was killed) can go.
enum FolderLock {
    static func acquire(_ directory: String, fileName: String, held: String) throws -> Int32 {
        let path = (directory as NSString).appendingPathComponent(fileName)
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw CommandFailure("cannot open \(path): \(String(cString: strerror(errno)))") }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let reason = errno
            close(descriptor)
            throw CommandFailure(reason == EWOULDBLOCK ? held : "cannot lock \(path): \(String(cString: strerror(reason)))")
        }
        // Made by root, the lock would keep the folder's owner (the service user) out.
        try? RelayFiles.ownLike(directory, path)
        return descriptor
    }

    /// Removes the folders named `prefix…` in `directory`, which only a holder of its lock makes, and says what it
    /// removed, or could not (then by hand), as `what` ("a backup", "a restore") left them.
    static func removeLeftovers(in directory: String, prefix: String, leftBy what: String, say: (String) -> Void) {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasPrefix(prefix) }
        var removed = 0
        for name in names {
            let path = (directory as NSString).appendingPathComponent(name)
            do { try FileManager.default.removeItem(atPath: path); removed += 1 } catch {
                say("cannot remove \(path), an unfinished copy left by \(what) that stopped partway (\(error.localizedDescription)); remove it by hand")
            }
        }
        if removed > 0 { say("removed \(removed) unfinished cop\(removed == 1 ? "y" : "ies") left by \(what) that stopped partway") }
    }
}
