import Foundation
import RelayCore
import RelayFormat
import RelayStore
import Synchronization

/// `amane-relay-bench store`: durable intake through group commit against the same machine's ceiling of one
/// row per transaction (group commit off, synchronous=FULL), measured in the same run; and the queue's first page at 100,000 cases.
enum StoreBench {
    /// Batch sizes the writer committed, for the report.
    final class Batches: Sendable {
        private let sizes = Mutex<[Int]>([])
        func record(_ size: Int) { sizes.withLock { $0.append(size) } }
        var mean: Double { sizes.withLock { $0.isEmpty ? 0 : Double($0.reduce(0, +)) / Double($0.count) } }
    }

    struct Setup {
        let batches: Batches
        let db: RelayDatabase
        let writer: Task<Void, Never>
        let gateway: Principal
        let epoch: SealingPublicKey
        let directory: String
    }

    static func prepare(maxBatch: Int, window: Int, syncsCommits: Bool = true) async throws -> Setup {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("amane-bench-\(UUID().uuidString)").path
        var options = RelayDatabase.Options()
        options.maxBatch = maxBatch
        options.windowMicroseconds = window
        options.maxPending = 100_000
        options.syncsCommits = syncsCommits
        let batches = Batches()
        options.batchObserver = { batches.record($0) }
        let db = try RelayDatabase(directory: directory, taxonomyYAML: try Seeds.taxonomy(), options: options)
        let writer = Task { await db.runWriter() }
        try await db.ensureQueue(.national, actor: .admin("bench"))
        let gatewayKey = SealingPrivateKey.generate(suite: .x25519ChaChaPoly)
        let memberKey = SealingPrivateKey.generate(suite: .x25519ChaChaPoly)
        let gateway = try await db.enroll(name: PrincipalName(rawValue: "bench-gateway")!, role: .gateway, spkiFingerprint: "g",
                                          sealingKey: gatewayKey.publicKey.text, actor: .admin("bench"))
        let member = try await db.enroll(name: PrincipalName(rawValue: "bench-responder")!, role: .responder, spkiFingerprint: "r",
                                         sealingKey: memberKey.publicKey.text, actor: .admin("bench"))
        let epoch = SealingPrivateKey.generate(suite: .x25519ChaChaPoly)
        _ = try await db.createEpoch(queue: .national, publicKey: epoch.publicKey.text,
                                     grants: [member.name.rawValue: try Grant.seal(epoch, to: memberKey.publicKey)], actor: StoreActor(member))
        return Setup(batches: batches, db: db, writer: writer, gateway: gateway, epoch: epoch.publicKey, directory: directory)
    }

    /// Pre-sealed 2 KiB envelopes, so that only storage is measured.
    static func envelopes(_ count: Int, to key: SealingPublicKey) throws -> [(UUID, [UInt8])] {
        let payload = [UInt8](repeating: 0x61, count: 2048 - 144)
        return try (0..<count).map { _ in
            let id = UUID.v7()
            return (id, try Envelope.seal(payload, to: key, kind: .disclosure, objectID: id))
        }
    }

    /// Rows per second, and what each row cost the one thread that commits them all.
    struct Throughput {
        var rowsPerSecond: Double
        /// CPU time of the store's writer thread per row, in µs: in user space (SQLite, GRDB, Swift) and in the kernel (writes, fsync).
        var writerUser: Double
        var writerKernel: Double
        /// The share of the wall time the writer thread was on a CPU.
        var writerBusy: Double
        /// CPU time of every thread of the process per row, in µs: the writer, the callers' own work, the checkpointer.
        var processCPU: Double
        /// Bytes the process handed to write(2) per row, and the calls: WAL frames of a page each, with their headers.
        var writtenBytes: Double
        var writeCalls: Double
    }

    /// What this process has handed to write(2) so far: bytes and calls, from /proc.
    static func written() -> (bytes: Double, calls: Double) {
        let fields = ((try? String(contentsOfFile: "/proc/self/io", encoding: .utf8)) ?? "").split(separator: "\n").reduce(into: [String: Double]()) {
            let pair = $1.split(separator: ":")
            if pair.count == 2 { $0[String(pair[0])] = Double(pair[1].trimmingCharacters(in: .whitespaces)) }
        }
        return (fields["wchar"] ?? 0, fields["syscw"] ?? 0)
    }

    /// User and system CPU seconds of the store's writer thread (named amane-writer), from /proc.
    static func writerCPU() -> (user: Double, system: Double) {
        let tasks = "/proc/self/task"
        let tick = Double(sysconf(Int32(_SC_CLK_TCK)))
        var total = (user: 0.0, system: 0.0)
        for task in (try? FileManager.default.contentsOfDirectory(atPath: tasks)) ?? [] {
            guard let name = try? String(contentsOfFile: "\(tasks)/\(task)/comm", encoding: .utf8), name.hasPrefix("amane-writer"),
                  let stat = try? String(contentsOfFile: "\(tasks)/\(task)/stat", encoding: .utf8),
                  let nameEnd = stat.lastIndex(of: ")") else { continue }
            // The fields after the name start at field 3 (state); utime is field 14, stime 15.
            let fields = stat[stat.index(after: nameEnd)...].split(separator: " ")
            total.user += (Double(fields[11]) ?? 0) / tick
            total.system += (Double(fields[12]) ?? 0) / tick
        }
        return total
    }

    /// User and system CPU seconds of the whole process.
    static func processCPU() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    /// Rows per second with `writers` concurrent writers for `seconds`.
    static func rate(_ setup: Setup, writers: Int, seconds: Double, pool: [(UUID, [UInt8])]) async throws -> Double {
        try await measure(setup, writers: writers, seconds: seconds, pool: pool).rowsPerSecond
    }

    /// What a writer task does with each disclosure: by default a whole intake.
    enum Operation: Sendable {
        case intake
        /// Only the intake's work outside the writer.
        case prepareOnly
        /// That work, then an empty write through group commit in place of the rows: it commits nothing, so nothing is written or synced.
        case prepareThenEmptyWrite
    }

    static func measure(_ setup: Setup, writers: Int, seconds: Double, pool: [(UUID, [UInt8])], operation: Operation = .intake) async throws -> Throughput {
        let cpuBefore = writerCPU()
        let processBefore = processCPU()
        let writtenBefore = written()
        let labels = DisclosureLabels(urgency: .normal, category: "sexual_abuse", language: "fr", channel: "kiosk")
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        let start = ContinuousClock.now
        let counts = try await withThrowingTaskGroup(of: Int.self) { group in
            for worker in 0..<writers {
                group.addTask {
                    var done = 0
                    var index = worker
                    // Only stored rows need an envelope each: the other operations store none, and go round the pool until the deadline.
                    while ContinuousClock.now < deadline && (index < pool.count || operation != .intake) {
                        let (id, envelope) = pool[index % pool.count]
                        let request = IntakeRequest(gateway: setup.gateway, labels: labels, id: id, envelope: envelope,
                                                    idempotencyKey: id.uuidString, requestHash: id.bytes)
                        switch operation {
                        case .intake: _ = try await setup.db.intake(request)
                        case .prepareOnly: _ = try setup.db.prepareIntake(request)
                        case .prepareThenEmptyWrite:
                            _ = try setup.db.prepareIntake(request)
                            try await setup.db.emptyWrite()
                        }
                        done += 1
                        index += writers
                    }
                    return done
                }
            }
            return try await group.reduce(0, +)
        }
        let elapsed = (ContinuousClock.now - start).inSeconds
        let cpuAfter = writerCPU()
        let processAfter = processCPU()
        let writtenAfter = written()
        let rows = Double(max(counts, 1))
        return Throughput(rowsPerSecond: Double(counts) / elapsed, writerUser: (cpuAfter.user - cpuBefore.user) / rows * 1e6,
                          writerKernel: (cpuAfter.system - cpuBefore.system) / rows * 1e6,
                          writerBusy: (cpuAfter.user + cpuAfter.system - cpuBefore.user - cpuBefore.system) / elapsed,
                          processCPU: (processAfter - processBefore) / rows * 1e6,
                          writtenBytes: (writtenAfter.bytes - writtenBefore.bytes) / rows, writeCalls: (writtenAfter.calls - writtenBefore.calls) / rows)
    }

    static let cores = ProcessInfo.processInfo.activeProcessorCount

    /// One line on where a row's time goes at `rate`, against what 10× the ceiling would leave it.
    static func writerLine(_ label: String, _ rate: Throughput, ceiling: Double) -> String {
        String(format: """
              writer thread, %@: %.0f µs CPU per row (user %.0f, kernel %.0f), on a CPU %.0f%% of the time; 10× the ceiling leaves %.0f µs per row
                %.1f KiB written per row in %.1f writes (a 2 KiB envelope; each random-keyed index dirties a page of its own)
                whole process: %.0f µs CPU per row on all threads; 10× the ceiling leaves %.0f µs per row on this machine's %d cores
            """,
               label, rate.writerUser + rate.writerKernel, rate.writerUser, rate.writerKernel, rate.writerBusy * 100, 1e6 / (10 * ceiling),
               rate.writtenBytes / 1024, rate.writeCalls, rate.processCPU, Double(cores) * 1e6 / (10 * ceiling), cores)
    }

    /// The durable group-commit rate with the daemon's default batching: the storage baseline of `intake`.
    static func groupCommitRate(writers: Int, seconds: Double) async throws -> Double {
        let setup = try await prepare(maxBatch: RelayDatabase.Options().maxBatch, window: RelayDatabase.Options().windowMicroseconds)
        let rows = try await rate(setup, writers: writers, seconds: seconds, pool: try envelopes(40_000, to: setup.epoch))
        await finish(setup)
        return rows
    }

    static func finish(_ setup: Setup) async {
        setup.writer.cancel()
        await setup.writer.value
        try? FileManager.default.removeItem(atPath: setup.directory)
    }

    static func run() async throws {
        print("Durable intake of 2 KiB envelopes (release build, synchronous=FULL, same run)")
        let ceilingSetup = try await prepare(maxBatch: 1, window: 0)
        let ceiling = try await rate(ceilingSetup, writers: 16, seconds: 3, pool: try envelopes(20_000, to: ceilingSetup.epoch))
        await finish(ceilingSetup)
        print(String(format: "  ceiling: one row per transaction, 16 writers   %8.0f rows/s   1.00×", ceiling))
        let only = ProcessInfo.processInfo.environment["AMANE_BENCH_WRITERS"].flatMap(Int.init)
        let window = ProcessInfo.processInfo.environment["AMANE_BENCH_WINDOW_US"].flatMap(Int.init) ?? RelayDatabase.Options().windowMicroseconds
        var sixtyFour: Double?
        for writers in [1, 16, 64] where only == nil || only == writers {
            let setup = try await prepare(maxBatch: 256, window: window)
            let pool = try envelopes(40_000, to: setup.epoch)
            let measured = try await measure(setup, writers: writers, seconds: 3, pool: pool)
            let rows = measured.rowsPerSecond
            let mean = setup.batches.mean
            await finish(setup)
            print(String(format: "  group commit, %2d writers                      %8.0f rows/s %6.2f×   (mean batch %.1f, window %d µs)",
                         writers, rows, rows / ceiling, mean, window))
            if writers == 64 {
                sixtyFour = rows
                print(writerLine("64 writers", measured, ceiling: ceiling))
            }
        }
        // The same 64 writers with fsync off: what the CPU alone allows, so the most any batching could reach here.
        let unsynced = try await prepare(maxBatch: 256, window: window, syncsCommits: false)
        let unsyncedRate = try await measure(unsynced, writers: 64, seconds: 3, pool: try envelopes(40_000, to: unsynced.epoch))
        let cpuBound = unsyncedRate.rowsPerSecond
        await finish(unsynced)
        print(String(format: "  bound: 64 writers without fsync (not durable)  %8.0f rows/s %6.2f×", cpuBound, cpuBound / ceiling))
        print(writerLine("without fsync", unsyncedRate, ceiling: ceiling))
        // What is left when SQLite's row work is taken away: the callers' own work, then that and group commit's handoff.
        for (operation, label) in [(Operation.prepareOnly, "callers' own work alone, all cores, no writer"),
                                   (.prepareThenEmptyWrite, "the same, 64 writers, then an empty write")] {
            let setup = try await prepare(maxBatch: 256, window: window)
            let measured = try await measure(setup, writers: 64, seconds: 3, pool: try envelopes(4_000, to: setup.epoch), operation: operation)
            await finish(setup)
            print(String(format: "  %@ %8.0f rows/s %6.2f×   (whole process %.0f µs CPU per row)",
                         label.padding(toLength: 45, withPad: " ", startingAt: 0), measured.rowsPerSecond, measured.rowsPerSecond / ceiling,
                         measured.processCPU))
        }
        // The disk's fsync time drifts on a shared machine: the ceiling again, so that the ratio shows its spread.
        if let sixtyFour {
            let endSetup = try await prepare(maxBatch: 1, window: 0)
            let ceilingAtEnd = try await rate(endSetup, writers: 16, seconds: 3, pool: try envelopes(20_000, to: endSetup.epoch))
            await finish(endSetup)
            print(String(format: "  ceiling again at the end                     %8.0f rows/s %6.2f×   (64 writers against it: %.2f×)",
                         ceilingAtEnd, ceilingAtEnd / ceiling, sixtyFour / ceilingAtEnd))
        }

        guard only == nil else { return }
        print("Queue first page at 100,000 cases")
        let setup = try await prepare(maxBatch: 512, window: 1000)
        let labels = [Urgency.immediate, .high, .normal, .low]
        let pool = try envelopes(100_000, to: setup.epoch)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<64 {
                group.addTask {
                    for index in stride(from: worker, to: pool.count, by: 64) {
                        let (id, envelope) = pool[index]
                        let label = DisclosureLabels(urgency: labels[index % 4], category: "sexual_abuse", language: "ar", channel: "phone")
                        _ = try await setup.db.intake(IntakeRequest(gateway: setup.gateway, labels: label, id: id, envelope: envelope,
                                                                    idempotencyKey: id.uuidString, requestHash: id.bytes))
                    }
                }
            }
            try await group.waitForAll()
        }
        for (name, filter) in [("all states", QueueFilter()), ("state new, urgency low", QueueFilter(states: [.new], urgency: .low)),
                               ("overdue (none is: every case read)", QueueFilter(overdue: true))] {
            var timings: [Double] = []
            for _ in 0..<50 {
                let start = ContinuousClock.now
                _ = try await setup.db.listQueue(filter, limit: 50)
                let elapsed = ContinuousClock.now - start
                timings.append(elapsed.inSeconds * 1000)
            }
            timings.sort()
            print(String(format: "  first page of 50, %@: median %.2f ms, max %.2f ms", name, timings[25], timings[49]))
        }
        // A deep page must cost what the first does: every page seeks into the index after its cursor.
        var pages: [Double] = []
        var cursor: QueueCursor?
        var walked = 0
        repeat {
            let start = ContinuousClock.now
            let page = try await setup.db.listQueue(QueueFilter(), after: cursor, limit: 50)
            pages.append((ContinuousClock.now - start).inSeconds * 1000)
            walked += page.cases.count
            cursor = page.next
        } while cursor != nil
        let sorted = pages.sorted()
        print(String(format: "  every page of 50 through %d cases: median %.2f ms, last %.2f ms, p99 %.2f ms, slowest %.2f ms (page %d)",
                     walked, sorted[sorted.count / 2], pages[pages.count - 1], sorted[sorted.count * 99 / 100], sorted[sorted.count - 1],
                     (pages.firstIndex(of: sorted[sorted.count - 1]) ?? 0) + 1))
        // Every minute and at every scrape of /metrics; here all 100,000 cases are open, the most its index holds.
        var counts: [Double] = []
        for _ in 0..<20 {
            let start = ContinuousClock.now
            _ = try await setup.db.queueDepth()
            counts.append((ContinuousClock.now - start).inSeconds * 1000)
        }
        counts.sort()
        print(String(format: "  SLA monitor's count of 100,000 open cases: median %.2f ms, max %.2f ms", counts[10], counts[19]))
        // A report (amane stats) counts every case of the queue, from the labels in each case's row.
        var reports: [Double] = []
        for dimension in [StatisticsDimension.month, .category, .urgency, .region, .month] {
            let start = ContinuousClock.now
            _ = try await setup.db.statistics(by: dimension, queue: .national)
            reports.append((ContinuousClock.now - start).inSeconds * 1000)
        }
        reports.sort()
        print(String(format: "  statistics of 100,000 cases (amane stats): median %.2f ms, max %.2f ms, against that count's median: %.1f×",
                     reports[2], reports[4], reports[2] / counts[10]))
        await finish(setup)
    }
}

enum Seeds {
    /// `seeds/` beside the working directory, or `$AMANE_SEEDS_DIRECTORY`, as the daemon reads it.
    static func taxonomy() throws -> String {
        let directory = ProcessInfo.processInfo.environment["AMANE_SEEDS_DIRECTORY"] ?? "seeds"
        return try String(contentsOfFile: (directory as NSString).appendingPathComponent("taxonomy.yaml"), encoding: .utf8)
    }
}
