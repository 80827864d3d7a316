import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import RelayCore
import RelayFormat
import RelayStore

/// `amane-relay-bench intake`: the relay's intake under load against three baselines measured in the same
/// run on the same machine (nginx for transport, one core's HPKE seal rate, the store's group-commit rate),
/// and their composite bound `1 / (1/transport + 1/crypto + 1/storage)`.
enum IntakeBench {
    struct Figure: Codable {
        var target: String
        var connections: Int
        var offeredRate: Double?
        var requestsPerSecond: Double
        var p50Milliseconds: Double
        var p90Milliseconds: Double
        var p99Milliseconds: Double
        var maxMilliseconds: Double
        var errors: [String: Int]
        var ratioToTransport: Double?
        var ratioToCrypto: Double?
        var ratioToStorage: Double?
        var ratioToBound: Double?

        init(_ target: String, connections: Int, offeredRate: Double? = nil, _ result: LoadResult) {
            self.target = target
            self.connections = connections
            self.offeredRate = offeredRate
            requestsPerSecond = result.rate
            p50Milliseconds = result.milliseconds(50)
            p90Milliseconds = result.milliseconds(90)
            p99Milliseconds = result.milliseconds(99)
            maxMilliseconds = result.maxMilliseconds
            errors = result.errors
        }
    }

    struct Goal: Codable {
        var name: String
        var measured: Double
        var limit: String
        var met: Bool
    }

    struct Report: Codable {
        var date: String
        var cores: Int
        var secondsPerRun: Double
        var cryptoSealsPerSecond: Double
        /// Seals per second as the relay seals plaintext intake: one shared HPKE context per 250 ms.
        var cryptoSharedContextSealsPerSecond: Double
        var storageRowsPerSecond: Double
        var transportRequestsPerSecond: [String: Double]
        var compositeBound: [String: Double]
        /// The bound again with the shared-context seal rate as the crypto baseline: stricter, for reference.
        var compositeBoundWithSharedContext: [String: Double]
        var figures: [Figure]
        var relayPeakResidentMiB: Double
        var acknowledged: Int
        var acknowledgedButMissing: Int
        var startupSecondsWith100kCases: Double?
        var goals: [Goal]
    }

    static func run(seconds: Double, seeds: String, output: String, startup: Bool) async throws {
        let workload = try Workload(seeds: seeds)
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("amane-intake-bench-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: scratch) }

        progress("baseline crypto: one core sealing 2 KiB to the default suite")
        let crypto = try cryptoRate()
        let cryptoShared = try cryptoSharedContextRate()
        progress("baseline storage: group commit of 2 KiB envelopes, 64 writers")
        let storage = try await StoreBench.groupCommitRate(writers: 64, seconds: 3)

        let relay = try await RelayUnderTest.start(directory: scratch + "/relay", seeds: seeds)
        relay.child.resetPeakResident()
        let nginx: NginxBaseline
        do { nginx = try await NginxBaseline.start(certificates: relay) } catch {
            relay.child.stop()
            throw error
        }
        var figures: [Figure] = []
        var transport: [String: Double] = [:]
        var bound: [String: Double] = [:]
        var boundShared: [String: Double] = [:]
        var acknowledged: [String] = []
        for connections in [1, 16, 64] {
            progress("transport baseline: nginx, \(connections) connections, \(seconds) s")
            let baseline = try await closedLoop(nginx.target(like: relay.target), workload, connections, seconds)
            transport["\(connections)"] = baseline.rate
            figures.append(Figure("nginx return 201", connections: connections, baseline))
            progress("relay: \(connections) connections, \(seconds) s")
            let result = try await closedLoop(relay.target, workload, connections, seconds)
            acknowledged += result.acknowledged
            let composite = 1 / (1 / baseline.rate + 1 / crypto + 1 / storage)
            bound["\(connections)"] = composite
            boundShared["\(connections)"] = 1 / (1 / baseline.rate + 1 / cryptoShared + 1 / storage)
            var figure = Figure("amane-relayd", connections: connections, result)
            figure.ratioToTransport = result.rate / baseline.rate
            figure.ratioToCrypto = result.rate / crypto
            figure.ratioToStorage = result.rate / storage
            figure.ratioToBound = result.rate / composite
            figures.append(figure)
        }
        let maximum = figures.filter { $0.target == "amane-relayd" }.map(\.requestsPerSecond).max() ?? 0
        guard maximum > 0 else {
            nginx.stop()
            relay.child.stop()
            throw BenchFailure("the relay acknowledged nothing; its output:\n\(relay.child.text)")
        }
        // The same schedule against nginx first: the tail that the generator and TLS alone bring.
        let offered = (maximum / 2).rounded()
        progress("transport baseline: nginx, open loop at \(Int(offered))/s, 64 connections, \(seconds) s")
        let openBaseline = try await openLoop(nginx.target(like: relay.target), workload, rate: offered, seconds: seconds)
        nginx.stop()
        figures.append(Figure("nginx open loop", connections: 64, offeredRate: offered, openBaseline))
        progress("relay: open loop at \(Int(offered))/s (half the maximum), 64 connections, \(seconds) s")
        let open = try await openLoop(relay.target, workload, rate: offered, seconds: seconds)
        acknowledged += open.acknowledged
        var openFigure = Figure("amane-relayd open loop", connections: 64, offeredRate: offered, open)
        openFigure.ratioToBound = open.rate / (bound["64"] ?? 1)
        figures.append(openFigure)

        let peakResident = Double(relay.child.peakResidentBytes) / 1_048_576
        relay.child.stop()
        progress("checking that every acknowledged id is in the store")
        let stored = try await RelayDatabase(directory: relay.directory).disclosureIDs()
        let missing = acknowledged.filter { !stored.contains($0) }.count

        var startupSeconds: Double?
        if startup {
            startupSeconds = try await startupWith(cases: 100_000, directory: scratch + "/startup", seeds: seeds)
        }

        let at64 = figures.first { $0.target == "amane-relayd" && $0.connections == 64 }!
        var goals = [
            Goal(name: "64 connections: share of the composite bound", measured: at64.ratioToBound ?? 0, limit: ">= 0.70",
                 met: (at64.ratioToBound ?? 0) >= 0.7),
            Goal(name: "64 connections: errors", measured: Double(at64.errors.values.reduce(0, +)), limit: "0",
                 met: at64.errors.isEmpty),
            Goal(name: "acknowledged but not stored", measured: Double(missing), limit: "0", met: missing == 0),
            Goal(name: "p99 at half the maximum rate (ms)", measured: openFigure.p99Milliseconds, limit: "< 25",
                 met: openFigure.p99Milliseconds < 25 && openFigure.errors.isEmpty),
            Goal(name: "peak resident memory at 64 connections (MiB)", measured: peakResident, limit: "< 150", met: peakResident < 150),
        ]
        if let startupSeconds {
            goals.append(Goal(name: "startup to ready with 100,000 cases (s)", measured: startupSeconds, limit: "< 1", met: startupSeconds < 1))
        }
        let report = Report(date: ISO8601DateFormatter().string(from: Date()), cores: ProcessInfo.processInfo.activeProcessorCount,
                            secondsPerRun: seconds, cryptoSealsPerSecond: crypto, cryptoSharedContextSealsPerSecond: cryptoShared,
                            storageRowsPerSecond: storage, transportRequestsPerSecond: transport, compositeBound: bound,
                            compositeBoundWithSharedContext: boundShared, figures: figures,
                            relayPeakResidentMiB: peakResident, acknowledged: acknowledged.count, acknowledgedButMissing: missing,
                            startupSecondsWith100kCases: startupSeconds, goals: goals)
        print(table(report))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(report).write(to: URL(fileURLWithPath: output))
        print("Wrote \(output).")
    }

    static func openLoop(_ target: LoadTarget, _ workload: Workload, rate: Double, seconds: Double) async throws -> LoadResult {
        let generator = try LoadGenerator(target: target, workload: workload, connections: 64)
        let result = await generator.openLoop(rate: rate, seconds: seconds)
        await generator.shutdown()
        return result
    }

    static func closedLoop(_ target: LoadTarget, _ workload: Workload, _ connections: Int, _ seconds: Double) async throws -> LoadResult {
        let generator = try LoadGenerator(target: target, workload: workload, connections: connections)
        let result = await generator.closedLoop(connections: connections, seconds: seconds)
        await generator.shutdown()
        return result
    }

    /// Envelope seals per second on one core: HPKE to the default suite plus the 2 KiB payload.
    static func cryptoRate() throws -> Double {
        let key = SealingPrivateKey.generate()
        let payload = [UInt8](repeating: 0x61, count: 2048)
        return try Bench.measure(seconds: 2) { _ = try Envelope.seal(payload, to: key.publicKey, kind: .disclosure, objectID: UUID.v7()) }
    }

    /// The same seals as the relay makes them for plaintext intake: one shared context per 250 ms window.
    static func cryptoSharedContextRate() throws -> Double {
        let key = SealingPrivateKey.generate()
        let payload = [UInt8](repeating: 0x61, count: 2048)
        var context = try SharedSealingContext(to: key.publicKey)
        var created = ContinuousClock.now
        return try Bench.measure(seconds: 2) {
            if ContinuousClock.now - created >= .milliseconds(250) {
                context = try SharedSealingContext(to: key.publicKey)
                created = ContinuousClock.now
            }
            _ = try Envelope.seal(payload, using: context, kind: .disclosure, objectID: UUID.v7())
        }
    }

    /// Seconds from starting `amane-relayd` to its first ready answer, on a database holding `cases` disclosures.
    static func startupWith(cases: Int, directory: String, seeds: String) async throws -> Double {
        progress("startup: preparing a database with \(cases) cases")
        try await RelayUnderTest.start(directory: directory, seeds: seeds).child.stop()
        let db = try RelayDatabase(directory: directory)
        let writer = Task { await db.runWriter() }
        guard let gateway = try await db.principals().first(where: { $0.role == .gateway }),
              let epoch = try db.currentEpoch(queue: .national) else { throw BenchFailure("the dev relay made no gateway or epoch") }
        let key = try SealingPublicKey(text: epoch.publicKey)
        let payload = [UInt8](repeating: 0x61, count: 2048 - 144)
        let urgencies: [Urgency] = [.immediate, .high, .normal, .low]
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<64 {
                group.addTask {
                    for index in stride(from: worker, to: cases, by: 64) {
                        let id = UUID.v7()
                        let envelope = try Envelope.seal(payload, to: key, kind: .disclosure, objectID: id)
                        let labels = DisclosureLabels(urgency: urgencies[index % 4], category: "sexual_abuse", language: "ar", channel: "phone")
                        _ = try await db.intake(IntakeRequest(gateway: gateway, labels: labels, id: id, envelope: envelope,
                                                              idempotencyKey: "startup-bench-\(id.uuidString)", requestHash: id.bytes))
                    }
                }
            }
            try await group.waitForAll()
        }
        writer.cancel()
        await writer.value
        try db.close()

        progress("startup: starting the relay on \(cases) cases")
        let clock = ContinuousClock()
        let start = clock.now
        let relay = try await RelayUnderTest.start(directory: directory, seeds: seeds)
        while !(try await ready(opsPort: relay.opsPort)) { try await Task.sleep(for: .milliseconds(2)) }
        let elapsed = (clock.now - start).inSeconds
        relay.child.stop()
        return elapsed
    }

    static func ready(opsPort: Int) async throws -> Bool {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: "http://127.0.0.1:\(opsPort)/readyz"), timeout: .seconds(5))
        return response.status == .ok
    }

    static func table(_ report: Report) -> String {
        func ratio(_ value: Double?) -> String { value.map { String(format: "%6.2f", $0) } ?? "     -" }
        var lines = [
            "",
            "Intake of 2 KiB disclosures over mutual TLS 1.3, \(report.cores) cores, load generator on the same machine, \(report.secondsPerRun) s per run",
            String(format: "Baselines (same run): crypto %.0f seals/s on one core (one HPKE seal each); storage %.0f rows/s (group commit, 64 writers)",
                   report.cryptoSealsPerSecond, report.storageRowsPerSecond),
            String(format: "For reference: %.0f seals/s on one core as the relay seals intake (one shared HPKE context per 250 ms)",
                   report.cryptoSharedContextSealsPerSecond),
            "",
            "target                    conns   offered     req/s   p50 ms   p90 ms   p99 ms   max ms  ×transp. ×crypto ×storage ×bound  errors",
        ]
        for figure in report.figures {
            let errors = figure.errors.isEmpty ? "0" : figure.errors.map { "\($0.value) \($0.key)" }.sorted().joined(separator: ", ")
            lines.append(figure.target.padding(toLength: 25, withPad: " ", startingAt: 0)
                + String(format: " %5d %9@ %9.0f %8.2f %8.2f %8.2f %8.2f", figure.connections,
                         figure.offeredRate.map { String(format: "%.0f/s", $0) } ?? "closed",
                         figure.requestsPerSecond, figure.p50Milliseconds, figure.p90Milliseconds, figure.p99Milliseconds, figure.maxMilliseconds)
                + "   " + ratio(figure.ratioToTransport) + "  " + ratio(figure.ratioToCrypto) + "  " + ratio(figure.ratioToStorage)
                + "  " + ratio(figure.ratioToBound) + "  " + errors)
        }
        lines.append("")
        lines.append(String(format: "Composite bound 1/(1/transport + 1/crypto + 1/storage): 1 conn %.0f/s, 16 conns %.0f/s, 64 conns %.0f/s",
                            report.compositeBound["1"] ?? 0, report.compositeBound["16"] ?? 0, report.compositeBound["64"] ?? 0))
        if let relay64 = report.figures.first(where: { $0.target == "amane-relayd" && $0.connections == 64 }),
           let stricter = report.compositeBoundWithSharedContext["64"] {
            lines.append(String(format: "With the shared-context seal rate as crypto baseline the bound at 64 conns is %.0f/s; the relay reaches %.2f of it",
                                stricter, relay64.requestsPerSecond / stricter))
        }
        if let relay = report.figures.first(where: { $0.target == "amane-relayd open loop" }),
           let nginx = report.figures.first(where: { $0.target == "nginx open loop" }) {
            lines.append(String(format: "Open loop at %.0f/s: the relay's p99 is %.2f× nginx's on the same schedule (%.2f ms against %.2f ms)",
                                relay.offeredRate ?? 0, relay.p99Milliseconds / max(nginx.p99Milliseconds, 0.001),
                                relay.p99Milliseconds, nginx.p99Milliseconds))
        }
        lines.append("Acknowledged \(report.acknowledged), of which missing from the store: \(report.acknowledgedButMissing)")
        lines.append("")
        lines.append("Goals")
        for goal in report.goals {
            lines.append("  \(goal.met ? "met    " : "NOT MET") \(goal.name): \(String(format: "%.2f", goal.measured)) (goal \(goal.limit))")
        }
        return lines.joined(separator: "\n")
    }

    static func progress(_ text: String) {
        FileHandle.standardError.write(Data("… \(text)\n".utf8))
    }
}
