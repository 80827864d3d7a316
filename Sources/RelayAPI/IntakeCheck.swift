public import Foundation
public import RelayCore
public import RelayFormat

/// The sizes intake holds a body to.
public struct IntakeLimits: Sendable {
    public var maxBodyBytes: Int
    public var maxEnvelopeBytes: Int
    public var narrativeMaxBytes: Int

    public init(maxBodyBytes: Int, maxEnvelopeBytes: Int, narrativeMaxBytes: Int) {
        self.maxBodyBytes = maxBodyBytes
        self.maxEnvelopeBytes = maxEnvelopeBytes
        self.narrativeMaxBytes = narrativeMaxBytes
    }
}

/// What a gateway sent: plaintext for the relay to seal, or an envelope it sealed itself.
public enum IntakePayload: Sendable, Equatable {
    case plaintext(DisclosureContent)
    case sealed(envelope: [UInt8], objectID: UUID)
}

/// Why intake refused a body: the HTTP status to answer with, and the problem's detail.
public struct IntakeRejection: Error, Sendable, Equatable {
    public let status: Int
    public let detail: String

    init(_ status: Int, _ detail: String) {
        self.status = status
        self.detail = detail
    }
}

/// The checks of a disclosure or follow-up that need neither the database nor a key, in the order the
/// relay makes them. The fuzz target `FuzzIntake` calls exactly these.
public enum IntakeCheck {
    /// The labels of a submission. A wrong urgency or queue is refused here, naming the unknown codes of
    /// `taxonomy` with it, so that one answer names every wrong label; the codes alone are checked in the store,
    /// after a retry is recognised.
    public static func labels(_ submission: DisclosureSubmission, gatewayQueue: QueueName,
                              taxonomy: TaxonomyCodes? = nil) throws(IntakeRejection) -> DisclosureLabels {
        var refusals: [String] = []
        let urgency = Urgency(rawValue: submission.urgency)
        if urgency == nil { refusals.append(unknownUrgency) }
        if let name = submission.queue, QueueName(rawValue: name) != gatewayQueue {
            refusals.append("field 'queue': this gateway submits to \(gatewayQueue)")
        }
        let labels = DisclosureLabels(queue: gatewayQueue, urgency: urgency ?? .normal, category: submission.category,
                                      language: submission.language, channel: submission.channel, region: submission.region)
        guard refusals.isEmpty else {
            do { try taxonomy?.validate(labels) } catch { refusals.append(error.reason) }
            throw IntakeRejection(400, refusals.joined(separator: "; "))
        }
        return labels
    }

    /// The urgency a follow-up raises its case to, if it names one.
    public static func raisedUrgency(_ submission: FollowupSubmission) throws(IntakeRejection) -> Urgency? {
        try submission.urgency.map { text throws(IntakeRejection) in try urgency(text) }
    }

    static func urgency(_ text: String) throws(IntakeRejection) -> Urgency {
        guard let urgency = Urgency(rawValue: text) else { throw IntakeRejection(400, unknownUrgency) }
        return urgency
    }

    static let unknownUrgency = "field 'urgency' must be one of \(Urgency.allCases.map(\.rawValue).joined(separator: ", "))"

    /// The bytes a retry must repeat to get the first answer back: the canonical body, except that a gateway
    /// which seals on its side seals afresh on every try, so with a `contentTag` the tag stands for the envelope.
    public static func retryForm(_ submission: DisclosureSubmission, canonical: Data) throws(IntakeRejection) -> Data {
        guard let tag = submission.contentTag else { return canonical }
        try checkContentTag(tag, sealed: submission.sealed != nil)
        var withoutEnvelope = submission
        withoutEnvelope.sealed = nil
        do { return try StrictJSON.canonical(withoutEnvelope) } catch { throw IntakeRejection(400, "the body does not match the expected shape") }
    }

    /// A follow-up's retry form, which the caller puts after the receipt's digest (so that a retry may space the
    /// receipt otherwise): its canonical JSON in the clear, without the receipt as typed. Sealed afresh on each try,
    /// it is known by its content tag, else by its object id: without one of them, another follow-up under the same
    /// key would pass for a retry and be dropped.
    public static func retryForm(_ submission: FollowupSubmission) throws(IntakeRejection) -> [UInt8] {
        if let tag = submission.contentTag { try checkContentTag(tag, sealed: submission.sealed != nil) }
        // The relay names what it seals: an id sent with content would be dropped unseen.
        if submission.id != nil, submission.sealed == nil { throw IntakeRejection(400, "field 'id' goes only with 'sealed'") }
        guard submission.sealed != nil else {
            var withoutReceipt = submission
            withoutReceipt.receipt = ""
            do { return Array(try StrictJSON.canonical(withoutReceipt)) } catch { throw IntakeRejection(400, "the body does not match the expected shape") }
        }
        guard let id = submission.id else { throw IntakeRejection(400, "field 'id' is required with 'sealed': the envelope's object id") }
        // The id as a UUID, so that a retry that spells it in other letter case is one.
        let form = submission.contentTag.map { "tagged \($0)" } ?? "sealed \(UUID(uuidString: id)?.uuidString.lowercased() ?? id)"
        return Array(((submission.urgency.map { "urgency \($0) " } ?? "") + form).utf8)
    }

    /// A narrative tells something, in at most `maxBytes`. The relay checks it in the clear; a gateway that seals
    /// on its side checks it before sealing, since the relay cannot look.
    public static func checkNarrative(_ content: DisclosureContent, maxBytes: Int) throws(IntakeRejection) {
        // Marks alone (an accent, Arabic vowel signs) sit on no letter.
        let visible = content.narrative.unicodeScalars.contains {
            !$0.properties.isWhitespace && !$0.properties.isDefaultIgnorableCodePoint
                && ![.control, .nonspacingMark, .enclosingMark].contains($0.properties.generalCategory)
        }
        guard visible else { throw IntakeRejection(400, "field 'content.narrative' holds no text") }
        guard content.narrative.utf8.count <= maxBytes else {
            throw IntakeRejection(413, "field 'content.narrative' holds \(content.narrative.utf8.count) bytes; it may hold \(maxBytes)")
        }
    }

    private static func checkContentTag(_ tag: String, sealed: Bool) throws(IntakeRejection) {
        guard sealed else { throw IntakeRejection(400, "field 'contentTag' goes only with 'sealed'") }
        guard (22...256).contains(tag.utf8.count) else { throw IntakeRejection(400, "field 'contentTag' must hold 22 to 256 characters") }
    }

    /// Exactly one of `content` and `sealed`, within the limits; a sealed envelope must parse, and its object
    /// id must be `sealedID` when one is given.
    public static func payload(content: DisclosureContent?, sealed: String?, sealedID: String?, bodySize: Int,
                               limits: IntakeLimits) throws(IntakeRejection) -> IntakePayload {
        switch (content, sealed) {
        case (let content?, nil):
            guard bodySize <= limits.maxBodyBytes else { throw IntakeRejection(413, "a JSON body may hold \(limits.maxBodyBytes) bytes") }
            try checkNarrative(content, maxBytes: limits.narrativeMaxBytes)
            return .plaintext(content)
        case (nil, let sealed?):
            guard let envelope = Base64.decode(sealed) else { throw IntakeRejection(400, "field 'sealed' is not base64") }
            guard envelope.count <= limits.maxEnvelopeBytes else {
                throw IntakeRejection(413, "a sealed envelope may hold \(limits.maxEnvelopeBytes) bytes")
            }
            let header: EnvelopeHeader
            do { header = try EnvelopeHeader.inspect(envelope) } catch { throw IntakeRejection(400, "field 'sealed': \(error.plainReason)") }
            if let sealedID, UUID(uuidString: sealedID) != header.objectID {
                throw IntakeRejection(400, "field 'id' differs from the envelope's object id")
            }
            return .sealed(envelope: envelope, objectID: header.objectID)
        default:
            throw IntakeRejection(400, "send exactly one of 'content' and 'sealed'")
        }
    }
}
