import Crypto
import Foundation
@testable import RelayFormat
import Testing

@Suite struct EnvelopeRoundTripTests {
    static let sizes = [0, 1, 64 * 1024 - 1, 64 * 1024, 64 * 1024 + 1, 5 * 1024 * 1024]

    @Test(arguments: SealingSuite.allCases, sizes)
    func sealThenOpenGivesThePayloadBack(suite: SealingSuite, size: Int) throws {
        let key = SealingPrivateKey.generate(suite: suite)
        let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let objectID = UUID()

        let envelope = try Envelope.seal(payload, to: key.publicKey, kind: .disclosure, objectID: objectID)
        let opened = try Envelope.open(envelope, with: key, kind: .disclosure, objectID: objectID)

        #expect(opened == payload)
        let header = try EnvelopeHeader.inspect(envelope)
        #expect(header.suite == suite && header.kind == .disclosure && header.objectID == objectID && header.keyID == key.id)
        let chunks = max(1, (size + 65535) / 65536)
        #expect(envelope.count == header.encodedLength + size + 16 * chunks)
    }

    @Test(arguments: SealingSuite.allCases)
    func streamingInOddPiecesMatchesOneShot(suite: SealingSuite) throws {
        let key = SealingPrivateKey.generate(suite: suite)
        let payload = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        let objectID = UUID(), caseID = UUID()
        var sealer = try EnvelopeSealer(to: key.publicKey, kind: .note, objectID: objectID, caseID: caseID)
        var envelope = sealer.header
        var rest = payload[...]
        var piece = 1
        while !rest.isEmpty {
            envelope += try sealer.update(rest.prefix(piece))
            rest = rest.dropFirst(piece)
            piece = piece * 3 + 1
        }
        envelope += try sealer.finish()

        var opener = EnvelopeOpener(key: key, kind: .note, objectID: objectID, caseID: caseID)
        var opened: [UInt8] = []
        var index = 0
        while index < envelope.count {
            let end = min(envelope.count, index + 7777)
            opened += try opener.update(envelope[index..<end])
            index = end
        }
        opened += try opener.finish()
        #expect(opened == payload)
    }

    @Test(arguments: SealingSuite.allCases)
    func openingWithAnotherKeyFails(suite: SealingSuite) throws {
        let key = SealingPrivateKey.generate(suite: suite)
        let other = SealingPrivateKey.generate(suite: suite)
        let id = UUID()
        let caseID = UUID()
        let envelope = try Envelope.seal(Array("secret".utf8), to: key.publicKey, kind: .reply, objectID: id, caseID: caseID)
        #expect(throws: FormatError(.openFailed)) { try Envelope.open(envelope, with: other, kind: .reply, objectID: id, caseID: caseID) }
    }

    @Test(arguments: SealingSuite.allCases)
    func everySingleBitFlipFailsToOpen(suite: SealingSuite) throws {
        let key = SealingPrivateKey.generate(suite: suite)
        let id = UUID()
        let envelope = try Envelope.seal(Array("a short disclosure".utf8), to: key.publicKey, kind: .disclosure, objectID: id)
        #expect(Self.bitFlipsThatOpen(envelope, key: key, id: id) == 0)
    }

    /// How many of the envelope's single-bit variants still open.
    static func bitFlipsThatOpen(_ envelope: [UInt8], key: SealingPrivateKey, id: UUID) -> Int {
        var opened = 0
        for bit in 0..<(envelope.count * 8) {
            var flipped = envelope
            flipped[bit / 8] ^= 1 << UInt8(bit % 8)
            if (try? Envelope.open(flipped, with: key, kind: .disclosure, objectID: id)) != nil { opened += 1 }
        }
        return opened
    }

    @Test(arguments: SealingSuite.allCases)
    func aSharedContextSealsManyObjectsThatEachOpenAlone(suite: SealingSuite) throws {
        let key = SealingPrivateKey.generate(suite: suite)
        let context = try SharedSealingContext(to: key.publicKey)
        let objects = (0..<3).map { index in (UUID(), Array("disclosure \(index) / بلاغ".utf8)) }
        let envelopes = try objects.map { try Envelope.seal($0.1, using: context, kind: .disclosure, objectID: $0.0) }

        let headers = try envelopes.map(EnvelopeHeader.inspect)
        #expect(headers.allSatisfy { $0.keySealing == .sharedContext && $0.keyID == key.id && $0.suite == suite })
        for ((id, payload), envelope) in zip(objects, envelopes) {
            #expect(try Envelope.open(envelope, with: key, kind: .disclosure, objectID: id) == payload)
        }
        let sealedKeyRange = headers[0].encodedLength - 48 ..< headers[0].encodedLength
        let encapsulatedKey = 44 + 2 ..< sealedKeyRange.lowerBound - 2
        #expect(envelopes.allSatisfy { Array($0[encapsulatedKey]) == Array(envelopes[0][encapsulatedKey]) }, "one encapsulation for all")

        var swapped = envelopes[1]
        swapped.replaceSubrange(sealedKeyRange, with: envelopes[0][sealedKeyRange])
        #expect(throws: FormatError(.openFailed)) { try Envelope.open(swapped, with: key, kind: .disclosure, objectID: objects[1].0) }
        #expect(throws: FormatError(.openFailed)) { try Envelope.open(envelopes[0], with: key, kind: .disclosure, objectID: objects[1].0) }
        #expect(throws: FormatError(.openFailed)) { try Envelope.open(envelopes[0], with: key, kind: .note, objectID: objects[0].0) }
        var relabelled = envelopes[0]
        relabelled[4] = KeySealing.singleShot.rawValue
        #expect(throws: FormatError(.openFailed)) { try Envelope.open(relabelled, with: key, kind: .disclosure, objectID: objects[0].0) }
        let other = SealingPrivateKey.generate(suite: suite)
        #expect(throws: FormatError(.openFailed)) { try Envelope.open(envelopes[0], with: other, kind: .disclosure, objectID: objects[0].0) }
    }

    /// Every object gets its own wrapping key: it depends on the version, kind, key, object id and case, so
    /// the fixed nonce never meets the same key twice, and one object's wrapped key opens under no other's.
    @Test(arguments: SealingSuite.allCases)
    func wrappingKeysAreSeparatedByEveryFieldOfTheBoundData(suite: SealingSuite) throws {
        let key = SealingPrivateKey.generate(suite: suite)
        let context = try SharedSealingContext(to: key.publicKey)
        let export: ([UInt8]) throws -> SymmetricKey = { try context.sender.exportSecret(context: $0, outputByteCount: 32) }
        let id = UUID(), otherID = UUID()
        let followup = EnvelopeHeader.fixedPart(keySealing: .sharedContext, suite: suite, kind: .followup, keyID: key.id, objectID: id)
        let boundParts = [
            EnvelopeHeader.fixedPart(keySealing: .sharedContext, suite: suite, kind: .disclosure, keyID: key.id, objectID: id),
            EnvelopeHeader.fixedPart(keySealing: .sharedContext, suite: suite, kind: .disclosure, keyID: key.id, objectID: otherID),
            try EnvelopeHeader.associatedData(fixed: followup, kind: .followup, caseID: id),
            try EnvelopeHeader.associatedData(fixed: followup, kind: .followup, caseID: otherID),
            EnvelopeHeader.fixedPart(keySealing: .singleShot, suite: suite, kind: .disclosure, keyID: key.id, objectID: id),
        ]
        let wrappingKeys = try boundParts.map { try ContentKeyWrap.wrappingKey(exporter: export, bound: $0) }
        let raw = wrappingKeys.map { $0.withUnsafeBytes { Array($0) } }
        #expect(Set(raw).count == boundParts.count, "one wrapping key per bound part")

        let contentKey = SymmetricKey(size: .bits256)
        let sealed = try ContentKeyWrap.seal(contentKey, under: wrappingKeys[0], suite: suite, bound: boundParts[0])
        let opened = try ContentKeyWrap.open(sealed, under: wrappingKeys[0], suite: suite, bound: boundParts[0])
        #expect(opened.withUnsafeBytes { Array($0) } == contentKey.withUnsafeBytes { Array($0) })
        for index in 1..<boundParts.count {
            #expect(throws: (any Error).self) { try ContentKeyWrap.open(sealed, under: wrappingKeys[index], suite: suite, bound: boundParts[0]) }
        }
    }

    @Test(arguments: SealingSuite.allCases)
    func everySingleBitFlipOfASharedContextEnvelopeFailsToOpen(suite: SealingSuite) throws {
        let key = SealingPrivateKey.generate(suite: suite)
        let id = UUID()
        let envelope = try Envelope.seal(Array("a short disclosure".utf8), using: try SharedSealingContext(to: key.publicKey),
                                         kind: .disclosure, objectID: id)
        #expect(Self.bitFlipsThatOpen(envelope, key: key, id: id) == 0)
    }

    /// A note, reply or follow-up is bound to its case, in both formats: moved to another case, it no longer opens.
    @Test(arguments: SealingSuite.allCases, [KeySealing.singleShot, .sharedContext])
    func movingAnObjectToAnotherCaseOrKindFails(suite: SealingSuite, keySealing: KeySealing) throws {
        let key = SealingPrivateKey.generate(suite: suite)
        let id = UUID(), caseA = UUID(), caseB = UUID()
        for kind in ObjectKind.allCases where kind.belongsToCase {
            let envelope = switch keySealing {
            case .singleShot: try Envelope.seal(Array("x".utf8), to: key.publicKey, kind: kind, objectID: id, caseID: caseA)
            case .sharedContext: try Envelope.seal(Array("x".utf8), using: SharedSealingContext(to: key.publicKey), kind: kind, objectID: id, caseID: caseA)
            }
            #expect(try Envelope.open(envelope, with: key, kind: kind, objectID: id, caseID: caseA) == Array("x".utf8))
            #expect(throws: FormatError(.openFailed), "\(kind.name) in another case") { try Envelope.open(envelope, with: key, kind: kind, objectID: id, caseID: caseB) }
            #expect(throws: FormatError(.openFailed)) { try Envelope.open(envelope, with: key, kind: kind, objectID: UUID(), caseID: caseA) }
            let otherKind: ObjectKind = kind == .note ? .reply : .note
            #expect(throws: FormatError(.openFailed)) { try Envelope.open(envelope, with: key, kind: otherKind, objectID: id, caseID: caseA) }
            #expect(throws: FormatError(.malformed), "opened without its case") { try Envelope.open(envelope, with: key, kind: kind, objectID: id) }
            #expect(throws: FormatError(.malformed), "sealed without its case") { try Envelope.seal([1], to: key.publicKey, kind: kind, objectID: id) }
        }
        #expect(throws: FormatError(.malformed), "a disclosure's object id is its case") {
            try Envelope.seal([1], to: key.publicKey, kind: .disclosure, objectID: id, caseID: caseA)
        }
    }

    @Test func errorDescriptionsHoldNoSecretBytes() throws {
        let key = SealingPrivateKey.generate(suite: .x25519ChaChaPoly)
        let secretHex = key.rawRepresentation.prefix(8).map { String(format: "%02x", $0) }.joined()
        let secretBase64 = Data(key.rawRepresentation).base64EncodedString().prefix(12)
        let caseID = UUID()
        let envelope = try Envelope.seal(Array("canary-7f3a".utf8), to: key.publicKey, kind: .note, objectID: UUID(), caseID: caseID)
        do {
            _ = try Envelope.open(envelope, with: key, kind: .note, objectID: UUID(), caseID: caseID)
            Issue.record("opened with the wrong object id")
        } catch {
            let text = "\(error) \(String(reflecting: error))"
            #expect(!text.contains("canary") && !text.contains(secretHex) && !text.contains(secretBase64))
        }
        var dumped = ""
        dump(key, to: &dumped)
        #expect(!dumped.contains("secret"), "\(dumped)")
        for text in [String(describing: key), String(reflecting: key), dumped] {
            #expect(!text.contains(secretHex) && !text.contains(secretBase64), "\(text)")
        }
    }
}

@Suite struct StreamingMemoryTests {
    struct StreamReport: Decodable {
        var bytes: Int
        var largestSealedPiece: Int
        var roundTripIntact: Bool
        var peakResidentGrowthBytes: Int
    }

    /// 100 MiB flows from a generator through the sealer straight into the opener, in a process of its own
    /// so that no other test shares its peak. Had either side buffered the payload, the peak resident size
    /// would grow by at least 100 MiB.
    @Test func hundredMebibytesSealAndOpenInBoundedMemory() throws {
        let bench = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("amane-relay-bench")
        let process = Process()
        process.executableURL = bench
        process.arguments = ["stream", "100"]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        let report = try JSONDecoder().decode(StreamReport.self, from: data)

        #expect(report.bytes == 100 * 1024 * 1024)
        #expect(report.roundTripIntact)
        #expect(report.largestSealedPiece <= 64 * 1024 + 16)
        #expect(report.peakResidentGrowthBytes < 32 * 1024 * 1024, "peak resident memory grew by \(report.peakResidentGrowthBytes / 1_048_576) MiB")
    }
}
