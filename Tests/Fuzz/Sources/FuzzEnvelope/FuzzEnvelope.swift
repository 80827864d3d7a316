import Foundation
import RelayFormat

// The keys and object id of the disclosure vectors in Tests/RelayFormatTests/Vectors, so that the seeds open.
let objectID = UUID(uuidString: "01937F5E-3C2A-7B1D-9E4F-A1B2C3D4E5F6")!
let keys: [SealingPrivateKey] = [
    try! SealingPrivateKey(suite: .x25519ChaChaPoly,
                           rawRepresentation: Data(base64Encoded: "3jC3b/Dx8JxJD0MHHTeglB4ihyaQIK3R0LCUG4hWBmE=")!),
    try! SealingPrivateKey(suite: .xwingAESGCM,
                           rawRepresentation: Data(base64Encoded: "3nd8iv1azT/6fVzuqpqKbJTQVJ5zF0jycioGcr2JGuA=")!),
    // The shared-context (format v2) vectors.
    try! SealingPrivateKey(suite: .x25519ChaChaPoly,
                           rawRepresentation: Data(base64Encoded: "HV5lbkgiywdMtrttvff1kAQ7AjanOHdqIvuMfZgeKrs=")!),
    try! SealingPrivateKey(suite: .xwingAESGCM,
                           rawRepresentation: Data(base64Encoded: "d4G2siGC9Cv47jnSimhP0nefU8u+Hhf0TPhrJn+X83M=")!),
]

/// What each key is tried as: the disclosure vectors, and the note and follow-up bound to case A.
struct Expectation {
    let key: SealingPrivateKey
    let kind: ObjectKind
    let objectID: UUID
    let caseID: UUID?
}
let caseKey = try! SealingPrivateKey(suite: .x25519ChaChaPoly, rawRepresentation: Data(base64Encoded: "PN3k3qATIomPPczTLr+vfDSzVx6ljkzIZfT8elg1474=")!)
let caseA = UUID(uuidString: "01937F5E-0000-7000-8000-00000000000A")!
let expectations = keys.map { Expectation(key: $0, kind: .disclosure, objectID: objectID, caseID: nil) } + [
    Expectation(key: caseKey, kind: .note, objectID: UUID(uuidString: "01937F5E-3C2A-7B1D-9E4F-A1B2C3D4E5F7")!, caseID: caseA),
    Expectation(key: caseKey, kind: .followup, objectID: UUID(uuidString: "01937F5E-3C2A-7B1D-9E4F-000000000000")!, caseID: caseA),
]

/// The header parser alone, then the one-shot opener for each expectation, then the streaming opener fed in
/// two pieces, which must agree with the one-shot opener. Thrown errors are expected; a trap is a finding.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let header = try? EnvelopeHeader.inspect(bytes)
    if let header { precondition(header.encodedLength <= bytes.count) }

    for expected in expectations {
        let oneShot = try? Envelope.open(bytes, with: expected.key, kind: expected.kind, objectID: expected.objectID, caseID: expected.caseID)
        if oneShot != nil { precondition(header?.keyID == expected.key.id && header?.objectID == expected.objectID && header?.kind == expected.kind) }

        var opener = EnvelopeOpener(key: expected.key, kind: expected.kind, objectID: expected.objectID, caseID: expected.caseID)
        let split = size / 2
        let streamed: [UInt8]?
        do {
            var out = try opener.update(bytes[..<split])
            out += try opener.update(bytes[split...])
            out += try opener.finish()
            streamed = out
        } catch {
            streamed = nil
        }
        precondition(oneShot == streamed, "one-shot and streaming open disagree")
    }
    return 0
}
