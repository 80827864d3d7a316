import ArgumentParser
import Crypto
import Foundation
import RelayCore
import RelayFormat

enum Bench {
    static func measure(seconds: Double = 1.0, _ body: () throws -> Void) rethrows -> Double {
        try body()
        let clock = ContinuousClock()
        let start = clock.now
        var iterations = 0
        while (clock.now - start) < .milliseconds(Int(seconds * 1000)) {
            try body()
            iterations += 1
        }
        let elapsed = clock.now - start
        return Double(iterations) / elapsed.inSeconds
    }

    static func crypto() throws {
        print("Sealed envelope throughput (release build, one core; ratio = envelope MB/s ÷ raw AEAD MB/s, same run)")
        print("suite                                    size     op    ops/s      MB/s   raw MB/s  ratio")
        for suite in SealingSuite.allCases {
            let key = SealingPrivateKey.generate(suite: suite)
            for size in [2 * 1024, 1024 * 1024] {
                let payload = [UInt8](repeating: 0x5a, count: size)
                let id = UUID.v7()
                let envelope = try Envelope.seal(payload, to: key.publicKey, kind: .disclosure, objectID: id)
                let raw = try rawAEADRate(suite: suite, size: size)
                let seal = try measure { _ = try Envelope.seal(payload, to: key.publicKey, kind: .disclosure, objectID: id) }
                let open = try measure { _ = try Envelope.open(envelope, with: key, kind: .disclosure, objectID: id) }
                for (name, rate) in [("seal", seal), ("open", open)] {
                    let mbps = rate * Double(size) / 1e6
                    let rawMBps = raw * Double(size) / 1e6
                    let label = suite.description.padding(toLength: 41, withPad: " ", startingAt: 0)
                        + (size >= 1 << 20 ? "1 MiB" : "2 KiB").padding(toLength: 9, withPad: " ", startingAt: 0)
                        + name.padding(toLength: 4, withPad: " ", startingAt: 0)
                    print(label + String(format: " %8.0f %9.1f %10.1f %6.3f", rate, mbps, rawMBps, mbps / rawMBps))
                }
            }
        }
        let passphrase = Array("bench passphrase".utf8)
        let text = try IdentityFile.encode(SealingPrivateKey.generate(), passphrase: passphrase)
        let sha = measure { _ = SHA256.hash(data: [UInt8](repeating: 1, count: 1 << 20)) }
        let unlock = try measure(seconds: 2) { _ = try IdentityFile.decode(text, passphrase: passphrase) }
        print(String(format: "scrypt unlock (N=2^17, r=8, p=1): %.0f ms; baseline SHA-256 of 1 MiB: %.2f ms; ratio %.0f×",
                     1000 / unlock, 1000 / sha, sha / unlock))
    }

    static func rawAEADRate(suite: SealingSuite, size: Int) throws -> Double {
        let key = SymmetricKey(size: .bits256)
        let payload = [UInt8](repeating: 0x5a, count: size)
        switch suite {
        case .xwingAESGCM: return try measure { _ = try AES.GCM.seal(payload, using: key) }
        case .x25519ChaChaPoly: return try measure { _ = try ChaChaPoly.seal(payload, using: key) }
        }
    }

    static func selfCheck() throws {
        let epoch = SealingPrivateKey.generate()
        let responder = SealingPrivateKey.generate()
        let grant = try Grant.seal(epoch, to: responder.publicKey)
        let id = UUID.v7()
        let text = "Demo: un enfant raconte / طفل يحكي — synthetic text"
        let envelope = try Envelope.seal(Array(text.utf8), to: epoch.publicKey, kind: .disclosure, objectID: id)
        let epochKey = try Grant.open(grant, epochID: epoch.id, with: responder)
        let opened = String(decoding: try Envelope.open(envelope, with: epochKey, kind: .disclosure, objectID: id), as: UTF8.self)
        guard opened == text else { throw FormatError(.openFailed, "self-check round trip differs") }
        print("Self-check passed: sealed \(text.utf8.count) bytes into a \(envelope.count)-byte envelope to epoch \(epoch.id),")
        print("opened it through a grant to responder \(responder.publicKey.fingerprint). Receipt format: \(Receipt.generate().grouped.map { $0.isNumber ? "#" : $0 }.map(String.init).joined())")
    }
}

@main
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "amane-relay-bench",
        abstract: "Benchmarks, load and fault tooling for Amane Relay. Every figure is measured against a baseline in the same run.",
        subcommands: [Intake.self, Crypto.self, Store.self, Stream.self, Load.self, Replay.self, SelfCheck.self, StoreWriterCommand.self])

    struct Intake: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Intake throughput and latency of a release amane-relayd against nginx, crypto and storage baselines.")
        @Option(help: "Seconds per load run.") var seconds = 5.0
        @Option(help: "The seeds folder (demo disclosures, taxonomy).") var seeds = "seeds"
        @Option(help: "Where to write the JSON report.") var output = "bench-results.json"
        @Flag(help: "Skip the startup measurement on 100,000 cases.") var skipStartup = false
        func run() async throws {
            try await IntakeBench.run(seconds: seconds, seeds: seeds, output: output, startup: !skipStartup)
        }
    }

    struct Crypto: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Seal and open throughput against raw AEAD, and the passphrase unlock cost.")
        func run() throws { try Bench.crypto() }
    }

    struct Store: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Durable intake through group commit against one row per transaction, and the queue's first page at 100,000 cases.")
        func run() async throws { try await StoreBench.run() }
    }

    struct Stream: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Streams MIB mebibytes through the sealer into the opener; prints JSON with the peak memory growth.")
        @Argument var mebibytes: Int
        func run() throws { try StreamBench.run(mebibytes: mebibytes) }
    }

    struct TargetOptions: ParsableArguments {
        @Option(help: "The relay's base URL.") var url: String
        @Option(help: "The relay CA certificate (PEM).") var ca: String
        @Option(help: "The gateway's client certificate (PEM).") var cert: String
        @Option(help: "The gateway's client key (PEM).") var key: String
        @Option(help: "The seeds folder holding demo/.") var seeds = "seeds"
        @Option(help: "Append SENT, ACK and FAIL lines to this journal.") var journal: String?
        @Option(help: "End a closed-loop run once this many requests failed.") var stopAfterErrors: Int?

        func generator(connections: Int) throws -> LoadGenerator {
            try LoadGenerator(target: LoadTarget(url: url, ca: ca, certificate: cert, key: key), workload: try Workload(seeds: seeds),
                              connections: connections, journal: try journal.map(Journal.init(path:)), stopAfterErrors: stopAfterErrors ?? .max)
        }
    }

    struct Summary: Encodable {
        var requests: Int
        var acknowledged: Int
        var requestsPerSecond: Double
        var p50Milliseconds: Double
        var p99Milliseconds: Double
        var maxMilliseconds: Double
        var errors: [String: Int]

        init(_ result: LoadResult) {
            requests = result.requests
            acknowledged = result.acknowledged.count
            requestsPerSecond = result.rate
            p50Milliseconds = result.milliseconds(50)
            p99Milliseconds = result.milliseconds(99)
            maxMilliseconds = result.maxMilliseconds
            errors = result.errors
        }

        func print() throws {
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            Swift.print(String(decoding: try encoder.encode(self), as: UTF8.self))
        }
    }

    struct Load: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Posts disclosures to a running relay, closed loop or at a fixed rate; prints a JSON summary.")
        @OptionGroup var target: TargetOptions
        @Option(help: "Concurrent keep-alive connections.") var connections = 16
        @Option(help: "How long to run.") var seconds = 5.0
        @Option(help: "Requests per second (open loop); without it, each connection sends as soon as it is answered.") var rate: Double?
        func run() async throws {
            let generator = try target.generator(connections: connections)
            let result = if let rate { await generator.openLoop(rate: rate, seconds: seconds) }
                         else { await generator.closedLoop(connections: connections, seconds: seconds) }
            await generator.shutdown()
            try Summary(result).print()
        }
    }

    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-posts every request of a journal with its idempotency key and body, as a gateway retries after a failure.",
            discussion: "Exits 1 if a request fails or an acknowledged request comes back with another id. Prints a JSON summary.")
        @OptionGroup var target: TargetOptions
        @Option(help: "The journal a load run wrote.") var from: String
        func run() async throws {
            let entries = try Journal.read(from)
            let generator = try target.generator(connections: 16)
            var unique: [String: Int] = [:]
            for (key, body) in entries.sent { unique[key] = body }
            let outcomes = await withTaskGroup(of: (String, Outcome).self) { group in
                var outcomes: [(String, Outcome)] = []
                for (index, (key, body)) in unique.enumerated() {
                    if index >= 16, let outcome = await group.next() { outcomes.append(outcome) }
                    group.addTask { (key, await generator.post(key: key, body: body)) }
                }
                for await outcome in group { outcomes.append(outcome) }
                return outcomes
            }
            await generator.shutdown()
            var failed: [String: Int] = [:]
            var changed = 0
            var ids: [String] = []
            for (key, outcome) in outcomes {
                switch outcome {
                case .acknowledged(let id):
                    ids.append(id)
                    if let earlier = entries.acknowledged[key], earlier != id { changed += 1 }
                default: failed[outcome.errorKind ?? "?", default: 0] += 1
                }
            }
            let report: [String: Any] = ["requests": unique.count, "acknowledgedBefore": entries.acknowledged.count,
                                         "acknowledged": ids.count, "changedIDs": changed, "errors": failed, "ids": ids]
            print(String(decoding: try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys]), as: UTF8.self))
            if changed > 0 || !failed.isEmpty { throw ExitCode(1) }
        }
    }

    struct SelfCheck: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "self-check", abstract: "Seals and opens a demo disclosure, as a smoke test of the build.")
        func run() throws { try Bench.selfCheck() }
    }

    struct StoreWriterCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "store-writer", abstract: "Writes disclosures through group commit and prints ACK lines; the crash test kills it.")
        @Argument var directory: String
        func run() async throws { try await StoreWriter.run(directory: directory) }
    }
}
