import Foundation
import RelayFormat
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
        let objectID = UUID()
        var sealer = try EnvelopeSealer(to: key.publicKey, kind: .note, objectID: objectID)
        var envelope = sealer.header
        var rest = payload[...]
        var piece = 1
        while !rest.isEmpty {
            envelope += try sealer.update(rest.prefix(piece))
            rest = rest.dropFirst(piece)
            piece = piece * 3 + 1
        }
        envelope += try sealer.finish()

        var opener = EnvelopeOpener(key: key, kind: .note, objectID: objectID)
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
        let envelope = try Envelope.seal(Array("secret".utf8), to: key.publicKey, kind: .reply, objectID: id)
        #expect(throws: FormatError(.openFailed)) { try Envelope.open(envelope, with: other, kind: .reply, objectID: id) }
    }

    @Test(arguments: SealingSuite.allCases)
    func everySingleBitFlipFailsToOpen(suite: SealingSuite) throws {
        let key = SealingPrivateKey.generate(suite: suite)
        let id = UUID()
        let envelope = try Envelope.seal(Array("a short disclosure".utf8), to: key.publicKey, kind: .disclosure, objectID: id)
        var opened = 0
        for bit in 0..<(envelope.count * 8) {
            var flipped = envelope
            flipped[bit / 8] ^= 1 << UInt8(bit % 8)
            if (try? Envelope.open(flipped, with: key, kind: .disclosure, objectID: id)) != nil { opened += 1 }
        }
        #expect(opened == 0)
    }

    @Test func movingAnObjectToAnotherCaseOrKindFails() throws {
        let key = SealingPrivateKey.generate()
        let id = UUID()
        let envelope = try Envelope.seal(Array("x".utf8), to: key.publicKey, kind: .note, objectID: id)
        #expect(throws: FormatError(.openFailed)) { try Envelope.open(envelope, with: key, kind: .note, objectID: UUID()) }
        #expect(throws: FormatError(.openFailed)) { try Envelope.open(envelope, with: key, kind: .reply, objectID: id) }
    }

    @Test func errorDescriptionsHoldNoSecretBytes() throws {
        let key = SealingPrivateKey.generate(suite: .x25519ChaChaPoly)
        let secretHex = key.publicKey.rawRepresentation.prefix(8).map { String(format: "%02x", $0) }.joined()
        let envelope = try Envelope.seal(Array("canary-7f3a".utf8), to: key.publicKey, kind: .note, objectID: UUID())
        do {
            _ = try Envelope.open(envelope, with: key, kind: .note, objectID: UUID())
            Issue.record("opened with the wrong object id")
        } catch {
            let text = "\(error) \(String(reflecting: error))"
            #expect(!text.contains("canary") && !text.contains(secretHex))
        }
        #expect(!String(describing: key).contains(secretHex))
    }
}

@Suite struct StreamingMemoryTests {
    /// 100 MiB flows from a generator through the sealer straight into the opener. If either buffered the
    /// payload, the peak resident size would grow by at least 100 MiB.
    @Test func hundredMebibytesSealAndOpenInBoundedMemory() throws {
        let total = 100 * 1024 * 1024
        let key = SealingPrivateKey.generate()
        let id = UUID()
        var block = (0..<(48 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 131) }
        ResidentMemory.resetPeak()
        let before = ResidentMemory.peakBytes()

        var sealer = try EnvelopeSealer(to: key.publicKey, kind: .disclosure, objectID: id)
        var opener = EnvelopeOpener(key: key, kind: .disclosure, objectID: id)
        var plainIn = IncrementalSHA256()
        var plainOut = IncrementalSHA256()
        var largestPiece = try opener.update(sealer.header).count
        var fed = 0
        while fed < total {
            block[0] = UInt8(truncatingIfNeeded: fed >> 16)
            let piece = block.prefix(total - fed)
            plainIn.update(piece)
            let sealed = try sealer.update(piece)
            largestPiece = max(largestPiece, sealed.count)
            plainOut.update(try opener.update(sealed))
            fed += piece.count
        }
        let last = try sealer.finish()
        plainOut.update(try opener.update(last))
        plainOut.update(try opener.finish())

        #expect(plainIn.finalize() == plainOut.finalize())
        #expect(largestPiece <= 64 * 1024 + 16)
        let growth = ResidentMemory.peakBytes() - before
        #expect(growth < 80 * 1024 * 1024, "peak resident memory grew by \(growth / 1_048_576) MiB")
    }
}
