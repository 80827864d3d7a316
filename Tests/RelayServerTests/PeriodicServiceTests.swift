import Logging
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
