import Foundation
import Logging
import Prometheus
import RelayStore
import Synchronization

/// Whether the store can take a submission now, for /readyz and a check every minute (the first at start, so that a
/// relay started on a full disk says so before a client writes). Not while a write failed, nor while the disk has
/// less room than two of the largest submissions: a disk at its brim still takes a write that reuses WAL space, and
/// refuses the next disclosure. A failed write clears by itself once there is room again.
final class StoreWriteCheck: Sendable {
    let db: RelayDatabase
    let directory: String
    let room: Int64
    private let freeBytes: Gauge
    private let logger: Logger
    /// Short of room now, and as last told in the log.
    private let state = Mutex((short: false, told: false))

    init(db: RelayDatabase, directory: String, room: Int64, freeBytes: Gauge, logger: Logger) {
        (self.db, self.directory, self.room, self.freeBytes, self.logger) = (db, directory, room, freeBytes, logger)
    }

    /// Why the store cannot take a submission now, or nil. With `telling` (the minute's check), a change of room is logged.
    func failure(telling: Bool = false) async -> String? {
        let free = ((try? FileManager.default.attributesOfFileSystem(forPath: directory))?[.systemFreeSize] as? NSNumber)?.int64Value
        if let free { freeBytes.set(Double(free)) }
        // Short until a quarter more than the room is back: a disk that hovers at the mark does not flap.
        let short = state.withLock { state in
            if let free { state.short = free < (state.short ? room + room / 4 : room) }
            return state.short
        }
        if telling { tell(short: short, free: free ?? 0) }
        if db.writeFailure != nil, !short { return await db.probeWrite().map { "the store cannot write (\($0))" } }
        if let failure = db.writeFailure { return "the store cannot write (\(failure))" }
        guard !short else {
            return "the disk of the data directory has \(Self.size(free ?? 0)) free, less than two of the largest submissions the limits allow (\(Self.size(room)))"
        }
        return nil
    }

    static func size(_ bytes: Int64) -> String { bytes >= 1 << 20 ? "\(bytes >> 20) MiB" : "\(bytes >> 10) KiB" }

    private func tell(short: Bool, free: Int64) {
        guard state.withLock({ state in defer { state.told = short }; return state.told != short }) else { return }
        if short {
            logger.error("the data directory's disk is nearly full: intake may fail", metadata: [
                "relay.freeBytes": "\(free)", "relay.neededBytes": "\(room)", "relay.dataDirectory": "\(directory)"])
        } else {
            logger.notice("the data directory's disk has room again", metadata: ["relay.freeBytes": "\(free)"])
        }
    }
}
