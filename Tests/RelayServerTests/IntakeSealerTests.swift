import Foundation
import RelayCore
import RelayFormat
@testable import RelayServer
import Testing

@Suite struct IntakeSealerTests {
    static func encapsulatedKey(_ envelope: [UInt8]) throws -> [UInt8] {
        let header = try EnvelopeHeader.inspect(envelope)
        return Array(envelope[46 ..< header.encodedLength - 50])
    }

    @Test func aSharedContextSealsForOneWindowThenIsDropped() async throws {
        let epoch = SealingPrivateKey.generate()
        let sealer = IntakeSealer(window: .seconds(10))
        let ids = [UUID.v7(), UUID.v7()]
        let first = try ids.map { try sealer.seal(Array("à la fenêtre / نافذة".utf8), to: epoch.publicKey, from: "gateway-a", kind: .disclosure, objectID: $0) }
        #expect(try first.allSatisfy { try EnvelopeHeader.inspect($0).keySealing == .sharedContext })
        #expect(try Self.encapsulatedKey(first[0]) == Self.encapsulatedKey(first[1]), "one encapsulation within the window")
        for (id, envelope) in zip(ids, first) {
            #expect(try Envelope.open(envelope, with: epoch, kind: .disclosure, objectID: id) == Array("à la fenêtre / نافذة".utf8))
        }
        #expect(sealer.liveContexts == 1)
        let otherGateway = try sealer.seal([9], to: epoch.publicKey, from: "gateway-b", kind: .disclosure, objectID: UUID.v7())
        #expect(try Self.encapsulatedKey(otherGateway) != Self.encapsulatedKey(first[0]), "gateways never share a context")
        #expect(sealer.liveContexts == 2)

        // Dropped by a timer when its window ends, even with no more intake (later only if the machine is busy).
        let deadline = ContinuousClock.now + .seconds(40)
        while sealer.liveContexts > 0 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(sealer.liveContexts == 0, "the context is dropped when its window ends, even with no more intake")
        let later = try sealer.seal([1, 2, 3], to: epoch.publicKey, from: "gateway-a", kind: .followup, objectID: ids[0], caseID: ids[1])
        #expect(try Self.encapsulatedKey(later) != Self.encapsulatedKey(first[0]), "a new window, a new context")
        #expect(try Envelope.open(later, with: epoch, kind: .followup, objectID: ids[0], caseID: ids[1]) == [1, 2, 3])
    }

    @Test func anExpiredContextIsNeverHandedOutEvenBeforeItsTimerRuns() throws {
        let epoch = SealingPrivateKey.generate()
        let sealer = IntakeSealer(window: .milliseconds(50))
        let first = try sealer.context(for: epoch.publicKey, from: "gateway-a")
        Thread.sleep(forTimeInterval: 0.12) // blocks this thread: no chance for the timer to matter
        let second = try sealer.context(for: epoch.publicKey, from: "gateway-a")
        #expect(first.description != "" && !first.description.contains("sender"))
        let a = try Envelope.seal([1], using: first, kind: .note, objectID: UUID.v7(), caseID: UUID.v7())
        let b = try Envelope.seal([1], using: second, kind: .note, objectID: UUID.v7(), caseID: UUID.v7())
        #expect(try Self.encapsulatedKey(a) != Self.encapsulatedKey(b))
    }

    @Test func aZeroWindowSealsEachObjectAlone() throws {
        let epoch = SealingPrivateKey.generate()
        let sealer = IntakeSealer(window: .zero)
        let envelopes = try (0..<2).map { _ in try sealer.seal([7], to: epoch.publicKey, from: "gateway-a", kind: .disclosure, objectID: UUID.v7()) }
        #expect(try envelopes.allSatisfy { try EnvelopeHeader.inspect($0).keySealing == .singleShot })
        #expect(try Self.encapsulatedKey(envelopes[0]) != Self.encapsulatedKey(envelopes[1]))
        #expect(sealer.liveContexts == 0)
    }
}
