import Foundation
import RelayAPI
import RelayCore
import RelayFormat

// The daemon's default limits (limits.* in Config/amane-relayd.yaml).
let limits = IntakeLimits(maxBodyBytes: 256 * 1024, maxEnvelopeBytes: 8 * 1024 * 1024, narrativeMaxBytes: 64 * 1024)

/// What the daemon does with a `POST /v1/disclosures` body before it seals or stores anything: the strict
/// decode with its canonical form and the retry form (the idempotency tag's input), then `IntakeCheck`, the same calls the
/// routes make. Plaintext content must re-encode to JSON that decodes back to the same content.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let body = Data(bytes: data, count: size)
    guard let (submission, canonical) = try? StrictJSON.decodeCanonical(DisclosureSubmission.self, from: body) else { return 0 }
    precondition((try? StrictJSON.decode(DisclosureSubmission.self, from: canonical)) == submission, "the canonical form does not decode back")
    guard (try? IntakeCheck.labels(submission, gatewayQueue: .national)) != nil else { return 0 }
    do {
        let retryForm = try IntakeCheck.retryForm(submission, canonical: canonical)
        precondition(submission.contentTag != nil || retryForm == canonical, "without a content tag a retry repeats the whole body")
    } catch {
        precondition(error.status == 400, "an unexpected status \(error.status)")
        return 0
    }
    let payload: IntakePayload
    do {
        payload = try IntakeCheck.payload(content: submission.content, sealed: submission.sealed, sealedID: nil, bodySize: size, limits: limits)
    } catch {
        precondition([400, 413].contains(error.status), "an unexpected status \(error.status)")
        return 0
    }
    if case .plaintext(let content) = payload {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let plaintext = try! encoder.encode(content)
        precondition((try? StrictJSON.decode(DisclosureContent.self, from: plaintext)) == content, "content does not round-trip")
    }
    return 0
}
