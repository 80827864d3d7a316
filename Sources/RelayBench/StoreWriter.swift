import Foundation
import RelayCore
import RelayFormat
import RelayStore

/// `amane-relay-bench store-writer DIR`: writes disclosures through group commit from 16 tasks and prints
/// `ACK <id>` for each one only after its commit returned. The crash-safety test kills it at random.
enum StoreWriter {
    static func run(directory: String) async throws {
        let db = try RelayDatabase(directory: directory)
        let writer = Task { await db.runWriter() }
        guard let gateway = try await db.principal(named: PrincipalName(rawValue: "crash-gateway")!),
              let epoch = try db.currentEpoch(queue: .national) else {
            throw StoreError(.notFound, "prepare the database with a gateway named crash-gateway and an epoch first")
        }
        let key = try SealingPublicKey(text: epoch.publicKey)
        let labels = DisclosureLabels(urgency: .high, category: "sexual_abuse", language: "fr", channel: "kiosk")
        let payload = [UInt8](repeating: 0x42, count: 2048)
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<16 {
                group.addTask {
                    while true {
                        let id = UUID.v7()
                        guard let envelope = try? Envelope.seal(payload, to: key, kind: .disclosure, objectID: id) else { return }
                        let request = IntakeRequest(gateway: gateway, labels: labels, id: id, envelope: envelope,
                                                    idempotencyKey: UUID().uuidString, requestHash: Digest.sha256(id.bytes))
                        guard let result = try? await db.intake(request) else { continue }
                        FileHandle.standardOutput.write(Data("ACK \(result.id)\n".utf8))
                    }
                }
            }
        }
        writer.cancel()
    }
}
