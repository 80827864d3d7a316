import Foundation
import GRDB
import RelayCore
import Synchronization

/// The single writer, on a thread of its own. When a write arrives it opens a transaction and runs each
/// write in its own savepoint as it comes, for up to `window` after the first (or `maxBatch` writes); then
/// it commits and resumes every waiter, only after the commit returned. A write that fails alone is rolled
/// back alone; a failed commit fails every waiter. A lone writer does not wait for company that never
/// comes: the window is kept open only after a batch that held more than one write.
final class GroupCommitter: Sendable {
    struct Options: Sendable {
        var maxBatch = 256
        var window: Duration = .microseconds(500)
        /// Past this many uncommitted writes, callers get `busy` instead of more memory.
        var maxPending = 4096
    }

    private typealias Work = @Sendable (Database) throws -> any Sendable

    private struct Pending {
        let work: Work
        let continuation: CheckedContinuation<any Sendable, any Error>
    }

    private struct State {
        var queue: [Pending] = []
        /// Taken into the open transaction, not yet committed.
        var batch: [Pending] = []
        /// The writer thread sleeps on `arrivals`.
        var writerWaits = false
        var closed = false
        var committedBatches = 0
        var lastBatchSize = 0
        /// Why the last batch that meant to write failed, until one that changed something commits.
        var writeFailure: String?
    }

    private let writer: any DatabaseWriter
    private let options: Options
    private let state = Mutex(State())
    private let arrivals = DispatchSemaphore(value: 0)
    private let observer: @Sendable (_ batchSize: Int) -> Void
    private let healthObserver: @Sendable (_ writeFailure: String?) -> Void

    init(writer: any DatabaseWriter, options: Options, observer: @escaping @Sendable (Int) -> Void = { _ in },
         healthObserver: @escaping @Sendable (String?) -> Void = { _ in }) {
        precondition(options.maxBatch >= 1, "a batch holds at least one write")
        self.writer = writer
        self.options = options
        self.observer = observer
        self.healthObserver = healthObserver
    }

    /// Runs `work` in the next batch and returns once its transaction is durably committed.
    func write<T: Sendable>(_ work: @escaping @Sendable (Database) throws -> T) async throws -> T {
        let value = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<any Sendable, any Error>) in
            let outcome = state.withLock { state -> Result<Bool, StoreError> in
                if state.closed { return .failure(StoreError(.unavailable, "the store is shutting down")) }
                if state.queue.count + state.batch.count >= options.maxPending { return .failure(StoreError(.busy, "too many writes waiting")) }
                state.queue.append(Pending(work: { try work($0) }, continuation: continuation))
                defer { state.writerWaits = false }
                return .success(state.writerWaits)
            }
            switch outcome {
            case .failure(let error): continuation.resume(throwing: error)
            case .success(let wakeWriter): if wakeWriter { arrivals.signal() }
            }
        }
        return value as! T
    }

    /// How many batches have committed since start: tells the checkpointer whether the WAL grew.
    var committedBatches: Int { state.withLock { $0.committedBatches } }

    /// Writes queued and not yet taken into a transaction.
    var waitingWrites: Int { state.withLock { $0.queue.count } }

    /// Why the store cannot write (a full disk, an I/O error, a read-only file), or nil while it can.
    var writeFailure: String? { state.withLock { $0.writeFailure } }

    /// Commits batches on the writer thread until cancelled; then finishes what is queued and refuses the rest.
    func run() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (finished: CheckedContinuation<Void, Never>) in
                let thread = Thread {
                    // The name top -H, perf and the benchmark see (Foundation does not pass Thread.name on, on Linux).
                    try? "amane-writer".write(toFile: "/proc/thread-self/comm", atomically: false, encoding: .utf8)
                    while self.awaitFirstWrite() {
                        self.commitBatch()
                    }
                    finished.resume()
                }
                thread.name = "amane-writer"
                thread.start()
            }
        } onCancel: {
            close()
        }
    }

    func close() {
        let wakeWriter = state.withLock { state -> Bool in
            state.closed = true
            defer { state.writerWaits = false }
            return state.writerWaits
        }
        if wakeWriter { arrivals.signal() }
    }

    private func commitBatch() {
        // Only a commit that changed something shows the disk takes writes again: an empty one writes nothing.
        let outcome = Result { try writer.write { db in
            let before = db.totalChangesCount
            return (try self.drain(db), db.totalChangesCount > before)
        } }
        let failure: String?? = switch outcome {
        case .success(let (_, changed)): changed ? .some(nil) : .none
        case .failure(let error): Self.failsTheBatch(error) || error is StoreError ? .some("\(Self.storeError(error, onDiskOf: writer.path))") : .none
        }
        let healthChanged = state.withLock { state -> Bool in
            guard let failure, failure != state.writeFailure else { return false }
            state.writeFailure = failure
            return true
        }
        if healthChanged, let failure { healthObserver(failure) }
        let batch = state.withLock { state -> [Pending] in
            defer { state.batch = [] }
            if case .success = outcome { state.committedBatches += 1 }
            // A transaction that failed before taking a write (BEGIN itself failed) fails what waits, rather than retrying at once forever.
            if case .failure = outcome, state.batch.isEmpty {
                defer { state.queue = [] }
                return state.queue
            }
            state.lastBatchSize = state.batch.count
            return state.batch
        }
        switch outcome {
        case .success(let (results, _)):
            // Counted before any writer hears, so a caller that returned finds its batch counted.
            observer(batch.count)
            for (pending, result) in zip(batch, results) {
                pending.continuation.resume(with: result.mapError(Self.storeError))
            }
        case .failure(let error):
            let failure = Self.storeError(error, onDiskOf: writer.path)
            for pending in batch { pending.continuation.resume(throwing: failure) }
        }
    }

    /// Runs queued writes inside the open transaction as they arrive, until the window closes or the batch is full.
    private func drain(_ db: Database) throws -> [Result<any Sendable, any Error>] {
        let window = state.withLock { $0.lastBatchSize > 1 } ? options.window : .zero
        let deadline = DispatchTime.now() + .nanoseconds(Int(window.inNanoseconds))
        var results: [Result<any Sendable, any Error>] = []
        while let chunk = nextChunk(room: options.maxBatch - results.count, until: deadline) {
            for pending in chunk {
                results.append(try Self.runInSavepoint(pending.work, db))
                // SQLite may roll the whole transaction back on its own (disk full): never report it as stored.
                guard db.isInsideTransaction else { throw StoreError(.unavailable, "the transaction was rolled back") }
            }
        }
        return results
    }

    /// Sleeps until a write is queued; false once closed with nothing left to commit.
    private func awaitFirstWrite() -> Bool {
        while true {
            let ready = state.withLock { state -> Bool? in
                if !state.queue.isEmpty { return true }
                if state.closed { return false }
                state.writerWaits = true
                return nil
            }
            if let ready { return ready }
            arrivals.wait()
        }
    }

    private enum Next { case take([Pending]), done, sleep }

    /// Moves up to `room` queued writes into the batch, sleeping until one arrives or `deadline` passes;
    /// nil when the batch is complete.
    private func nextChunk(room: Int, until deadline: DispatchTime) -> [Pending]? {
        guard room > 0 else { return nil }
        while true {
            let next = state.withLock { state -> Next in
                if !state.queue.isEmpty {
                    let chunk = Array(state.queue.prefix(room))
                    state.queue.removeFirst(chunk.count)
                    state.batch.append(contentsOf: chunk)
                    return .take(chunk)
                }
                if state.closed || DispatchTime.now() >= deadline { return .done }
                state.writerWaits = true
                return .sleep
            }
            switch next {
            case .take(let chunk): return chunk
            case .done: return nil
            case .sleep:
                guard arrivals.wait(timeout: deadline) == .timedOut else { continue }
                // A writer that saw `writerWaits` just before the timeout still signals: take that signal too.
                let signalled = state.withLock { state -> Bool in
                    defer { state.writerWaits = false }
                    return !state.writerWaits
                }
                if signalled { arrivals.wait() }
            }
        }
    }

    private static func runInSavepoint(_ work: Work, _ db: Database) throws -> Result<any Sendable, any Error> {
        try db.cachedStatement(sql: "SAVEPOINT item").execute()
        do {
            let value = try work(db)
            try db.cachedStatement(sql: "RELEASE item").execute()
            return .success(value)
        } catch {
            // SQLite rolled the whole transaction back: report why, not that the savepoint is gone.
            if failsTheBatch(error) || !db.isInsideTransaction { throw error }
            try db.cachedStatement(sql: "ROLLBACK TO item").execute()
            try db.cachedStatement(sql: "RELEASE item").execute()
            return .failure(error)
        }
    }

    /// Disk and I/O failures abort the whole batch; constraint and logic errors fail one write.
    private static func failsTheBatch(_ error: any Error) -> Bool {
        guard let error = error as? DatabaseError else { return false }
        return [.SQLITE_FULL, .SQLITE_IOERR, .SQLITE_CORRUPT, .SQLITE_NOMEM, .SQLITE_CANTOPEN, .SQLITE_READONLY, .SQLITE_NOTADB]
            .contains(error.resultCode)
    }

    /// As `storeError(_:)`, telling a full disk from a failing one: SQLite reports some writes on a full disk
    /// (growing the WAL or its index) as I/O errors.
    static func storeError(_ error: any Error, onDiskOf path: String) -> any Error {
        var disk = statvfs()
        guard (error as? DatabaseError)?.resultCode == .SQLITE_IOERR, statvfs((path as NSString).deletingLastPathComponent, &disk) == 0,
              UInt64(disk.f_bavail) * UInt64(disk.f_frsize) < 64 * 1024 else { return storeError(error) }
        return StoreError(.unavailable, "the disk is full (SQLite saw an I/O error on it)")
    }

    static func storeError(_ error: any Error) -> any Error {
        if error is StoreError { return error }
        if let error = error as? DatabaseError {
            switch error.resultCode {
            case .SQLITE_FULL: return StoreError(.unavailable, "the disk is full")
            case .SQLITE_READONLY: return StoreError(.unavailable, "the database cannot be written (a read-only file, folder or file system)")
            case .SQLITE_IOERR: return StoreError(.unavailable, "the disk failed to read or write (I/O error)")
            case .SQLITE_CORRUPT, .SQLITE_NOTADB: return StoreError(.unavailable, "the database file is damaged")
            case .SQLITE_CONSTRAINT: return StoreError(.conflict, "a record with that identity exists")
            case .SQLITE_BUSY, .SQLITE_LOCKED: return StoreError(.busy, "the database is busy")
            default: return StoreError(.unavailable, "storage failed (SQLite \(error.resultCode.rawValue))")
            }
        }
        return error
    }
}

