import Foundation
import RelayCore
import RelayFormat
import RelayStore
import Testing

@Suite struct CrashSafetyTests {
    static var writerBinary: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("amane-relay-bench").path
    }

    /// A child process writes through group commit and prints each acknowledged id; it is killed with
    /// SIGKILL at a random moment, 20 times. Every acknowledged id must survive, in a sound file.
    @Test func killedTwentyTimesMidWriteNothingAcknowledgedIsLost() async throws {
        #expect(FileManager.default.isExecutableFile(atPath: Self.writerBinary), "build amane-relay-bench first")
        let fixture = try await StoreFixture()
        _ = try await fixture.enroll("crash-gateway", .gateway, SealingPrivateKey.generate())
        try await fixture.reopen()
        try fixture.db.close()

        var acknowledged: Set<String> = []
        for round in 0..<20 {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Self.writerBinary)
            process.arguments = ["store-writer", fixture.directory]
            let output = Pipe()
            process.standardOutput = output
            process.standardError = FileHandle.nullDevice
            try process.run()
            try await Task.sleep(for: .milliseconds(Int.random(in: 150...700)))
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            #expect(process.terminationReason == .uncaughtSignal, "round \(round): the writer stopped by itself")
            let lines = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).split(separator: "\n")
            acknowledged.formUnion(lines.filter { $0.hasPrefix("ACK ") }.map { String($0.dropFirst(4)) })

            let db = try RelayDatabase(directory: fixture.directory)
            #expect(try db.integrityCheck() == "ok", "round \(round)")
            #expect(try db.verifyAudit() > 0, "round \(round)")
            var stored: Set<String> = []
            var cursor: QueueCursor?
            repeat {
                let page = try await db.listQueue(QueueFilter(), after: cursor, limit: 500)
                stored.formUnion(page.cases.map(\.id))
                cursor = page.next
            } while cursor != nil
            let lost = acknowledged.subtracting(stored)
            #expect(lost.isEmpty, "round \(round): \(lost.count) acknowledged disclosures lost")
            try db.close()
        }
        #expect(acknowledged.count > 100, "the writer acknowledged too little to prove anything")
    }
}
