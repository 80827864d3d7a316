import Foundation
import RelayAPI
import RelayCore
import RelayFormat

// The daemon's default limits (RelayConfiguration.Limits).
let maxBodyBytes = 256 * 1024
let maxEnvelopeBytes = 8 * 1024 * 1024
let narrativeMaxBytes = 64 * 1024

/// What RelayServer does with a `POST /v1/disclosures` body before it touches the store: the strict decode
/// (RequestContext.decodeJSON), the label checks (Routes.labels), then sealOrAccept's checks of `content`
/// or of the gateway-sealed envelope, and the canonical re-encoding for the idempotency tag. Those server
/// functions live in RelayServer, which this package does not build, so their pure checks are repeated here.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let body = Data(bytes: data, count: size)
    guard let submission = try? StrictJSON.decode(DisclosureSubmission.self, from: body) else { return 0 }

    guard Urgency(rawValue: submission.urgency) != nil else { return 0 }
    if let queue = submission.queue, QueueName(rawValue: queue) == nil { return 0 }

    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    switch (submission.content, submission.sealed) {
    case (let content?, nil):
        guard size <= maxBodyBytes, (1...narrativeMaxBytes).contains(content.narrative.utf8.count) else { return 0 }
        // The plaintext the relay seals; it must encode, and decode back to the same content.
        let plaintext = try! encoder.encode(content)
        precondition((try? StrictJSON.decode(DisclosureContent.self, from: plaintext)) == content, "content does not round-trip")
    case (nil, let sealed?):
        guard let envelope = Base64.decode(sealed), envelope.count <= maxEnvelopeBytes else { return 0 }
        _ = try? EnvelopeHeader.inspect(envelope)
    default:
        return 0
    }
    _ = try! encoder.encode(submission)
    return 0
}
