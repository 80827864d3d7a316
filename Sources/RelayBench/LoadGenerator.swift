import AsyncHTTPClient
import Foundation
import Histogram
import NIOCore
import NIOHTTP1
import NIOSSL
import RelayCore
import Synchronization

/// Where the load goes: an intake endpoint behind mutual TLS.
struct LoadTarget: Sendable {
    var url: String
    var ca: String
    var certificate: String
    var key: String
}

/// Realistic 2 KiB disclosures: the labels and narratives of `seeds/demo`, each narrative grown to about
/// 2 KiB with the other demo narratives of its language. Bodies are built once; a request picks one by index.
struct Workload: Sendable {
    let bodies: [ByteBuffer]

    init(seeds: String, narrativeBytes: Int = 2048) throws {
        let folder = (seeds as NSString).appendingPathComponent("demo")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".json") }.sorted()
        let demos = try files.map { name -> [String: Any] in
            let data = try Data(contentsOf: URL(fileURLWithPath: (folder as NSString).appendingPathComponent(name)))
            guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw BenchFailure("\(name) is not a JSON object")
            }
            return object
        }
        guard !demos.isEmpty else { throw BenchFailure("no demo disclosures in \(folder)") }
        func narrative(_ demo: [String: Any]) -> String { (demo["content"] as? [String: Any])?["narrative"] as? String ?? "" }
        bodies = try demos.map { demo in
            let language = demo["language"] as? String
            let sameLanguage = demos.filter { $0["language"] as? String == language }.map(narrative)
            var text = narrative(demo)
            var next = 0
            while text.utf8.count < narrativeBytes {
                text += "\n" + sameLanguage[next % sameLanguage.count]
                next += 1
            }
            while text.utf8.count > narrativeBytes { text.removeLast() }
            var body = demo
            body["content"] = ["narrative": text]
            return ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys]))
        }
    }
}

/// One request's fate, as the load generator saw it.
enum Outcome: Sendable {
    case acknowledged(id: String)
    case refused(status: Int)
    case failed(kind: String)

    var errorKind: String? {
        switch self {
        case .acknowledged: nil
        case .refused(let status): "HTTP \(status)"
        case .failed(let kind): kind
        }
    }
}

/// A line-per-event record of what was sent and what was acknowledged, written before and after each
/// request with one `write` each, so a killed generator leaves a usable journal behind.
final class Journal: Sendable {
    private let handle: Mutex<FileHandle>

    init(path: String) throws {
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        guard let handle = FileHandle(forWritingAtPath: path) else { throw BenchFailure("cannot write the journal \(path)") }
        handle.seekToEndOfFile()
        self.handle = Mutex(handle)
    }

    func sent(key: String, body: Int) { append("SENT \(key) \(body)\n") }
    func acknowledged(key: String, id: String) { append("ACK \(key) \(id)\n") }
    func failed(key: String, kind: String) { append("FAIL \(key) \(kind)\n") }

    private func append(_ line: String) { handle.withLock { $0.write(Data(line.utf8)) } }

    struct Entries {
        var sent: [(key: String, body: Int)] = []
        var acknowledged: [String: String] = [:]
    }

    static func read(_ path: String) throws -> Entries {
        var entries = Entries()
        for line in try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n") {
            let fields = line.split(separator: " ").map(String.init)
            switch (fields.first, fields.count) {
            case ("SENT", 3): entries.sent.append((fields[1], Int(fields[2]) ?? 0))
            case ("ACK", 3): entries.acknowledged[fields[1]] = fields[2]
            default: continue // a FAIL line, or a line cut short by a kill
            }
        }
        return entries
    }
}

/// Latencies and outcomes of one run.
struct LoadResult: Sendable {
    var histogram = Histogram<UInt64>(highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three)
    var acknowledged: [String] = []
    var errors: [String: Int] = [:]
    var seconds = 0.0

    var requests: Int { Int(histogram.totalCount) }
    var rate: Double { seconds > 0 ? Double(acknowledged.count) / seconds : 0 }

    /// Latency in milliseconds at a percentile.
    func milliseconds(_ percentile: Double) -> Double { Double(histogram.valueAtPercentile(percentile)) / 1000 }
    var maxMilliseconds: Double { Double(histogram.max) / 1000 }

    mutating func record(_ outcome: Outcome, microseconds: UInt64) {
        _ = histogram.record(microseconds)
        if case .acknowledged(let id) = outcome { acknowledged.append(id) }
        if let kind = outcome.errorKind { errors[kind, default: 0] += 1 }
    }

    mutating func merge(_ other: LoadResult) {
        histogram.add(other.histogram)
        acknowledged += other.acknowledged
        errors.merge(other.errors, uniquingKeysWith: +)
    }
}

/// Mutual-TLS HTTP/1.1 keep-alive clients posting disclosures, closed loop or at a fixed rate.
final class LoadGenerator: Sendable {
    let target: LoadTarget
    let workload: Workload
    let journal: Journal?
    private let http: HTTPClient
    private let counter = Atomic<Int>(0)
    private let errorCount = Atomic<Int>(0)
    /// A closed-loop run ends early once this many requests failed.
    let stopAfterErrors: Int

    var stoppedByErrors: Bool { errorCount.load(ordering: .relaxed) >= stopAfterErrors }

    init(target: LoadTarget, workload: Workload, connections: Int, journal: Journal? = nil, stopAfterErrors: Int = .max) throws {
        self.stopAfterErrors = stopAfterErrors
        self.target = target
        self.workload = workload
        self.journal = journal
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv13
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(target.ca))
        tls.certificateChain = try NIOSSLCertificate.fromPEMFile(target.certificate).map { .certificate($0) }
        tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: target.key, format: .pem))
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.httpVersion = .http1Only
        configuration.timeout = .init(connect: .seconds(5), read: .seconds(30))
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: connections)
        configuration.connectionPool.retryConnectionEstablishment = false
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    func shutdown() async { try? await http.shutdown() }

    /// Posts one disclosure; the key, when given, replays an earlier request with the same body.
    func post(key: String? = nil, body: Int? = nil) async -> Outcome {
        let outcome = await send(key: key, body: body)
        if let kind = outcome.outcome.errorKind {
            errorCount.add(1, ordering: .relaxed)
            journal?.failed(key: outcome.key, kind: kind)
        }
        return outcome.outcome
    }

    private func send(key: String?, body: Int?) async -> (key: String, outcome: Outcome) {
        let body = body ?? counter.wrappingAdd(1, ordering: .relaxed).oldValue % workload.bodies.count
        let key = key ?? "bench-\(UUID().uuidString)"
        journal?.sent(key: key, body: body)
        var request = HTTPClientRequest(url: target.url + "/v1/disclosures")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Idempotency-Key", value: key)
        request.body = .bytes(workload.bodies[body])
        do {
            let response = try await http.execute(request, timeout: .seconds(30))
            let data = try await response.body.collect(upTo: 1 << 20)
            guard response.status == .created else { return (key, .refused(status: Int(response.status.code))) }
            let answer = try JSONSerialization.jsonObject(with: Data(data.readableBytesView)) as? [String: Any]
            guard let id = answer?["id"] as? String else { return (key, .failed(kind: "201 without an id")) }
            journal?.acknowledged(key: key, id: id)
            return (key, .acknowledged(id: id))
        } catch {
            return (key, .failed(kind: Self.kind(of: error)))
        }
    }

    /// `connections` clients, each sending its next request as soon as the last was answered.
    func closedLoop(connections: Int, seconds: Double) async -> LoadResult {
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = start + .milliseconds(Int(seconds * 1000))
        var total = await withTaskGroup(of: LoadResult.self) { group in
            for _ in 0..<connections {
                group.addTask {
                    var local = LoadResult()
                    while clock.now < deadline && !self.stoppedByErrors {
                        let sent = clock.now
                        let outcome = await self.post()
                        local.record(outcome, microseconds: Self.microseconds(clock.now - sent))
                    }
                    return local
                }
            }
            var total = LoadResult()
            for await part in group { total.merge(part) }
            return total
        }
        total.seconds = (clock.now - start).inSeconds
        return total
    }

    /// Requests at a fixed rate whatever the answers do (open loop). Latency counts from when a request was
    /// due, not from when it went out, so a stall shows in the figures instead of hiding behind fewer requests.
    func openLoop(rate: Double, seconds: Double) async -> LoadResult {
        guard rate > 0 else { return LoadResult() }
        let clock = ContinuousClock()
        let start = clock.now
        let count = Int(rate * seconds)
        let interval = Duration.nanoseconds(Int64(1e9 / rate))
        let result = Shared(LoadResult())
        await withDiscardingTaskGroup { group in
            for index in 0..<count {
                let due = start + interval * index
                try? await Task.sleep(until: due, clock: clock)
                group.addTask {
                    let outcome = await self.post()
                    let latency = Self.microseconds(clock.now - due)
                    result.value.withLock { $0.record(outcome, microseconds: latency) }
                }
            }
        }
        var total = result.value.withLock { $0 }
        total.seconds = (clock.now - start).inSeconds
        return total
    }

    static func microseconds(_ duration: Duration) -> UInt64 {
        UInt64(max(0, duration.inNanoseconds / 1000))
    }

    /// A short, stable name for a transport failure, for the error table.
    static func kind(of error: any Error) -> String {
        if let error = error as? HTTPClientError { return "client: \(error)" }
        if error is NIOSSLError { return "TLS: \(error)" }
        if let error = error as? IOError { return "I/O: \(error.errnoCode == ECONNREFUSED ? "connection refused" : "errno \(error.errnoCode)")" }
        return String(describing: type(of: error))
    }
}

struct BenchFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
