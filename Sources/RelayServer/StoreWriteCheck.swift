import Foundation
import Logging
import Prometheus
import RelayStore
import Synchronization

/// Whether the store can take a disclosure now, for /readyz and a check every minute (the first at start, so that a
/// relay started on a full disk says so before a client writes). Not while a write failed, nor while the disk has
/// less room than two of the largest envelopes: a disk at its brim still takes a write that reuses WAL space, and
/// refuses the next disclosure. A failed write clears by itself once there is room again.
final class StoreWriteCheck: Sendable {
    let db: RelayDatabase
    let directory: String
    let room: Int64
    private let freeBytes: Gauge
    private let logger: Logger
    private let short = Mutex(false)

    init(db: RelayDatabase, directory: String, room: Int64, freeBytes: Gauge, logger: Logger) {
        (self.db, self.directory, self.room, self.freeBytes, self.logger) = (db, directory, room, freeBytes, logger)
    }

    /// Why the store cannot take a disclosure now, or nil.
    func failure() async -> String? {
        let free = ((try? FileManager.default.attributesOfFileSystem(forPath: directory))?[.systemFreeSize] as? NSNumber)?.int64Value
        if let free { freeBytes.set(Double(free)) }
        let roomy = free.map { $0 >= room } ?? true
        let changed = short.withLock { wasShort in
            defer { wasShort = !roomy }
            return wasShort == roomy
        }
        if changed {
            if roomy {
                logger.notice("the data directory's disk has room again", metadata: ["relay.freeBytes": "\(free ?? 0)"])
            } else {
                logger.error("the data directory's disk is nearly full: intake may fail", metadata: [
                    "relay.freeBytes": "\(free ?? 0)", "relay.neededBytes": "\(room)", "relay.dataDirectory": "\(directory)"])
            }
        }
        if db.writeFailure != nil, roomy { return await db.probeWrite() }
        if let failure = db.writeFailure { return "the store cannot write (\(failure))" }
        guard roomy else {
            return "the disk of the data directory has \((free ?? 0) >> 20) MiB free, less than two of the largest envelopes (2 × limits.maxEnvelopeBytes, \(room >> 20) MiB)"
        }
        return nil
    }
}
