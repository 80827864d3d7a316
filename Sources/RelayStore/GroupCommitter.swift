import GRDB
import Synchronization

/// The single writer. It gathers waiting writes for a short window (or up to `maxBatch`), runs each in
/// its own savepoint inside one transaction, and resumes every waiter only after the commit returned.
/// A write that fails alone is rolled back alone; a failed commit fails every waiter.
final class GroupCommitter: Sendable {
    struct Options: Sendable {
        var maxBatch = 256
        var window: Duration = .microseconds(500)
        /// Past this many waiting writes, callers get `busy` instead of more memory.
        var maxPending = 4096
    }

    private typealias Work = @Sendable (Database) throws -> any Sendable

    private struct Pending {
        let work: Work
        let continuation: CheckedContinuation<any Sendable, any Error>
    }

    private struct State {
        var queue: [Pending] = []
        var wakeup: CheckedContinuation<Void, Never>?
        var closed = false
    }

    private let writer: any DatabaseWriter
    private let options: Options
    private let state = Mutex(State())
    private let observer: @Sendable (_ batchSize: Int) -> Void

    init(writer: any DatabaseWriter, options: Options, observer: @escaping @Sendable (Int) -> Void = { _ in }) {
        self.writer = writer
        self.options = options
        self.observer = observer
    }

    /// Runs `work` in the next batch and returns once its transaction is durably committed.
    func write<T: Sendable>(_ work: @escaping @Sendable (Database) throws -> T) async throws -> T {
        let value = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<any Sendable, any Error>) in
            let (rejection, wakeup) = state.withLock { state -> (StoreError?, CheckedContinuation<Void, Never>?) in
                if state.closed { return (StoreError(.unavailable, "the store is shutting down"), nil) }
                if state.queue.count >= options.maxPending { return (StoreError(.busy, "too many writes waiting"), nil) }
                state.queue.append(Pending(work: { try work($0) }, continuation: continuation))
                defer { state.wakeup = nil }
                return (nil, state.wakeup)
            }
            if let rejection { continuation.resume(throwing: rejection) }
            wakeup?.resume()
        }
        return value as! T
    }

    var pendingCount: Int { state.withLock { $0.queue.count } }

    /// Commits batches until cancelled; then finishes what is queued and refuses the rest.
    func run() async {
        await withTaskCancellationHandler {
            while let batch = await nextBatch() {
                await commit(batch)
            }
        } onCancel: {
            close()
        }
    }

    func close() {
        let wakeup = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.closed = true
            defer { state.wakeup = nil }
            return state.wakeup
        }
        wakeup?.resume()
    }

    private func nextBatch() async -> [Pending]? {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { state -> Bool in
                if !state.queue.isEmpty || state.closed { return true }
                state.wakeup = continuation
                return false
            }
            if ready { continuation.resume() }
        }
        if state.withLock({ $0.queue.count < options.maxBatch && !$0.closed }) && options.window > .zero {
            try? await Task.sleep(for: options.window)
        }
        return state.withLock { state -> [Pending]? in
            if state.queue.isEmpty { return state.closed ? nil : [] }
            let batch = Array(state.queue.prefix(options.maxBatch))
            state.queue.removeFirst(batch.count)
            return batch
        }
    }

    private func commit(_ batch: [Pending]) async {
        guard !batch.isEmpty else { return }
        let works = batch.map(\.work)
        do {
            let results = try await writer.write { db -> [Result<any Sendable, any Error>] in
                var results: [Result<any Sendable, any Error>] = []
                results.reserveCapacity(works.count)
                for work in works {
                    var outcome: Result<any Sendable, any Error> = .failure(StoreError(.unavailable, "not run"))
                    var fatal: (any Error)?
                    do {
                        try db.inSavepoint {
                            do {
                                outcome = .success(try work(db))
                                return .commit
                            } catch {
                                outcome = .failure(error)
                                if Self.failsTheBatch(error) { fatal = error }
                                return .rollback
                            }
                        }
                    } catch {
                        throw fatal ?? error
                    }
                    if let fatal { throw fatal }
                    // SQLite may roll the whole transaction back on its own (disk full): never report it as stored.
                    guard db.isInsideTransaction else { throw StoreError(.unavailable, "the transaction was rolled back") }
                    results.append(outcome)
                }
                return results
            }
            observer(batch.count)
            for (pending, result) in zip(batch, results) {
                pending.continuation.resume(with: result.mapError(Self.storeError))
            }
        } catch {
            let failure = Self.storeError(error)
            for pending in batch { pending.continuation.resume(throwing: failure) }
        }
    }

    /// Disk and I/O failures abort the whole batch; constraint and logic errors fail one write.
    private static func failsTheBatch(_ error: any Error) -> Bool {
        guard let error = error as? DatabaseError else { return false }
        return [.SQLITE_FULL, .SQLITE_IOERR, .SQLITE_CORRUPT, .SQLITE_NOMEM, .SQLITE_CANTOPEN, .SQLITE_READONLY, .SQLITE_NOTADB]
            .contains(error.resultCode)
    }

    static func storeError(_ error: any Error) -> any Error {
        if error is StoreError { return error }
        if let error = error as? DatabaseError {
            switch error.resultCode {
            case .SQLITE_FULL: return StoreError(.unavailable, "the disk is full")
            case .SQLITE_CONSTRAINT: return StoreError(.conflict, "a record with that identity exists")
            case .SQLITE_BUSY, .SQLITE_LOCKED: return StoreError(.busy, "the database is busy")
            default: return StoreError(.unavailable, "storage failed (SQLite \(error.resultCode.rawValue))")
            }
        }
        return error
    }
}
