import Foundation
import Logging
import RelayCore
@testable import RelayServer
import RelayStore
import RelayTestSupport
import Synchronization
import Testing

/// Keeps what a logger was asked to write, as "message key=value".
final class LogRecords: Sendable {
    private let lines = Mutex<[String]>([])
    var all: [String] { lines.withLock { $0 } }
    func append(_ line: String) { lines.withLock { $0.append(line) } }

    struct Handler: LogHandler {
        let records: LogRecords
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let fields = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            records.append(([event.message.description] + fields).joined(separator: " "))
        }
    }

    var logger: Logger { Logger(label: "test") { _ in Handler(records: self) } }
}

@Suite struct PeriodicServiceTests {
    struct CarriesText: Error { let text = "canary-not-for-logs" }

    @Test func aFailureIsLoggedWithTheStoresReasonAndAnyOtherErrorOnlyByItsType() async throws {
        let records = LogRecords()
        let runs = Mutex(0)
        let service = PeriodicService(name: "retention sweep", every: .milliseconds(5), logger: records.logger) {
            let run = runs.withLock { $0 += 1; return $0 }
            if run == 1 { throw StoreError(.unavailable, "the disk is full") }
            throw CarriesText()
        }
        let task = Task { try await service.run() }
        #expect(try await eventually(within: 60) { records.all.count >= 2 })
        task.cancel()
        try await task.value
        #expect(Array(records.all.prefix(2)) == ["retention sweep failed relay.error=unavailable: the disk is full",
                                                  "retention sweep failed relay.error=CarriesText"])
        #expect(!records.all.joined().contains("canary"))
    }

    @Test func aTaskStoppedByShutdownIsNotWarnedAbout() async throws {
        let records = LogRecords()
        let started = Mutex(false)
        let service = PeriodicService(name: "lease reaper", every: .seconds(60), logger: records.logger) {
            started.withLock { $0 = true }
            try await Task.sleep(for: .seconds(60))
        }
        let task = Task { try await service.run() }
        #expect(try await eventually(within: 60) { started.withLock { $0 } })
        task.cancel()
        try await task.value
        #expect(records.all.isEmpty, "\(records.all)")
    }
}

/// The alarm for cases waiting too long must not fail quietly.
@Suite struct SLANotifierTests {
    @Test func theCommandHearsUrgencyCountAndQueueAndAFailureATimeoutOrAnOverlapIsLoggedAndCounted() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("sla-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        func script(_ name: String, _ body: String) throws -> String {
            let path = folder + "/" + name
            try "#!/bin/sh\n\(body)\n".write(toFile: path, atomically: true, encoding: .utf8)
            #expect(chmod(path, 0o755) == 0)
            return path
        }
        let records = LogRecords()
        let metrics = RelayMetrics()
        func failures() -> String {
            metrics.exposition.split(separator: "\n").first { $0.hasPrefix("amane_sla_notify_failures_total ") }.map(String.init) ?? ""
        }
        func notifier(_ command: String, timeout: Duration = .seconds(30)) -> SLANotifier {
            SLANotifier(command: command, timeout: timeout, failures: metrics.slaNotifyFailures, logger: records.logger)
        }

        await notifier(try script("page", "echo \"$1 $2 $3\" > \(folder)/paged")).notify(.national, .immediate, count: 3)
        #expect(try String(contentsOfFile: folder + "/paged", encoding: .utf8) == "immediate 3 national\n")
        #expect(records.all.isEmpty && failures() == "amane_sla_notify_failures_total 0", "\(records.all)")

        await notifier(try script("refuse", "exit 3")).notify(.national, .high, count: 1)
        #expect(records.all.last == "the SLA notify command failed relay.error=it exited with status 3 relay.queue=national relay.urgency=high")

        await notifier(folder + "/gone").notify(.national, .high, count: 1)
        #expect(records.all.last?.hasPrefix("the SLA notify command failed relay.error=it could not start") == true, "\(records.all)")

        // One that hangs is killed at its timeout, with what it started; a breach meanwhile does not start a second one
        // beside it, but another queue's breach is paged: its organisation is not kept waiting on this one.
        let hanging = notifier(try script("hang", "sleep 40 &\necho $! > \(folder)/started-$3\nwait"), timeout: .seconds(5))
        let bayti = QueueName(rawValue: "bayti")!
        let began = ContinuousClock.now
        async let first: Void = hanging.notify(.national, .immediate, count: 1)
        #expect(try await eventually(within: 15) { FileManager.default.fileExists(atPath: folder + "/started-national") }, "the first command started")
        await hanging.notify(.national, .immediate, count: 2)
        #expect(records.all.last == "the SLA notify command failed relay.error=it is still running from an earlier breach; not started again relay.queue=national relay.urgency=immediate")
        async let other: Void = hanging.notify(bayti, .immediate, count: 1)
        await first
        await other
        // Foundation hears of the command's end only once all it started have gone too: killing the command alone waits 40 s.
        #expect(ContinuousClock.now - began < .seconds(20), "killed at its 5 s timeout, not when what it started ended on its own")
        #expect(records.all.suffix(2).sorted() == ["bayti", "national"].map {
            "the SLA notify command failed relay.error=it ran longer than 5.0 seconds and was killed relay.queue=\($0) relay.urgency=immediate"
        }, "\(records.all)")
        for queue in ["national", "bayti"] {
            let started = try String(contentsOfFile: folder + "/started-" + queue, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            // Gone, or a zombie waiting for init to reap it.
            let running = { (try? String(contentsOfFile: "/proc/\(started)/stat", encoding: .utf8)).map { !$0.contains(") Z ") } ?? false }
            #expect(try await eventually(within: 5) { !running() }, "the script's own child \(started) outlived the kill")
        }
        #expect(failures() == "amane_sla_notify_failures_total 5")
    }
}
