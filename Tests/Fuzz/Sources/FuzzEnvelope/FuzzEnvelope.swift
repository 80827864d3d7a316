import Foundation
import RelayFormat

// The keys, kind and object id of the vectors in Tests/RelayFormatTests/Vectors, so that the seeds open.
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

/// The header parser alone, then the one-shot opener with each key, then the streaming opener fed in two
/// pieces, which must agree with the one-shot opener. Thrown errors are expected; a trap is a finding.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let header = try? EnvelopeHeader.inspect(bytes)
    if let header { precondition(header.encodedLength <= bytes.count) }

    for key in keys {
        let oneShot = try? Envelope.open(bytes, with: key, kind: .disclosure, objectID: objectID)
        if oneShot != nil { precondition(header?.keyID == key.id && header?.objectID == objectID) }

        var opener = EnvelopeOpener(key: key, kind: .disclosure, objectID: objectID)
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
