import Foundation
import GRDB
import RelayCore
import RelayFormat
@testable import RelayStore
import RelayTestSupport
import Synchronization
import Testing

@Suite struct GroupCommitTests {
    final class Progress: Sendable {
        let running = Mutex(false)
        let released = Mutex(false)
    }

    @Test func concurrentWritesShareCommitsAndEachIsAcknowledgedOnce() async throws {
        let log = BatchLog()
        let fixture = try await StoreFixture(options: { $0.batchObserver = { log.record($0) } })
        let before = log.sizes.withLock { $0.reduce(0, +) }
        // Sealed first, so that the writes arrive together however slowly this machine seals.
        let requests = try (0..<64).map { try fixture.request("concurrent \($0)") }
        let ids = try await withThrowingTaskGroup(of: String.self) { group in
            for request in requests { group.addTask { try await fixture.db.intake(request).id } }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(Set(ids).count == 64)
        let sizes = log.sizes.withLock { $0 }
        #expect(sizes.reduce(0, +) - before == 64)
        #expect(sizes.max()! > 1, "64 concurrent writers never shared a commit")
        #expect(try await fixture.db.listQueue(QueueFilter(), limit: 500).cases.count == 64)
    }

    /// A write that changed the database and then failed is rolled back alone: the writes that queued behind it into
    /// its transaction commit, and those refused inside it (a reused idempotency key) fail alone, each with its reason.
    @Test(.timeLimit(.minutes(1)))
    func aFailingWriteFailsOnlyItself() async throws {
        let log = BatchLog()
        let fixture = try await StoreFixture(options: { $0.batchObserver = { log.record($0) } })
        let first = try await fixture.submit("first", key: "shared-key-0000000001")
        let requests = try (0..<20).map { try fixture.request("body \($0)", key: $0 % 4 == 0 ? "shared-key-0000000001" : UUID().uuidString) }
        let batchesBefore = log.sizes.withLock { $0.count }
        let progress = Progress()
        let failing = Task {
            try await fixture.db.committer.write { db in
                progress.running.withLock { $0 = true }
                try db.execute(sql: "INSERT INTO queue (name, createdAt) VALUES ('rolled-back', 0)")
                // Holds the writer until the others wait for it, so that they queue into this transaction.
                while fixture.db.committer.waitingWrites < 20 { Thread.sleep(forTimeInterval: 0.01) }
                throw StoreError(.invalid, "fails on purpose, after writing")
            }
        }
        while !progress.running.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(5)) }
        let outcomes = await withTaskGroup(of: (Int, Result<String, StoreError>).self) { group in
            for (index, request) in requests.enumerated() {
                group.addTask {
                    do { return (index, .success(try await fixture.db.intake(request).id)) } catch {
                        return (index, .failure(error as? StoreError ?? StoreError(.unavailable, "\(error)")))
                    }
                }
            }
            return await group.reduce(into: [Int: Result<String, StoreError>]()) { $0[$1.0] = $1.1 }
        }
        let failure = await #expect(throws: StoreError.self) { try await failing.value }
        #expect(failure?.reason == "fails on purpose, after writing")
        let refused = outcomes.filter { if case .failure = $0.value { true } else { false } }
        #expect(refused.keys.sorted() == [0, 4, 8, 12, 16])
        #expect(refused.values.allSatisfy { if case .failure(let error) = $0 { error.code == .keyReused } else { false } })
        let stored = Set(outcomes.values.compactMap { try? $0.get() })
        #expect(stored.count == 15)
        #expect(Set(try await fixture.db.listQueue(QueueFilter(), limit: 500).cases.map(\.id)) == stored.union([first.id]))
        #expect(try await fixture.db.pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM queue WHERE name = 'rolled-back'") } == 0)
        let batches = log.sizes.withLock { Array($0[batchesBefore...]) }
        #expect((batches.first ?? 0) > 1, "the failing write's transaction took others that queued behind it: \(batches)")
    }

    @Test func pastItsBoundTheWriterSaysBusy() async throws {
        let fixture = try await StoreFixture(options: { $0.maxPending = 4; $0.windowMicroseconds = 20_000 })
        let results = await withTaskGroup(of: Result<String, StoreError>.self) { group in
            for index in 0..<100 {
                group.addTask {
                    do { return .success(try await fixture.submit("burst \(index)").id) } catch let error as StoreError { return .failure(error) } catch {
                        return .failure(StoreError(.unavailable, "\(error)"))
                    }
                }
            }
            return await group.reduce(into: [Result<String, StoreError>]()) { $0.append($1) }
        }
        let stored = results.compactMap { try? $0.get() }
        let busy = results.filter { if case .failure(let e) = $0 { return e.code == .busy } else { return false } }
        #expect(busy.count > 0 && stored.count + busy.count == 100)
        #expect(try await fixture.db.listQueue(QueueFilter(), limit: 500).cases.count == stored.count)
    }

    @Test func aLoneWriterIsNotHeldForTheWindow() async throws {
        // With a 10-minute window, only the rule "no window after a batch of one" lets setup and these writes finish
        // within 90 s, however long other tests hold the test threads.
        let stored = Mutex<Int?>(nil)
        let work = Task {
            let fixture = try await StoreFixture(options: { $0.windowMicroseconds = 600_000_000 })
            for index in 0..<3 { _ = try await fixture.submit("alone \(index)") }
            let count = try await fixture.db.listQueue(QueueFilter()).cases.count
            stored.withLock { $0 = count }
        }
        let deadline = ContinuousClock.now + .seconds(90)
        while stored.withLock({ $0 }) == nil, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(stored.withLock { $0 } == 3)
        work.cancel()
    }

    @Test(.timeLimit(.minutes(5)))
    func whileAnotherConnectionHoldsTheWriteLockWritesFailBusyAndTheWriterRecovers() async throws {
        let fixture = try await StoreFixture()
        var holdsTheLock = Configuration()
        holdsTheLock.allowsUnsafeTransactions = true
        let intruder = try DatabaseQueue(path: (fixture.directory as NSString).appendingPathComponent(RelayDatabase.fileName), configuration: holdsTheLock)
        try intruder.inDatabase { try $0.execute(sql: "BEGIN IMMEDIATE") }
        await #expect(throws: StoreError.code(.busy)) { try await fixture.submit("while locked") }
        try intruder.inDatabase { try $0.execute(sql: "COMMIT") }
        let after = try await fixture.submit("after the lock")
        #expect(try await fixture.db.listQueue(QueueFilter()).cases.map(\.id) == [after.id])
    }

    @Test(.timeLimit(.minutes(1)))
    func closingCommitsWhatWasQueuedAndRefusesTheRest() async throws {
        let fixture = try await StoreFixture()
        let requests = try (0..<20).map { try fixture.request("queued \($0)") }
        let progress = Progress()
        // Holds the writer while the writes queue up behind it and the store closes.
        let holding = Task {
            try await fixture.db.committer.write { _ in
                progress.running.withLock { $0 = true }
                while !progress.released.withLock({ $0 }) { Thread.sleep(forTimeInterval: 0.01) }
            }
        }
        while !progress.running.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(5)) }
        let writes = Task {
            try await withThrowingTaskGroup(of: String.self) { group in
                for request in requests { group.addTask { try await fixture.db.intake(request).id } }
                return try await group.reduce(into: Set<String>()) { $0.insert($1) }
            }
        }
        while fixture.db.committer.waitingWrites < 20 { try await Task.sleep(for: .milliseconds(5)) }
        fixture.db.closeWriter()
        await #expect(throws: StoreError.code(.unavailable)) { try await fixture.submit("after closing") }
        progress.released.withLock { $0 = true }
        try await holding.value
        let stored = try await writes.value
        #expect(stored.count == 20, "every write queued before the close is committed")
        #expect(Set(try await fixture.db.listQueue(QueueFilter(), limit: 500).cases.map(\.id)) == stored)
    }
}

@Suite struct DiskFullTests {
    @Test func whenTheDiskIsFullWritesFailClearlyAndRecover() async throws {
        let health = Collected()
        let fixture = try await StoreFixture { $0.writeHealthObserver = { health.append($0 ?? "writes again") } }
        let acknowledged = Collected()
        try fixture.db.setMaxPageCount(try fixture.db.pageCount() + 12)
        var failures: [StoreError] = []
        for round in 0..<10 {
            let errors = await withTaskGroup(of: StoreError?.self) { group in
                for index in 0..<8 {
                    group.addTask {
                        do {
                            let id = try await fixture.submit(String(repeating: "x", count: 2048) + "\(round)-\(index)").id
                            acknowledged.append(id)
                            return nil
                        } catch let error as StoreError { return error } catch { return StoreError(.invalid, "\(error)") }
                    }
                }
                return await group.reduce(into: [StoreError]()) { if let e = $1 { $0.append(e) } }
            }
            failures += errors
        }
        #expect(!failures.isEmpty && failures.allSatisfy { $0.code == .unavailable })
        #expect(failures.contains { $0.reason.contains("disk is full") }, "\(Set(failures.map(\.reason)))")
        let stored = Set(try await fixture.db.listQueue(QueueFilter(), limit: 500).cases.map(\.id))
        #expect(stored == Set(acknowledged.all), "stored exactly what was acknowledged")
        #expect(try fixture.db.verifyAudit() > 0 && fixture.db.integrityCheck() == "ok")
        // Said at each change, for readiness and the log (a file at its brim lets a write through now and then);
        // a commit that changes nothing proves nothing and clears nothing.
        let full = "unavailable: the disk is full"
        let whileFull = health.all
        #expect(!whileFull.isEmpty && whileFull.enumerated().allSatisfy { $1 == ($0 % 2 == 0 ? full : "writes again") } && whileFull.last == full,
                "\(whileFull)")
        #expect(fixture.db.writeFailure == full)
        #expect(try await fixture.db.reapExpiredClaims() == 0)
        #expect(fixture.db.writeFailure != nil)

        try fixture.db.setMaxPageCount(1_073_741_823)
        let after = try await fixture.submit("after space returned")
        #expect(try await fixture.db.caseSummary(id: after.id).state == .new)
        #expect(fixture.db.writeFailure == nil && health.all == whileFull + ["writes again"])
    }
}

extension DiskFullTests {
    /// A commit the disk refuses (SQLite writes the WAL only then) fails every write its transaction took: none is
    /// acknowledged, none is stored, and the store writes again once there is room.
    @Test(.timeLimit(.minutes(1)))
    func aCommitTheDiskRefusesFailsEveryWriteOfItsBatch() async throws {
        let disk = try Tmpfs(megabytes: 8)
        defer { disk.remove() }
        let fixture = try await StoreFixture(directory: disk.path + "/data")
        let before = try await fixture.submit("before the disk filled")
        let requests = try (0..<8).map { try fixture.request("queued \($0)") }
        // An empty WAL, so that the next commit needs room the disk no longer has.
        try fixture.db.checkpoint()
        _ = try Daemon.run("/bin/dd", ["if=/dev/zero", "of=\(disk.path)/filler", "bs=4k"])
        let progress = GroupCommitTests.Progress()
        // Holds the writer until the eight wait for it, so that they all queue into its transaction (or fails, not hangs).
        let holding = Task {
            try await fixture.db.committer.write { _ in
                progress.running.withLock { $0 = true }
                let deadline = Date().addingTimeInterval(30)
                while fixture.db.committer.waitingWrites < 8 && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
            }
        }
        while !progress.running.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(5)) }
        let outcomes = await withTaskGroup(of: Result<String, StoreError>.self) { group in
            for request in requests {
                group.addTask {
                    do { return .success(try await fixture.db.intake(request).id) } catch {
                        return .failure(error as? StoreError ?? StoreError(.invalid, "\(error)"))
                    }
                }
            }
            return await group.reduce(into: [Result<String, StoreError>]()) { $0.append($1) }
        }
        let held = await #expect(throws: StoreError.self) { try await holding.value }
        let reasons = outcomes.map { if case .failure(let error) = $0 { "\(error)" } else { "acknowledged" } } + [held.map { "\($0)" } ?? "acknowledged"]
        #expect(reasons.count == 9 && reasons.allSatisfy { $0.hasPrefix("unavailable: the disk is full") }, "\(reasons)")
        #expect(try await fixture.db.disclosureIDs() == [before.id])

        try FileManager.default.removeItem(atPath: disk.path + "/filler")
        let after = try await fixture.submit("after space returned")
        #expect(try await fixture.db.disclosureIDs() == [before.id, after.id])
        #expect(try fixture.db.verifyAudit() > 0 && fixture.db.integrityCheck() == "ok")
    }

    /// SQLite reports some writes on a full disk (growing the WAL or its index) as I/O errors: ops must not go
    /// looking for a failing disk.
    @Test func anIOErrorOnAFullDiskIsSaidToBeAFullDisk() throws {
        let ioError = DatabaseError(resultCode: .SQLITE_IOERR)
        let roomy = FileManager.default.temporaryDirectory.appendingPathComponent("relay.sqlite").path
        #expect("\(GroupCommitter.storeError(ioError, onDiskOf: roomy))" == "unavailable: the disk failed to read or write (I/O error)")
        let disk = try Tmpfs(megabytes: 1)
        defer { disk.remove() }
        _ = try Daemon.run("/bin/dd", ["if=/dev/zero", "of=\(disk.path)/filler", "bs=64k"])
        let full = "\(disk.path)/relay.sqlite"
        #expect("\(GroupCommitter.storeError(ioError, onDiskOf: full))" == "unavailable: the disk is full (SQLite saw an I/O error on it)")
        #expect("\(GroupCommitter.storeError(DatabaseError(resultCode: .SQLITE_FULL), onDiskOf: full))" == "unavailable: the disk is full")
    }

    /// A database closed cleanly has no WAL index left; on a disk filled since, making one fails, as a full disk.
    @Test func openingOnAFullDiskSaysTheDiskIsFull() throws {
        let disk = try Tmpfs(megabytes: 2)
        defer { disk.remove() }
        let directory = disk.path + "/data"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try RelayDatabase(directory: directory).close()
        // As the relay's last connection leaves it at a clean stop; SQLite makes the index again from the log.
        try FileManager.default.removeItem(atPath: directory + "/relay.sqlite-shm")
        _ = try Daemon.run("/bin/dd", ["if=/dev/zero", "of=\(disk.path)/filler", "bs=4k"])
        let refusal = #expect(throws: StoreError.self) { _ = try RelayDatabase(directory: directory) }
        #expect(refusal?.reason.contains("the disk is full") == true, "\(String(describing: refusal))")
    }
}

@Suite struct AuditFileTests {
    @Test func editingAnAuditRowInTheFileIsCaughtAtThatEntry() async throws {
        let fixture = try await StoreFixture()
        let result = try await fixture.submit()
        try await fixture.db.transition(id: result.id, action: .claim, actor: StoreActor(fixture.responder))
        _ = try await fixture.submit()
        #expect(try fixture.db.verifyAudit() > 0)
        let claimSeq = try await fixture.db.auditEntries().first { $0.entry.action == "claim" }!.entry.seq

        try fixture.db.checkpoint()
        try await fixture.reopen()
        try fixture.db.close()
        let path = (fixture.directory as NSString).appendingPathComponent(RelayDatabase.fileName)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let original = Data(#""to":"claimed""#.utf8)
        let range = try #require(bytes.range(of: original))
        #expect(bytes.range(of: original, in: range.upperBound..<bytes.endIndex) == nil)
        bytes.replaceSubrange(range, with: Data(#""to":"closed!""#.utf8))
        try bytes.write(to: URL(fileURLWithPath: path))

        try await fixture.reopen()
        #expect(throws: AuditVerifier.Break(seq: claimSeq, reason: "its contents do not match its hash; it was altered")) {
            try fixture.db.verifyAudit()
        }
    }
}

@Suite struct RetentionAndBackupTests {
    @Test func closedCasesArePurgedAfterRetentionUnlessHeldAndTheirBytesAreGone() async throws {
        let log = BatchLog()
        let fixture = try await StoreFixture(options: { $0.batchObserver = { log.record($0) } })
        let amina = StoreActor(fixture.responder)
        var closed: [(IntakeResult, [UInt8])] = []
        for index in 0..<3 {
            let result = try await fixture.submit(String(repeating: "padding ", count: 400) + "\(index)")
            try await fixture.db.transition(id: result.id, action: .claim, actor: amina)
            let (noteID, note) = try fixture.sealed("note \(index)", kind: .note, in: result.id)
            try await fixture.db.addNote(caseID: result.id, objectID: noteID, envelope: note, actor: amina)
            try await fixture.db.transition(id: result.id, action: .close, actor: amina, outcome: "support_provided")
            let envelope = try await fixture.db.fetchCase(id: result.id, actor: amina).disclosure!.envelope
            closed.append((result, envelope))
        }
        let open = try await fixture.submit("still open")
        try await fixture.db.setHold(id: closed[2].0.id, on: true, actor: StoreActor(fixture.supervisor))

        fixture.clock.advance(seconds: 179 * 86_400)
        #expect(try await fixture.db.purgeExpiredCases() == 0)
        fixture.clock.advance(seconds: 2 * 86_400)
        let batchesBefore = log.sizes.withLock { $0.count }
        #expect(try await fixture.db.purgeExpiredCases(batchSize: 1) == 2)
        // One case a transaction, so that a sweep never holds the writer for long; the third finds none left.
        #expect(log.sizes.withLock { $0.count } - batchesBefore == 3)
        let left = try fixture.db.pool.read { db in
            try Row.fetchOne(db, sql: """
                SELECT (SELECT COUNT(*) FROM sealedObject WHERE disclosureID IN (?, ?)) AS objects,
                       (SELECT COUNT(*) FROM idempotency WHERE disclosureID IN (?, ?)) AS keys,
                       (SELECT COUNT(*) FROM disclosure WHERE id IN (?, ?) AND (receiptHash IS NOT NULL OR envelope IS NOT NULL)) AS kept
                """, arguments: StatementArguments(Array(repeating: [closed[0].0.id, closed[1].0.id], count: 3).flatMap { $0 }))
        }
        let remaining: [Int] = ["objects", "keys", "kept"].map { left?[$0] ?? -1 }
        #expect(remaining == [0, 0, 0], "a purged case keeps no object, idempotency key, receipt or envelope")
        // What is gone cannot be worked on.
        let reopening = await #expect(throws: StoreError.self) {
            try await fixture.db.transition(id: closed[0].0.id, action: .reopen, actor: StoreActor(fixture.supervisor))
        }
        #expect(reopening?.code == .invalidState && reopening?.reason.contains("purged") == true, "\(String(describing: reopening))")
        let (lateID, late) = try fixture.sealed("a note after the purge", kind: .note, in: closed[0].0.id)
        let noting = await #expect(throws: StoreError.self) {
            try await fixture.db.addNote(caseID: closed[0].0.id, objectID: lateID, envelope: late, actor: StoreActor(fixture.supervisor))
        }
        #expect(noting?.code == .invalidState && noting?.reason == "case \(closed[0].0.id) was purged", "\(String(describing: noting))")

        let tombstone = try await fixture.db.caseSummary(id: closed[0].0.id)
        #expect(tombstone.purged && tombstone.labels.category == "sexual_abuse" && tombstone.outcome == "support_provided")
        #expect(try await fixture.db.fetchCase(id: closed[0].0.id, actor: StoreActor(fixture.supervisor)).disclosure == nil)
        #expect(try await fixture.db.auditEntries().last?.entry.detail == #"{"objects":"0"}"#, "a purged case's fetch returns nothing")
        #expect(try await fixture.db.fetchCase(id: closed[2].0.id, actor: StoreActor(fixture.supervisor)).disclosure != nil)
        #expect(try await fixture.db.caseSummary(id: open.id).purged == false)
        let purged = try await fixture.db.auditEntries().filter { $0.entry.action == "purge" }.map(\.entry.subject)
        #expect(Set(purged) == [closed[0].0.id, closed[1].0.id])

        try fixture.db.checkpoint()
        let files = try fixture.rawFiles()
        for (result, envelope) in closed {
            let sample = Array(envelope[envelope.count / 2 ..< envelope.count / 2 + 64])
            let found = files.values.contains { $0.contains(sample) }
            #expect(found == (result.id == closed[2].0.id), "envelope bytes of \(result.id) after purge")
        }
        #expect(try fixture.db.verifyAudit() == Int64(try await fixture.db.auditEntries(limit: 1000).count))
    }

    @Test func anOnlineBackupTakenDuringWritesRestoresAndVerifies() async throws {
        let fixture = try await StoreFixture()
        var before: Set<String> = []
        for index in 0..<20 { before.insert(try await fixture.submit("before \(index)").id) }
        let backupPath = FileManager.default.temporaryDirectory.appendingPathComponent("amane-backup-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: backupPath, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: backupPath) }
        let file = backupPath.appendingPathComponent(RelayDatabase.fileName).path

        async let writes: [String] = withThrowingTaskGroup(of: String.self) { group in
            for index in 0..<100 { group.addTask { try await fixture.submit("during \(index)").id } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        try await Task.sleep(for: .milliseconds(5))
        try fixture.db.backup(to: file)
        let during = Set(try await writes)
        let refusal = #expect(throws: StoreError.self) { try fixture.db.backup(to: file) }
        #expect(refusal?.code == .conflict, "\(String(describing: refusal))")

        // A consistent moment: everything stored before it, some of what came during, each case with its audit entry.
        let restored = try RelayDatabase(directory: backupPath.path)
        #expect(try restored.integrityCheck() == "ok")
        let copied = Set(try await restored.listQueue(QueueFilter(), limit: 500).cases.map(\.id))
        #expect(before.isSubset(of: copied) && copied.isSubset(of: before.union(during)))
        let intakes = Set(try await restored.auditEntries(limit: 1000).filter { $0.entry.action == "intake" }.map(\.entry.subject))
        #expect(intakes == copied)
        #expect(try restored.verifyAudit() == Int64(try await restored.auditEntries(limit: 1000).count))
        let mode = try FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? Int
        #expect(mode == 0o600)
    }

    @Test func aPlaintextCanaryReachesNoFileOfTheDataDirectoryOrTheBackup() async throws {
        let fixture = try await StoreFixture()
        let canary = "CANARY-\(UUID().uuidString)"
        let amina = StoreActor(fixture.responder)
        // The store is handed the idempotency key in clear: only its digest may stay.
        let key = "KEY-\(canary)"
        let result = try await fixture.submit("he told us: \(canary)", key: key)
        try await fixture.db.transition(id: result.id, action: .claim, actor: amina)
        let (noteID, note) = try fixture.sealed("note about \(canary)", kind: .note, in: result.id)
        try await fixture.db.addNote(caseID: result.id, objectID: noteID, envelope: note, actor: amina)
        try fixture.db.checkpoint()
        let backup = fixture.directory + "-backup.sqlite"
        defer { try? FileManager.default.removeItem(atPath: backup) }
        try fixture.db.backup(to: backup)
        try await fixture.db.transition(id: result.id, action: .close, actor: amina, outcome: "duplicate")
        fixture.clock.advance(seconds: 200 * 86_400)
        #expect(try await fixture.db.purgeExpiredCases() == 1)
        try fixture.db.checkpoint()

        var scanned = try fixture.rawFiles()
        scanned["backup"] = try Data(contentsOf: URL(fileURLWithPath: backup))
        #expect(scanned.keys.contains("relay.sqlite") && scanned.count >= 2, "\(scanned.keys.sorted())")

        for (name, data) in scanned {
            #expect(!data.contains(Array(canary.utf8)), "canary or idempotency key in \(name)")
            #expect(!data.contains(Array(result.receipt.digits.utf8)), "receipt in \(name)")
        }
    }

    @Test func statisticsCountLabelsOnly() async throws {
        let fixture = try await StoreFixture()
        try await fixture.submit(urgency: .high, category: "trafficking")
        try await fixture.submit(urgency: .high, category: "sexual_abuse")
        try await fixture.submit(urgency: .low, category: "sexual_abuse")
        // Another organisation's queue on the same relay: its cases are its own to count.
        let bayti = QueueName(rawValue: "bayti")!
        let baytiKeys = (0..<2).map { _ in SealingPrivateKey.generate(suite: .x25519ChaChaPoly) }
        await #expect(throws: StoreError.code(.notFound)) {
            try await fixture.db.enroll(name: PrincipalName(rawValue: "kiosk-bayti")!, role: .gateway, spkiFingerprint: "bayti-kiosk",
                                        sealingKey: baytiKeys[0].publicKey.text, queue: bayti, actor: .admin("test"))
        }
        await #expect(throws: StoreError.code(.conflict)) {
            try await fixture.db.enroll(name: fixture.gateway.name, role: .gateway, spkiFingerprint: "bayti-kiosk",
                                        sealingKey: baytiKeys[0].publicKey.text, queue: bayti, creatingQueue: true, actor: .admin("test"))
        }
        #expect(try await fixture.db.queueNames() == [.national], "a refused enrolment creates no queue")
        let second = try await fixture.addSecondQueue()
        #expect(try await fixture.db.queueDepth()[second.name] == Dictionary(uniqueKeysWithValues: Urgency.allCases.map { ($0, QueueDepth()) }),
                "a queue without a case counts zeros, so that its gauges and pages stop when its last case closes")
        #expect(try await fixture.db.queueNames() == [bayti, .national])
        #expect(try await fixture.db.auditEntries().filter { $0.entry.action == "queue.create" && $0.entry.subject == "bayti" }.count == 1)
        let taken = await #expect(throws: StoreError.self) {
            try await fixture.db.enroll(name: PrincipalName(rawValue: "sup-salma")!, role: .supervisor, spkiFingerprint: "bayti-salma",
                                        sealingKey: baytiKeys[1].publicKey.text, queue: bayti, creatingQueue: true, actor: .admin("test"))
        }
        #expect(taken?.code == .conflict && taken?.reason.contains("a queue named bayti exists already") == true,
                "a second organisation never joins the first one's queue by picking its name: \(String(describing: taken))")
        try await fixture.submit(to: second)
        let byUrgency = try await fixture.db.statistics(by: .urgency, queue: .national)
        #expect(byUrgency.map(\.key) == ["high", "low"] && byUrgency.map(\.count) == [2, 1])
        let byCategory = try await fixture.db.statistics(by: .category, queue: .national)
        #expect(byCategory.map(\.key) == ["sexual_abuse", "trafficking"] && byCategory.map(\.count) == [2, 1])
        #expect(try await fixture.db.statistics(by: .month, queue: .national).map(\.count) == [3])
        #expect(try await fixture.db.statistics(by: .region, queue: .national).first?.key == "casablanca-settat")
        let baytiCategories = try await fixture.db.statistics(by: .category, queue: bayti)
        #expect(baytiCategories.map(\.key) == ["trafficking"] && baytiCategories.map(\.count) == [1])
        let depth = try await fixture.db.queueDepth()
        #expect(depth[.national]?[.high] == QueueDepth(waiting: 2) && depth[.national]?[.low] == QueueDepth(waiting: 1)
                && depth[bayti]?[.high] == QueueDepth(waiting: 1) && depth[bayti]?[.low] == QueueDepth(), "the SLA monitor counts each queue apart: \(depth)")
        fixture.clock.advance(seconds: 3 * 3600)
        let late = try await fixture.db.queueDepth()
        #expect(late[.national]?[.high] == QueueDepth(waiting: 2, pastSLA: 2) && late[bayti]?[.high] == QueueDepth(waiting: 1, pastSLA: 1), "\(late)")
    }

    /// A queue's members read the whole chain, but the contents of another queue's entries are withheld: its
    /// cases, members, keys and the queue itself. The chain still verifies, by the links of what is withheld.
    @Test func aQueuesMembersReadOnlyTheirQueuesEntriesOfTheAuditTrail() async throws {
        let fixture = try await StoreFixture()
        let national = try await fixture.submit()
        let second = try await fixture.addSecondQueue()
        #expect(try await fixture.db.queueDepth()[second.name] == Dictionary(uniqueKeysWithValues: Urgency.allCases.map { ($0, QueueDepth()) }),
                "a queue without a case counts zeros, so that its gauges and pages stop when its last case closes")
        let baytiCase = try await fixture.submit(to: second)
        try await fixture.db.transition(id: national.id, action: .claim, actor: StoreActor(fixture.responder))
        try await fixture.db.transition(id: baytiCase.id, action: .claim, actor: StoreActor(second.supervisor))
        let whole = try await fixture.db.auditEntries()
        let head = try fixture.db.verifyAuditWithHead().head
        for (queue, own, other, ownMember, otherMember) in [(QueueName.national, national.id, baytiCase.id, "resp-amina", "sup-nadia"),
                                                            (second.name, baytiCase.id, national.id, "sup-nadia", "resp-amina")] {
            let read = try await fixture.db.auditEntries(readableIn: queue)
            #expect(read.map(\.chained.entry.seq) == whole.map(\.entry.seq) && read.map(\.chained.hash) == whole.map(\.hash))
            let shown = read.filter { !$0.withheld }.map(\.chained)
            #expect(shown.contains { $0.entry.subject == own && $0.entry.action == "intake" }
                    && shown.contains { $0.entry.subject == own && $0.entry.action == "claim" && $0.entry.actor == ownMember }, "\(queue)")
            #expect(!shown.contains { $0.entry.subject == other || $0.entry.actor == otherMember || $0.entry.detail.contains(otherMember) },
                    "\(queue) reads nothing of the other queue: \(shown.map(\.entry))")
            #expect(shown.allSatisfy { entry in whole.contains(entry) }, "what is shown is the entry as stored")
            #expect(read.filter(\.withheld).allSatisfy { $0.chained.entry == AuditEntry(seq: $0.chained.entry.seq, time: 0, actor: "", action: "", subject: "", detail: "") })
            var verifier = AuditVerifier()
            for entry in read { if entry.withheld { try verifier.link(entry.chained) } else { try verifier.check(entry.chained) } }
            #expect(verifier.count == Int64(whole.count) && verifier.headText == head)
        }
        let bayti = try await fixture.db.auditEntries(readableIn: second.name)
        #expect(bayti.filter { !$0.withheld }.map(\.chained.entry.action) == ["queue.create", "principal.enroll", "principal.enroll", "grant", "epoch.rotate", "intake", "claim"],
                "\(bayti.filter { !$0.withheld }.map(\.chained.entry))")
        let nationalWithheld = try await fixture.db.auditEntries(readableIn: .national).filter(\.withheld).map(\.chained.entry.seq)
        #expect(nationalWithheld == bayti.filter { !$0.withheld }.map(\.chained.entry.seq), "national reads every entry but Bayti's")
        // A withheld entry still holds the chain: one cut out, or whose hash changed, breaks the link after it.
        var cut = bayti
        cut.remove(at: try #require(cut.firstIndex { $0.withheld }))
        var verifier = AuditVerifier()
        let gap = #expect(throws: AuditVerifier.Break.self) {
            for entry in cut { if entry.withheld { try verifier.link(entry.chained) } else { try verifier.check(entry.chained) } }
        }
        #expect(gap?.reason.contains("missing or reordered") == true)
        // An entry edited to be about nothing is withheld from no one: every queue's check then names it.
        let claim = try #require(whole.first { $0.entry.action == "claim" && $0.entry.subject == national.id }).entry.seq
        try await DatabaseQueue(path: (fixture.directory as NSString).appendingPathComponent(RelayDatabase.fileName)).write { db in
            try db.execute(sql: "DROP TRIGGER audit_append_only_update; UPDATE audit SET subject = 'nothing' WHERE seq = ?", arguments: [claim])
        }
        for queue in [QueueName.national, second.name] {
            let edited = try await fixture.db.auditEntries(readableIn: queue)
            #expect(edited.first { $0.chained.entry.seq == claim }?.withheld == false)
            var check = AuditVerifier()
            let broken = #expect(throws: AuditVerifier.Break.self) {
                for entry in edited { if entry.withheld { try check.link(entry.chained) } else { try check.check(entry.chained) } }
            }
            #expect(broken?.seq == claim && broken?.reason.contains("altered") == true, "\(queue): \(String(describing: broken))")
        }
    }

    /// A case reopened (by a supervisor, or by the reporter's follow-up) waits afresh: its SLA was not spent while it lay closed.
    @Test func aReopenedCaseWaitsFromItsReopening() async throws {
        let fixture = try await StoreFixture()
        let amina = StoreActor(fixture.responder), khadija = StoreActor(fixture.supervisor)
        let byFollowUp = try await fixture.submit(urgency: .high)
        let bySupervisor = try await fixture.submit(urgency: .high)
        for id in [byFollowUp.id, bySupervisor.id] {
            try await fixture.db.transition(id: id, action: .claim, actor: amina)
            try await fixture.db.transition(id: id, action: .close, actor: amina, outcome: "no_further_action")
        }
        fixture.clock.advance(seconds: 10 * 86_400)
        let (followUpID, followUp) = try fixture.sealed("I am back", kind: .followup, in: byFollowUp.id)
        _ = try await fixture.db.addFollowup(gateway: fixture.gateway, caseID: byFollowUp.id, objectID: followUpID, envelope: followUp,
                                             idempotencyKey: "followup-key-\(UUID().uuidString)", requestHash: Array(followUpID.uuidString.utf8))
        try await fixture.db.transition(id: bySupervisor.id, action: .reopen, actor: khadija)
        let now = Int64(fixture.clock.now.timeIntervalSince1970) / 60 * 60
        for id in [byFollowUp.id, bySupervisor.id] {
            let summary = try await fixture.db.caseSummary(id: id)
            #expect(summary.state == .new && summary.waitingSince == now && summary.receivedAt < now - 86_400, "\(summary)")
        }
        #expect(try await fixture.db.queueDepth()[.national]?[.high].map { [$0.waiting, $0.pastSLA] } == [2, 0], "received ten days ago, reopened now")
        let listed = try await fixture.db.listQueue(QueueFilter(states: [.new])).cases.first { $0.id == byFollowUp.id }
        #expect(listed?.waitingSince == now, "the queue's listing carries it too")
        fixture.clock.advance(seconds: 3 * 3600)
        #expect(try await fixture.db.queueDepth()[.national]?[.high]?.pastSLA == 2)
        try await fixture.db.transition(id: bySupervisor.id, action: .claim, actor: amina)
        try await fixture.db.transition(id: bySupervisor.id, action: .release, actor: amina)
        #expect(try await fixture.db.caseSummary(id: bySupervisor.id).waitingSince == now, "a release does not restart the wait")
    }
}
