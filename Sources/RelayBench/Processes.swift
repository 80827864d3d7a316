import Foundation
import Synchronization

/// A child process whose output is gathered as it arrives.
final class ChildProcess: Sendable {
    let process: Process
    private let output = Shared("")

    init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        self.process = process
        let output = self.output
        pipe.fileHandleForReading.readabilityHandler = { handle in
            let text = String(decoding: handle.availableData, as: UTF8.self)
            output.value.withLock { $0 += text }
        }
        try process.run()
    }

    var text: String { output.value.withLock { $0 } }
    var pid: Int32 { process.processIdentifier }

    /// Waits until `match` finds something in the output, or fails with the output so far.
    func wait<T>(for what: String, seconds: Double = 30, _ match: (String) -> T?) async throws -> T {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            if let found = match(text) { return found }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(5))
        }
        throw BenchFailure("\(process.executableURL?.lastPathComponent ?? "child") did not report \(what):\n\(text)")
    }

    /// Peak resident memory of the child so far, from the kernel's high-water mark.
    var peakResidentBytes: Int { ResidentMemory.peakBytes(pid: "\(pid)") }

    /// Forgets the high-water mark so far, so that start-up work (the dev profiles' key files) is not counted as load.
    func resetPeakResident() {
        try? "5".write(toFile: "/proc/\(pid)/clear_refs", atomically: false, encoding: .utf8)
    }

    @discardableResult
    func stop(_ signal: Int32 = SIGTERM) -> Int32 {
        if process.isRunning { kill(pid, signal) }
        process.waitUntilExit()
        return process.terminationStatus
    }
}

/// A value behind a lock that closures can share.
final class Shared<Value: Sendable>: Sendable {
    let value: Mutex<Value>
    init(_ value: Value) { self.value = Mutex(value) }
}

/// A release `amane-relayd serve --dev` on ephemeral loopback ports, with the intake rate limit lifted
/// so that the load generator measures the relay and not its limiter.
struct RelayUnderTest {
    let child: ChildProcess
    let directory: String
    let port: Int
    let opsPort: Int

    var target: LoadTarget {
        LoadTarget(url: "https://127.0.0.1:\(port)", ca: directory + "/pki/ca-cert.pem",
                   certificate: directory + "/dev/gateway-cert.pem", key: directory + "/dev/gateway-key.pem")
    }

    static func start(directory: String, seeds: String) async throws -> RelayUnderTest {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("amane-relayd").path
        let child = try ChildProcess(binary, ["serve", "--dev", "--data-dir", directory, "--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"],
                                     environment: ["AMANE_SEEDS_DIRECTORY": seeds, "AMANE_LIMITS_REQUESTS_PER_MINUTE": "100000000",
                                                   "AMANE_LOG_LEVEL": "warning"])
        let ports = try await child.wait(for: "its ports") { text -> (Int, Int)? in
            guard let match = text.firstMatch(of: /listening on port (\d+), ops on port (\d+)/),
                  text.contains("is listening") else { return nil }
            return (Int(match.1)!, Int(match.2)!)
        }
        return RelayUnderTest(child: child, directory: directory, port: ports.0, opsPort: ports.1)
    }
}

/// nginx from Debian, terminating TLS 1.3 with required client certificates and answering `return 201`:
/// the transport baseline, with the relay's own certificates.
struct NginxBaseline {
    let child: ChildProcess
    let port: Int
    let prefix: String

    static func start(certificates relay: RelayUnderTest) async throws -> NginxBaseline {
        guard let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"].first(where: FileManager.default.isExecutableFile(atPath:)) else {
            throw BenchFailure("nginx is not installed (make bench installs it: apt-get install nginx-light)")
        }
        let prefix = FileManager.default.temporaryDirectory.appendingPathComponent("amane-nginx-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: prefix + "/logs", withIntermediateDirectories: true)
        let port = try freePort()
        let pki = relay.directory + "/pki"
        let configuration = """
            worker_processes auto;
            daemon off;
            pid \(prefix)/nginx.pid;
            error_log \(prefix)/logs/error.log warn;
            events { worker_connections 4096; }
            http {
                access_log off;
                client_body_temp_path \(prefix)/body;
                keepalive_requests 1000000;
                server {
                    listen 127.0.0.1:\(port) ssl;
                    ssl_protocols TLSv1.3;
                    ssl_certificate \(pki)/server-cert.pem;
                    ssl_certificate_key \(pki)/server-key.pem;
                    ssl_client_certificate \(pki)/ca-cert.pem;
                    ssl_verify_client on;
                    location / { default_type application/json; return 201 '{"id":"baseline"}'; }
                }
            }
            """
        try configuration.write(toFile: prefix + "/nginx.conf", atomically: true, encoding: .utf8)
        let child = try ChildProcess(binary, ["-p", prefix, "-c", prefix + "/nginx.conf", "-e", prefix + "/logs/error.log"])
        let deadline = ContinuousClock.now + .seconds(10)
        while !canConnect(port: port) {
            guard child.process.isRunning, ContinuousClock.now < deadline else {
                throw BenchFailure("nginx did not start: \(child.text) \((try? String(contentsOfFile: prefix + "/logs/error.log", encoding: .utf8)) ?? "")")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        return NginxBaseline(child: child, port: port, prefix: prefix)
    }

    func target(like relay: LoadTarget) -> LoadTarget {
        var target = relay
        target.url = "https://127.0.0.1:\(port)"
        return target
    }

    func stop() {
        child.stop(SIGQUIT)
        try? FileManager.default.removeItem(atPath: prefix)
    }

    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw BenchFailure("no free loopback port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    static func canConnect(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }
}
