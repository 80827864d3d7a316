import Foundation
@testable import RelayFormat
import Testing

/// An open-direction test vector: a header of `key: value` lines, a blank line, then the envelope in base64.
struct Vector {
    enum Outcome: String, CaseIterable {
        case success
        case malformed
        case unsupportedVersion = "unsupported version"
        case unsupportedSuite = "unsupported suite"
        case openFailure = "open failure"
    }

    static let headerKeys = ["expect", "suite", "key", "kind", "object", "case", "payload-sha256"]

    var name: String
    var expect: Outcome
    var suite: SealingSuite
    var key: [UInt8]
    var kind: ObjectKind
    var object: UUID
    /// The case the reader found a follow-up, note or reply in.
    var caseID: UUID?
    var payloadSHA256: String
    var envelope: [UInt8]

    init(name: String, expect: Outcome, key: SealingPrivateKey, kind: ObjectKind, object: UUID, caseID: UUID?, payload: [UInt8], envelope: [UInt8]) {
        self.name = name
        self.expect = expect
        self.suite = key.suite
        self.key = key.rawRepresentation
        self.kind = kind
        self.object = object
        self.caseID = caseID
        self.payloadSHA256 = Digest.hex(Digest.sha256(payload))
        self.envelope = envelope
    }

    struct ParseError: Error, CustomStringConvertible { let description: String }

    init(name: String, text: String) throws {
        self.name = name
        let parts = text.components(separatedBy: "\n\n")
        guard parts.count == 2 else { throw ParseError(description: "\(name): expected a header, a blank line and the envelope") }
        var fields: [String: String] = [:]
        for line in parts[0].split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { throw ParseError(description: "\(name): bad line \(line)") }
            let key = String(line[..<colon])
            guard Self.headerKeys.contains(key) else { throw ParseError(description: "\(name): unknown header key '\(key)'") }
            fields[key] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        func field(_ key: String) throws -> String {
            guard let value = fields[key] else { throw ParseError(description: "\(name): missing \(key)") }
            return value
        }
        guard let expect = Outcome(rawValue: try field("expect")) else { throw ParseError(description: "\(name): unknown outcome") }
        guard let suite = SealingSuite(name: try field("suite")), let key = Data(base64Encoded: try field("key")),
              let kind = ObjectKind(name: try field("kind")), let object = UUID(uuidString: try field("object")),
              let envelope = Data(base64Encoded: parts[1].trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw ParseError(description: "\(name): a field does not parse")
        }
        self.expect = expect
        self.suite = suite
        self.key = Array(key)
        self.kind = kind
        self.object = object
        if let text = fields["case"] {
            guard let caseID = UUID(uuidString: text) else { throw ParseError(description: "\(name): the case does not parse") }
            self.caseID = caseID
        }
        self.payloadSHA256 = try field("payload-sha256")
        self.envelope = Array(envelope)
    }

    var text: String {
        """
        expect: \(expect.rawValue)
        suite: \(suite)
        key: \(Data(key).base64EncodedString())
        kind: \(kind.name)
        object: \(object.uuidString)\(caseID.map { "\ncase: \($0.uuidString)" } ?? "")
        payload-sha256: \(payloadSHA256)

        \(Data(envelope).base64EncodedString())

        """
    }

    /// What opening did: one of the outcomes a vector may expect, or what none may (a payload that is not the
    /// one sealed, as a dropped or reordered chunk would give if the stream's checks were gone; another error).
    enum Opened: Equatable {
        case outcome(Outcome)
        case wrongPayload
        case otherError(FormatError.Code)
    }

    /// What opening actually does.
    func opened() throws -> Opened {
        let privateKey = try SealingPrivateKey(suite: suite, rawRepresentation: key)
        do {
            let payload = try Envelope.open(envelope, with: privateKey, kind: kind, objectID: object, caseID: caseID)
            return Digest.hex(Digest.sha256(payload)) == payloadSHA256 ? .outcome(.success) : .wrongPayload
        } catch {
            switch error.code {
            case .malformed: return .outcome(.malformed)
            case .unsupportedVersion: return .outcome(.unsupportedVersion)
            case .unsupportedSuite: return .outcome(.unsupportedSuite)
            case .openFailed: return .outcome(.openFailure)
            default: return .otherError(error.code)
            }
        }
    }
}

/// Builds the vector set from fresh keys; each vector is named for what it breaks.
enum VectorGenerator {
    static func generate() throws -> [Vector] {
        let xwing = SealingPrivateKey.generate(suite: .xwingAESGCM)
        let x25519 = SealingPrivateKey.generate(suite: .x25519ChaChaPoly)
        let object = UUID.init(uuidString: "01937f5e-3c2a-7b1d-9e4f-a1b2c3d4e5f6")!
        let small = Array("Un garçon de 14 ans raconte ce qui s'est passé. / طفل يحكي ما حدث".utf8)
        let large = (0..<(2 * 65536 + 1)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        let smallXWing = try Envelope.seal(small, to: xwing.publicKey, kind: .disclosure, objectID: object)
        let smallX25519 = try Envelope.seal(small, to: x25519.publicKey, kind: .disclosure, objectID: object)
        let largeX25519 = try Envelope.seal(large, to: x25519.publicKey, kind: .disclosure, objectID: object)
        let sharedXWing = try SharedSealingContext(to: xwing.publicKey)
        let sharedX25519 = try SharedSealingContext(to: x25519.publicKey)
        let secondObject = UUID(uuidString: "01937f5e-3c2a-7b1d-9e4f-a1b2c3d4e5f7")!
        let sharedSmallXWing = try Envelope.seal(small, using: sharedXWing, kind: .disclosure, objectID: object)
        let sharedSmallX25519 = try Envelope.seal(small, using: sharedX25519, kind: .disclosure, objectID: object)
        let sharedSecondX25519 = try Envelope.seal(small, using: sharedX25519, kind: .disclosure, objectID: secondObject)
        let headerLength = try EnvelopeHeader.inspect(smallX25519).encodedLength
        let chunk = 65536 + 16

        func vector(_ name: String, _ expect: Vector.Outcome, _ envelope: [UInt8], key: SealingPrivateKey = x25519,
                    kind: ObjectKind = .disclosure, object: UUID = object, caseID: UUID? = nil, payload: [UInt8] = small) -> Vector {
            Vector(name: name, expect: expect, key: key, kind: kind, object: object, caseID: caseID, payload: payload, envelope: envelope)
        }
        func flipped(_ bytes: [UInt8], at index: Int) -> [UInt8] {
            var copy = bytes
            copy[index] ^= 0x01
            return copy
        }
        func replacing(_ bytes: [UInt8], at offset: Int, with new: [UInt8]) -> [UInt8] {
            var copy = bytes
            copy.replaceSubrange(offset ..< offset + new.count, with: new)
            return copy
        }
        let otherObject = UUID(uuidString: "01937f5e-3c2a-7b1d-9e4f-000000000000")!
        let otherEpoch = SealingPrivateKey.generate(suite: .x25519ChaChaPoly)
        let sealedToOtherEpoch = try Envelope.seal(small, to: otherEpoch.publicKey, kind: .disclosure, objectID: object)
        let body = largeX25519[headerLength...]
        let caseA = UUID(uuidString: "01937f5e-0000-7000-8000-00000000000a")!
        let caseB = UUID(uuidString: "01937f5e-0000-7000-8000-00000000000b")!
        let note = try Envelope.seal(small, to: x25519.publicKey, kind: .note, objectID: secondObject, caseID: caseA)
        let sharedFollowup = try Envelope.seal(small, using: sharedX25519, kind: .followup, objectID: otherObject, caseID: caseA)
        let chunks = stride(from: body.startIndex, to: body.endIndex, by: chunk).map { body[$0 ..< min($0 + chunk, body.endIndex)] }

        return [
            vector("success_xwing_aes_gcm", .success, smallXWing, key: xwing),
            vector("success_x25519_chachapoly", .success, smallX25519),
            vector("success_three_chunks", .success, largeX25519, payload: large),
            vector("truncated_header", .malformed, Array(smallX25519.prefix(headerLength - 10))),
            vector("truncated_final_chunk", .openFailure, Array(smallX25519.dropLast(1))),
            vector("header_bit_flip_encapsulated_key", .openFailure, flipped(smallX25519, at: 48)),
            vector("sealed_key_bit_flip", .openFailure, flipped(smallX25519, at: headerLength - 5)),
            vector("chunk_tag_bit_flip", .openFailure, flipped(smallX25519, at: smallX25519.count - 1)),
            vector("dropped_last_chunk", .openFailure, Array(largeX25519.dropLast(chunks[2].count)), payload: large),
            vector("reordered_chunks", .openFailure, Array(largeX25519[..<headerLength]) + chunks[1] + chunks[0] + chunks[2], payload: large),
            vector("swapped_object_id", .openFailure, replacing(smallX25519, at: 28, with: otherObject.bytes), object: otherObject),
            vector("swapped_kind", .openFailure, replacing(smallX25519, at: 5, with: [ObjectKind.reply.rawValue]), kind: .reply, caseID: object),
            vector("success_note_bound_to_its_case", .success, note, kind: .note, object: secondObject, caseID: caseA),
            vector("note_moved_to_another_case", .openFailure, note, kind: .note, object: secondObject, caseID: caseB),
            vector("note_opened_without_its_case", .malformed, note, kind: .note, object: secondObject),
            vector("success_shared_context_followup_bound_to_its_case", .success, sharedFollowup, kind: .followup, object: otherObject, caseID: caseA),
            vector("shared_context_followup_moved_to_another_case", .openFailure, sharedFollowup, kind: .followup, object: otherObject, caseID: caseB),
            vector("wrong_epoch", .openFailure, sealedToOtherEpoch),
            vector("trailing_bytes", .openFailure, smallX25519 + [0]),
            vector("oversized_length", .malformed, replacing(smallX25519, at: 44, with: [0xff, 0xff])),
            vector("unknown_version", .unsupportedVersion, replacing(smallX25519, at: 4, with: [3])),
            vector("success_shared_context_xwing_aes_gcm", .success, sharedSmallXWing, key: xwing),
            vector("success_shared_context_x25519_chachapoly", .success, sharedSmallX25519),
            vector("shared_context_wrapped_key_of_another_object", .openFailure,
                   replacing(sharedSecondX25519, at: headerLength - 48, with: Array(sharedSmallX25519[headerLength - 48 ..< headerLength])),
                   object: secondObject),
            vector("shared_context_relabelled_single_shot", .openFailure, replacing(sharedSmallX25519, at: 4, with: [1])),
            vector("single_shot_relabelled_shared_context", .openFailure, replacing(smallX25519, at: 4, with: [2])),
            vector("unknown_suite", .unsupportedSuite, replacing(smallX25519, at: 10, with: [0x00, 0x01])),
            vector("unknown_kind", .malformed, replacing(smallX25519, at: 5, with: [0x09])),
            vector("bad_magic", .malformed, replacing(smallX25519, at: 0, with: Array("AGE!".utf8))),
            vector("empty", .malformed, []),
        ]
    }
}

@Suite struct VectorTests {
    static var directory: URL { Bundle.module.resourceURL!.appendingPathComponent("Vectors") }

    static func committed() throws -> [Vector] {
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".txt") }.sorted()
        return try files.map { file in
            try Vector(name: String(file.dropLast(4)), text: String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8))
        }
    }

    @Test func everyCommittedVectorOpensAsItsHeaderSays() throws {
        let vectors = try Self.committed()
        #expect(Set(vectors.map(\.name)) == Set(try VectorGenerator.generate().map(\.name)), "the committed set is stale; regenerate it")
        for vector in vectors {
            #expect(try vector.opened() == .outcome(vector.expect), "\(vector.name)")
        }
    }

    /// Freshly generated vectors must behave as named; with AMANE_REGENERATE_VECTORS=1 they replace the committed files.
    @Test func generatedVectorsBehaveAsNamed() throws {
        let vectors = try VectorGenerator.generate()
        for vector in vectors {
            #expect(try vector.opened() == .outcome(vector.expect), "\(vector.name)")
            let reparsed = try Vector(name: vector.name, text: vector.text)
            #expect(reparsed.envelope == vector.envelope && reparsed.expect == vector.expect)
        }
        if ProcessInfo.processInfo.environment["AMANE_REGENERATE_VECTORS"] == "1" {
            let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Vectors")
            for vector in vectors {
                try vector.text.write(to: source.appendingPathComponent(vector.name + ".txt"), atomically: true, encoding: .utf8)
            }
        }
    }

    @Test func runnerRejectsUnknownHeaderKeysAndOutcomes() throws {
        let good = try VectorGenerator.generate()[1].text
        #expect(throws: Vector.ParseError.self) { try Vector(name: "x", text: "colour: blue\n" + good) }
        #expect(throws: Vector.ParseError.self) {
            try Vector(name: "x", text: good.replacingOccurrences(of: "expect: success", with: "expect: maybe"))
        }
    }
}
