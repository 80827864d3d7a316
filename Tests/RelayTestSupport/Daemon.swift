public import Foundation
public import RelayFormat
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Paths of the built binaries and the repository.
public enum Build {
    public static let products = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    public static let daemon = products.appendingPathComponent("amane-relayd").path
    public static let cli = products.appendingPathComponent("amane").path
    public static let bench = products.appendingPathComponent("amane-relay-bench").path
    public static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    public static let seeds = repository.appendingPathComponent("seeds").path

    /// This process's environment for a child: no AMANE_ setting, notify socket or credentials of its own, then `settings`.
    public static func environment(_ settings: [String: String] = [:]) -> [String: String] {
        ProcessInfo.processInfo.environment
            .filter { !$0.key.hasPrefix("AMANE_") && $0.key != "NOTIFY_SOCKET" && $0.key != "CREDENTIALS_DIRECTORY" }
            .merging(settings) { $1 }
    }

    /// The environment `amane-relayd` runs in here: `environment` with the project's seeds.
    public static func relaydEnvironment(_ settings: [String: String] = [:]) -> [String: String] {
        environment(["AMANE_SEEDS_DIRECTORY": seeds].merging(settings) { $1 })
    }
}

/// Text a child process writes, gathered as it arrives.
public final class OutputBuffer: Sendable {
    public init() {}
    private let text = Mutex("")
    public func append(_ data: Data) { text.withLock { $0 += String(decoding: data, as: UTF8.self) } }
    public var value: String { text.withLock { $0 } }
}

extension FileHandle {
    /// Appends what arrives to `buffer` until end of file, where Linux would keep calling with no data.
    public func collect(into buffer: OutputBuffer) {
        readabilityHandler = { handle in
            let data = handle.availableData
            if data.isEmpty { handle.readabilityHandler = nil } else { buffer.append(data) }
        }
    }
}

/// Polls `condition` every 20 ms, looking once more after the deadline; returns whether it came true.
public func eventually(within seconds: Int = 30, _ condition: () throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while true {
        if try condition() { return true }
        guard ContinuousClock.now < deadline else { return false }
        try await Task.sleep(for: .milliseconds(20))
    }
}

/// A client certificate and key on disk.
public struct ClientIdentity: Sendable {
    public let certificate: String
    public let key: String

    public init(certificate: String, key: String) {
        self.certificate = certificate
        self.key = key
    }
}

public struct HTTPResult: Sendable {
    public let status: Int
    public let body: Data
    public let headers: String
    public let curlExit: Int32

    public var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
    public var text: String { String(decoding: body, as: UTF8.self) }
}

/// A real `amane-relayd` on ephemeral loopback ports, with a data directory of its own.
public final class Daemon: @unchecked Sendable {
    public let directory: String
    public let process = Process()
    public let stdout = OutputBuffer()
    public let stderr = OutputBuffer()
    public private(set) var port = 0
    public private(set) var opsPort = 0
    public let environment: [String: String]
    public let arguments: [String]

    public var dev: String { (directory as NSString).appendingPathComponent("dev") }
    public var ca: String { (directory as NSString).appendingPathComponent("pki/ca-cert.pem") }
    public var gateway: ClientIdentity { ClientIdentity(certificate: dev + "/gateway-cert.pem", key: dev + "/gateway-key.pem") }
    public var responder: ClientIdentity { ClientIdentity(certificate: dev + "/responder/cert.pem", key: dev + "/responder/key.pem") }
    public var supervisor: ClientIdentity { ClientIdentity(certificate: dev + "/supervisor/cert.pem", key: dev + "/supervisor/key.pem") }

    /// Starts the daemon and waits until it listens (and, in dev mode, until the demo principals exist).
    public init(directory: String? = nil, dev: Bool = true, environment: [String: String] = [:], arguments: [String] = []) async throws {
        // A write to a child that has exited must fail that test, not kill the whole test process with SIGPIPE.
        Glibc.signal(SIGPIPE, SIG_IGN)
        self.directory = directory ?? FileManager.default.temporaryDirectory.appendingPathComponent("amane-daemon-\(UUID().uuidString)").path
        self.environment = environment
        self.arguments = arguments
        try await start(dev: dev)
    }

    private func start(dev: Bool) async throws {
        process.executableURL = URL(fileURLWithPath: Build.daemon)
        process.arguments = ["serve", "--data-dir", directory, "--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"] + (dev ? ["--dev"] : []) + arguments
        process.environment = Build.relaydEnvironment(environment)
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let stdout = self.stdout, stderr = self.stderr
        out.fileHandleForReading.collect(into: stdout)
        err.fileHandleForReading.collect(into: stderr)
        try process.run()
        let listening = try await eventually(within: 60) {
            let text = stdout.value
            guard let match = text.firstMatch(of: /listening on port (\d+), ops on port (\d+)/),
                  !dev || text.contains("Amane Relay (development) is listening") else { return !process.isRunning }
            port = Int(match.1)!
            opsPort = Int(match.2)!
            return true
        }
        if listening, port != 0 { return }
        throw DaemonFailure(description: "the daemon did not start:\n\(stdout.value)\n\(stderr.value)")
    }

    public struct DaemonFailure: Error, CustomStringConvertible { public let description: String }

    /// Starts a new process on the same data directory (a restart).
    public func restarted(dev: Bool = true) async throws -> Daemon {
        try await Daemon(directory: directory, dev: dev, environment: environment, arguments: arguments)
    }

    public var url: String { "https://127.0.0.1:\(port)" }

    /// Calls the API with curl, as a gateway or a member would.
    public func request(_ method: String, _ path: String, as identity: ClientIdentity?, body: Data? = nil,
                 contentType: String? = "application/json", headers: [String: String] = [:]) throws -> HTTPResult {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("curl-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        var arguments = ["-sS", "-X", method, "--cacert", ca, "-o", scratch.appendingPathComponent("body").path,
                         "-D", scratch.appendingPathComponent("headers").path, "-w", "%{http_code}", "--max-time", "20"]
        if let identity { arguments += ["--cert", identity.certificate, "--key", identity.key] }
        if let body {
            try body.write(to: scratch.appendingPathComponent("request"))
            arguments += ["--data-binary", "@" + scratch.appendingPathComponent("request").path]
        }
        if let contentType { arguments += ["-H", "Content-Type: \(contentType)"] }
        for (name, value) in headers { arguments += ["-H", "\(name): \(value)"] }
        arguments.append(url + path)
        let (exit, output) = try Self.run("/usr/bin/curl", arguments)
        return HTTPResult(status: Int(output.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0,
                          body: (try? Data(contentsOf: scratch.appendingPathComponent("body"))) ?? Data(),
                          headers: (try? String(contentsOf: scratch.appendingPathComponent("headers"), encoding: .utf8)) ?? "",
                          curlExit: exit)
    }

    public func post(_ path: String, as identity: ClientIdentity, json: Any, headers: [String: String] = [:]) throws -> HTTPResult {
        try request("POST", path, as: identity, body: try JSONSerialization.data(withJSONObject: json), headers: headers)
    }

    /// Sends `bytes` as they are over one TLS connection, as `identity` (openssl s_client), and returns the exit
    /// status of timeout(1) (124 when the relay kept the connection open for 20 seconds) and what came back.
    public func raw(_ bytes: String, as identity: ClientIdentity) throws -> (status: Int32, output: String) {
        try Self.run("/usr/bin/timeout", ["20", "/usr/bin/openssl", "s_client", "-quiet", "-connect", "127.0.0.1:\(port)",
                                          "-CAfile", ca, "-cert", identity.certificate, "-key", identity.key], input: Data(bytes.utf8))
    }

    /// A TLS connection held open as `identity` (openssl s_client): write requests to `input`, read what came back in `output`.
    public func openConnection(as identity: ClientIdentity) throws -> (client: Process, input: Pipe, output: OutputBuffer) {
        let client = Process()
        client.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        client.arguments = ["s_client", "-quiet", "-connect", "127.0.0.1:\(port)", "-CAfile", ca, "-cert", identity.certificate, "-key", identity.key]
        let input = Pipe(), output = OutputBuffer(), pipe = Pipe()
        client.standardInput = input
        client.standardOutput = pipe
        client.standardError = FileHandle.nullDevice
        pipe.fileHandleForReading.collect(into: output)
        try client.run()
        return (client, input, output)
    }

    /// Sends the same POST `count` times at once, each on its own connection (curl --parallel); each answer's status
    /// and body, in order of completion.
    public func postAtOnce(_ count: Int, _ path: String, as identity: ClientIdentity, json: Any,
                           headers: [String: String] = [:]) throws -> [(status: Int, body: String)] {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("curl-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let request = scratch.appendingPathComponent("request").path
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: request))
        var arguments = ["-sS", "--parallel", "--parallel-immediate", "--parallel-max", String(count), "--cacert", ca,
                         "--cert", identity.certificate, "--key", identity.key, "-H", "Content-Type: application/json",
                         "--data-binary", "@" + request, "-w", "%{http_code} %{filename_effective}\n", "--max-time", "20"]
        arguments += headers.flatMap { ["-H", "\($0.key): \($0.value)"] }
        for index in 0..<count { arguments += ["-o", scratch.appendingPathComponent("answer-\(index)").path, url + path] }
        let (_, output) = try Self.run("/usr/bin/curl", arguments)
        return output.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", maxSplits: 1)
            guard fields.count == 2, let status = Int(fields[0]) else { return nil }
            let body = (try? String(contentsOfFile: String(fields[1]), encoding: .utf8)) ?? ""
            return (status, body)
        }
    }

    public func get(_ path: String, as identity: ClientIdentity) throws -> HTTPResult {
        try request("GET", path, as: identity, contentType: nil)
    }

    /// Runs `amane-relayd` with a subcommand against this data directory.
    public func admin(_ arguments: [String]) throws -> (Int32, String) {
        try Self.run(Build.daemon, arguments + ["--data-dir", directory], environment: Build.relaydEnvironment())
    }

    public static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil, input: Data? = nil) throws -> (Int32, String) {
        let (code, output, _) = try run(executable, arguments, environment: environment, input: input, separatingErrors: false)
        return (code, output)
    }

    /// The same, with standard error apart from standard output when `separatingErrors`.
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil, input: Data? = nil,
                           separatingErrors: Bool) throws -> (code: Int32, output: String, errors: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        let output = Pipe()
        let errors = separatingErrors ? Pipe() : output
        process.standardOutput = output
        process.standardError = errors
        if let input {
            let pipe = Pipe()
            process.standardInput = pipe
            try process.run()
            pipe.fileHandleForWriting.write(input)
            try pipe.fileHandleForWriting.close()
        } else {
            process.standardInput = FileHandle.nullDevice
            try process.run()
        }
        // Standard error is read alongside, so that a child filling either pipe cannot stall the other.
        let errorBuffer = OutputBuffer()
        let errorsRead = DispatchSemaphore(value: 0)
        if separatingErrors {
            DispatchQueue.global().async {
                errorBuffer.append(errors.fileHandleForReading.readDataToEndOfFile())
                errorsRead.signal()
            }
        }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        if separatingErrors { errorsRead.wait() }
        let errorData = Data(errorBuffer.value.utf8)
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self), String(decoding: errorData, as: UTF8.self))
    }

    /// The demo member's epoch key, opened from its grant as the CLI would.
    public func epochKey(for profile: String = "responder") throws -> SealingPrivateKey {
        let identity = try IdentityFile.load(from: "\(dev)/\(profile)/identity.amane", passphrase: Array("amane-dev-passphrase".utf8))
        let grants = try get("/v1/grants", as: profile == "responder" ? responder : supervisor).json["grants"] as! [[String: Any]]
        let current = grants.first { $0["current"] as? Bool == true }!
        return try Grant.open(Data(base64Encoded: current["sealed"] as! String)!, epochID: UUID(uuidString: current["epoch"] as! String)!, with: identity)
    }

    public func gatewayKey() throws -> SealingPrivateKey {
        try IdentityFile.load(from: "\(dev)/gateway/identity.amane", passphrase: Array("amane-dev-passphrase".utf8))
    }

    public func signal(_ signal: Int32) { kill(process.processIdentifier, signal) }

    /// The daemon's resident memory now (`VmRSS`) or at its peak since the last reset (`VmHWM`), from the kernel.
    public func residentBytes(_ field: String = "VmRSS") -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }),
              let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) else { return 0 }
        return kib * 1024
    }

    /// Starts the peak (`VmHWM`) afresh.
    public func resetPeakResident() {
        try? "5".write(toFile: "/proc/\(process.processIdentifier)/clear_refs", atomically: false, encoding: .utf8)
    }

    /// How many descriptors the daemon holds open.
    public var openDescriptors: Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(process.processIdentifier)/fd").count) ?? 0
    }

    /// The target arguments `amane-relay-bench load` and `replay` need to post as the demo gateway.
    public var benchTarget: [String] {
        ["--url", url, "--ca", ca, "--cert", gateway.certificate, "--key", gateway.key, "--seeds", Build.seeds]
    }

    /// Re-posts every request of a load journal with its idempotency key and body, as a gateway retries.
    public func replay(journal: String) throws -> (status: Int32, summary: [String: Any]) {
        let (status, output) = try Self.run(Build.bench, ["replay", "--from", journal] + benchTarget)
        let summary = output.split(separator: "\n").last.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) } as? [String: Any]
        return (status, summary ?? ["output": output])
    }

    /// Stops the process (SIGTERM by default) and returns its exit status.
    @discardableResult
    public func stop(_ signal: Int32 = SIGTERM) -> Int32 {
        if process.isRunning { kill(process.processIdentifier, signal) }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Stops the daemon and returns its whole log, down to its last line: what a test finds missing from it is
    /// missing, not yet to come.
    public func stoppedLog() async throws -> String {
        let status = stop()
        guard status == 0, try await eventually(within: 10, { stderr.value.contains("stopped; every acknowledged write is committed") }) else {
            throw CocoaError(.fileReadUnknown, userInfo: ["status": status, "log": stderr.value])
        }
        return stdout.value + stderr.value
    }

    public func removeData() { try? FileManager.default.removeItem(atPath: directory) }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}

/// Demo disclosure bodies from `seeds/demo`.
public enum Demo {
    public static func disclosure(_ index: Int = 6) throws -> [String: Any] {
        let files = try FileManager.default.contentsOfDirectory(atPath: Build.seeds + "/demo").filter { $0.hasSuffix(".json") }.sorted()
        let data = try Data(contentsOf: URL(fileURLWithPath: Build.seeds + "/demo/" + files[index - 1]))
        return try JSONSerialization.jsonObject(with: data) as! [String: Any]
    }

    public static func body(narrative: String, urgency: String = "high") -> [String: Any] {
        ["urgency": urgency, "category": "sexual_abuse", "language": "fr", "channel": "phone", "region": "casablanca-settat",
         "content": ["narrative": narrative]]
    }

    public static func key() -> String { "test-\(UUID().uuidString)" }
}

/// `amane-relay-bench load` against a daemon, in the background, journaling each request it sends, each
/// acknowledgement and each failure.
public final class LoadRun: @unchecked Sendable {
    public let process = Process()
    public let journal: String
    private let output = OutputBuffer()
    private let reader: FileHandle

    public init(against daemon: Daemon, connections: Int, seconds: Double, journal: String, extra: [String] = []) throws {
        self.journal = journal
        process.executableURL = URL(fileURLWithPath: Build.bench)
        process.arguments = ["load", "--connections", String(connections), "--seconds", String(seconds), "--journal", journal]
            + daemon.benchTarget + extra
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        let output = self.output
        reader = pipe.fileHandleForReading
        reader.collect(into: output)
        try process.run()
    }

    deinit { kill() }

    public var entries: LoadJournal { LoadJournal(path: journal) }

    /// Waits until the journal holds at least `count` acknowledgements.
    public func waitForAcknowledgements(_ count: Int, seconds: Double = 60) async throws {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while entries.acknowledged.count < count {
            guard ContinuousClock.now < deadline, process.isRunning else {
                throw Daemon.DaemonFailure(description: "the load saw \(entries.acknowledged.count) acknowledgements, not \(count): \(output.value)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    public func kill(_ signal: Int32 = SIGKILL) {
        if process.isRunning { Glibc.kill(process.processIdentifier, signal) }
        process.waitUntilExit()
    }

    /// Waits for the run to end by itself and returns its exit status and JSON summary.
    public func finish() -> (status: Int32, summary: [String: Any]) {
        process.waitUntilExit()
        reader.readabilityHandler = nil
        output.append(reader.readDataToEndOfFile())
        let last = output.value.split(separator: "\n").last.map(String.init) ?? ""
        return (process.terminationStatus, (try? JSONSerialization.jsonObject(with: Data(last.utf8))) as? [String: Any] ?? ["output": output.value])
    }
}

/// What a load journal says: the keys sent, the id acknowledged for each key, the failures by kind.
public struct LoadJournal: Sendable {
    public var sent: Set<String> = []
    public var acknowledged: [String: String] = [:]
    public var failures: [String: Int] = [:]

    public init(path: String) {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        lines.removeLast() // empty after the last newline, or a line a kill cut short
        for line in lines {
            let fields = line.split(separator: " ", maxSplits: 2).map(String.init)
            guard fields.count == 3 else { continue }
            switch fields[0] {
            case "SENT": sent.insert(fields[1])
            case "ACK" where UUID(uuidString: fields[2]) != nil: acknowledged[fields[1]] = fields[2]
            case "FAIL": failures[fields[2], default: 0] += 1
            default: continue
            }
        }
    }
}

/// A size-limited tmpfs, for filling a disk for real. Mounting needs root. Call `remove()` once the
/// daemon on it has stopped.
public struct Tmpfs: Sendable {
    public let path: String

    public init(megabytes: Int) throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("amane-tmpfs-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let (status, output) = try Daemon.run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(megabytes)m", "tmpfs", path])
        guard status == 0 else {
            try? FileManager.default.removeItem(atPath: path)
            throw Daemon.DaemonFailure(description: "mounting a tmpfs needs root: \(output)")
        }
    }

    /// Gives the file system more room, as an operator freeing space would.
    public func grow(toMegabytes megabytes: Int) throws -> Bool {
        try Daemon.run("/bin/mount", ["-o", "remount,size=\(megabytes)m", path]).0 == 0
    }

    public func remove() {
        _ = try? Daemon.run("/bin/umount", ["-l", path])
        try? FileManager.default.removeItem(atPath: path)
    }
}
