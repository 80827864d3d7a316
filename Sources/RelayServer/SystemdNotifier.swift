import Foundation
import Logging
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

/// Speaks systemd's notify protocol on `$NOTIFY_SOCKET`: `READY=1` once listening, `WATCHDOG=1` at half
/// of `$WATCHDOG_USEC`, `STOPPING=1` on shutdown. Without the variable it does nothing.
struct SystemdNotifier: Service {
    let socketPath: String?
    let watchdogInterval: Duration?
    let ready: @Sendable () async -> Void
    let logger: Logger

    init(environment: [String: String] = ProcessInfo.processInfo.environment, logger: Logger, ready: @escaping @Sendable () async -> Void) {
        self.socketPath = environment["NOTIFY_SOCKET"]
        if let usec = environment["WATCHDOG_USEC"].flatMap(Int64.init), usec > 0 {
            self.watchdogInterval = .microseconds(usec / 2)
        } else {
            self.watchdogInterval = nil
        }
        self.ready = ready
        self.logger = logger
    }

    func run() async throws {
        guard socketPath != nil else {
            try await gracefulShutdown()
            return
        }
        await ready()
        send("READY=1\nSTATUS=serving")
        logger.info("notified systemd: ready")
        if let watchdogInterval {
            await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    try? await Task.sleep(for: watchdogInterval)
                    if !Task.isCancelled { self.send("WATCHDOG=1") }
                }
            }
        } else {
            try? await gracefulShutdown()
        }
        send("STOPPING=1")
    }

    /// Sends one datagram; an abstract socket is named with a leading `@`.
    func send(_ message: String) {
        guard var path = socketPath, !path.isEmpty else { return }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let abstract = path.hasPrefix("@")
        if abstract { path.removeFirst() }
        var bytes = Array(path.utf8)
        if abstract { bytes.insert(0, at: 0) }
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (abstract ? 0 : 1))
        _ = message.withCString { text in
            withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, text, strlen(text), 0, $0, length) }
            }
        }
    }
}
