import Foundation
import Logging
import Prometheus
import RelayCore
import Synchronization

/// Runs the configured SLA notify command as `COMMAND URGENCY COUNT QUEUE`, never with content, once for each queue
/// and urgency with cases past their SLA: each organisation's pager hears of its own. It is the alarm for cases
/// waiting too long, so it must not fail quietly: a command that fails or outlasts `timeout` (then killed) is logged
/// and counted, and one still running for a queue and urgency is not started again for them.
final class SLANotifier: Sendable {
    let command: String
    let timeout: Duration
    let failures: Counter
    let logger: Logger
    private let running = Mutex<Set<String>>([])

    init(command: String, timeout: Duration = .seconds(30), failures: Counter, logger: Logger) {
        self.command = command
        self.timeout = timeout
        self.failures = failures
        self.logger = logger
    }

    /// Returns once the command has ended, or at once when it is still running from an earlier call.
    func notify(_ queue: QueueName, _ urgency: Urgency, count: Int) async {
        let key = "\(queue.rawValue) \(urgency.rawValue)"
        guard running.withLock({ $0.insert(key).inserted }) else {
            return fail(queue, urgency, "it is still running from an earlier breach; not started again")
        }
        defer { _ = running.withLock { $0.remove(key) } }
        if let failure = await run([urgency.rawValue, String(count), queue.rawValue]) { fail(queue, urgency, failure) }
    }

    private func fail(_ queue: QueueName, _ urgency: Urgency, _ reason: String) {
        failures.increment()
        logger.error("the SLA notify command failed", metadata: ["relay.queue": "\(queue.rawValue)", "relay.urgency": "\(urgency.rawValue)",
                                                                 "relay.error": "\(reason)"])
    }

    /// Nil when the command exited 0, else why not.
    private func run(_ arguments: [String]) async -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command)
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        // Its output would break the relay's log lines (JSON among them); it logs on its own, with logger(1).
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        // Not the relay's own environment, which may name its credentials.
        process.environment = ["PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"]
        let settled = Settled()
        let timeout = timeout
        return await withCheckedContinuation { continuation in
            process.terminationHandler = { process in
                let killed = settled.settle() == .killed
                continuation.resume(returning: killed ? "it ran longer than \(timeout) and was killed"
                    : process.terminationReason == .exit && process.terminationStatus == 0 ? nil
                    : process.terminationReason == .exit ? "it exited with status \(process.terminationStatus)"
                    : "it ended on signal \(process.terminationStatus)")
            }
            do {
                try process.run()
            } catch {
                return continuation.resume(returning: "it could not start: \(error.localizedDescription)")
            }
            let pid = process.processIdentifier
            settled.arm(Task {
                try? await Task.sleep(for: timeout)
                // Its process group (Foundation makes the command lead one), so that what a script started goes too;
                // not once its end was seen: by then its pid may be another process's.
                if settled.kill() { Foundation.kill(-pid, SIGKILL) }
            })
        }
    }

    /// Whichever comes first of the command's end and its kill at the timeout.
    private final class Settled: Sendable {
        enum First { case ended, killed }
        private let state = Mutex<(first: First?, timer: Task<Void, Never>?)>((nil, nil))

        /// The kill at the timeout, cancelled when the command ends first.
        func arm(_ timer: Task<Void, Never>) {
            state.withLock { state in if state.first == nil { state.timer = timer } else { timer.cancel() } }
        }

        /// Called when the command ended: what came first.
        func settle() -> First {
            state.withLock { state in
                state.timer?.cancel()
                state.first = state.first ?? .ended
                return state.first!
            }
        }

        /// Whether the command is still to be killed: it has not ended.
        func kill() -> Bool { state.withLock { state in guard state.first == nil else { return false }; state.first = .killed; return true } }
    }
}
