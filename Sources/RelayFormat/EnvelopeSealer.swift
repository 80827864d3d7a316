public import Foundation
import Crypto

let contentKeyInfo = Array("amane-relay/v1 content key".utf8)
let sharedContextInfo = Array("amane-relay/v2 shared context".utf8)
let wrapKeyLabel = Array("amane-relay/v2 content key wrap".utf8)

/// One HPKE sender context whose exporter seals the content keys of many objects, so that a burst of
/// objects to the same key costs one key encapsulation instead of one each. Every object still has its
/// own random content key, wrapped under a key exported for that object's fixed header part (its
/// version, kind, suite, key id and object id) and, for an object that belongs to a case, the case id. Whoever holds a context can open every object sealed with
/// it: keep one only for a short window, then drop it. A (kind, object id) must never be sealed twice with
/// one context: the wrapping key and its fixed nonce would repeat. Package-only for that reason: the relay's
/// object ids are fresh UUIDv7s.
package struct SharedSealingContext: Sendable, CustomStringConvertible {
    package let recipientID: KeyID
    let suite: SealingSuite
    let sender: HPKE.Sender

    package var description: String { "SharedSealingContext(\(suite), key \(recipientID), …)" }

    package init(to recipient: SealingPublicKey) throws(FormatError) {
        do { sender = try recipient.makeSender(info: sharedContextInfo) } catch { throw FormatError(.malformed, "recipient key rejected") }
        recipientID = recipient.id
        suite = recipient.suite
    }

    var encapsulatedKey: [UInt8] { Array(sender.encapsulatedKey) }
}

/// Wraps and unwraps a content key under a key exported from a shared HPKE context. The wrapping key is
/// unique to one object's bound data, so a fixed nonce never repeats under one key.
enum ContentKeyWrap {
    static func wrappingKey(exporter: (_ context: [UInt8]) throws -> SymmetricKey, bound: [UInt8]) throws -> SymmetricKey {
        try exporter(wrapKeyLabel + bound)
    }

    static func seal(_ contentKey: SymmetricKey, under key: SymmetricKey, suite: SealingSuite, bound: [UInt8]) throws -> [UInt8] {
        try contentKey.withUnsafeBytes { raw in
            switch suite {
            case .xwingAESGCM:
                let box = try AES.GCM.seal(raw, using: key, nonce: try AES.GCM.Nonce(data: zeroNonce), authenticating: bound)
                return Array(box.ciphertext) + Array(box.tag)
            case .x25519ChaChaPoly:
                let box = try ChaChaPoly.seal(raw, using: key, nonce: try ChaChaPoly.Nonce(data: zeroNonce), authenticating: bound)
                return Array(box.ciphertext) + Array(box.tag)
            }
        }
    }

    static func open(_ sealed: [UInt8], under key: SymmetricKey, suite: SealingSuite, bound: [UInt8]) throws -> SymmetricKey {
        let ciphertext = sealed.dropLast(16), tag = sealed.suffix(16)
        switch suite {
        case .xwingAESGCM:
            let box = try AES.GCM.SealedBox(nonce: try AES.GCM.Nonce(data: zeroNonce), ciphertext: ciphertext, tag: tag)
            return SymmetricKey(data: try AES.GCM.open(box, using: key, authenticating: bound))
        case .x25519ChaChaPoly:
            let box = try ChaChaPoly.SealedBox(nonce: try ChaChaPoly.Nonce(data: zeroNonce), ciphertext: ciphertext, tag: tag)
            return SymmetricKey(data: try ChaChaPoly.open(box, using: key, authenticating: bound))
        }
    }

    private static let zeroNonce = [UInt8](repeating: 0, count: 12)
}

/// Seals a payload of any length in constant memory: feed plaintext with `update`, then call `finish`.
/// Write `header` first, then every returned piece, in order.
public struct EnvelopeSealer: Sendable {
    public let header: [UInt8]
    private var stream: PayloadStream
    private var pending: [UInt8] = []

    /// - Parameters:
    ///   - recipient: the epoch key (or, for a reply's gateway copy, the gateway's key).
    ///   - kind: what the object is; bound into the envelope.
    ///   - objectID: the id of the case or object; bound into the envelope.
    ///   - caseID: for a follow-up, note or reply, the case it belongs to; bound in, though not in the header.
    public init(to recipient: SealingPublicKey, kind: ObjectKind, objectID: UUID, caseID: UUID? = nil) throws(FormatError) {
        let suite = recipient.suite
        let contentKey = SymmetricKey(size: .bits256)
        let fixed = EnvelopeHeader.fixedPart(keySealing: .singleShot, suite: suite, kind: kind, keyID: recipient.id, objectID: objectID)
        let bound = try EnvelopeHeader.associatedData(fixed: fixed, kind: kind, caseID: caseID)
        let encapsulated: [UInt8]
        let sealedKey: [UInt8]
        do {
            var sender = try recipient.makeSender(info: contentKeyInfo)
            sealedKey = Array(try contentKey.withUnsafeBytes { try sender.seal($0, authenticating: bound) })
            encapsulated = Array(sender.encapsulatedKey)
        } catch {
            throw FormatError(.malformed, "recipient key rejected")
        }
        self.init(header: EnvelopeHeader(keySealing: .singleShot, suite: suite, kind: kind, keyID: recipient.id, objectID: objectID,
                                         encapsulatedKey: encapsulated, sealedContentKey: sealedKey), contentKey: contentKey)
    }

    /// Seals with a shared context (format v2): no key encapsulation of its own.
    package init(using context: SharedSealingContext, kind: ObjectKind, objectID: UUID, caseID: UUID? = nil) throws(FormatError) {
        let contentKey = SymmetricKey(size: .bits256)
        let fixed = EnvelopeHeader.fixedPart(keySealing: .sharedContext, suite: context.suite, kind: kind,
                                             keyID: context.recipientID, objectID: objectID)
        let bound = try EnvelopeHeader.associatedData(fixed: fixed, kind: kind, caseID: caseID)
        let sealedKey: [UInt8]
        do {
            let wrapping = try ContentKeyWrap.wrappingKey(exporter: { try context.sender.exportSecret(context: $0, outputByteCount: 32) }, bound: bound)
            sealedKey = try ContentKeyWrap.seal(contentKey, under: wrapping, suite: context.suite, bound: bound)
        } catch {
            throw FormatError(.malformed, "shared context rejected")
        }
        self.init(header: EnvelopeHeader(keySealing: .sharedContext, suite: context.suite, kind: kind, keyID: context.recipientID,
                                         objectID: objectID, encapsulatedKey: context.encapsulatedKey, sealedContentKey: sealedKey),
                  contentKey: contentKey)
    }

    private init(header: EnvelopeHeader, contentKey: SymmetricKey) {
        self.header = header.encoded()
        self.stream = PayloadStream(key: contentKey, suite: header.suite, header: self.header)
        pending.reserveCapacity(PayloadStream.chunkSize)
    }

    /// Takes more plaintext and returns the sealed chunks that are now complete.
    public mutating func update(_ plaintext: some Collection<UInt8>) throws(FormatError) -> [UInt8] {
        var output: [UInt8] = []
        var rest = plaintext[...]
        while !rest.isEmpty {
            if pending.count == PayloadStream.chunkSize {
                output += try sealPending(last: false)
            }
            let take = min(PayloadStream.chunkSize - pending.count, rest.count)
            pending.append(contentsOf: rest.prefix(take))
            rest = rest.dropFirst(take)
        }
        return output
    }

    /// Seals what is left as the final chunk.
    public mutating func finish() throws(FormatError) -> [UInt8] {
        try sealPending(last: true)
    }

    private mutating func sealPending(last: Bool) throws(FormatError) -> [UInt8] {
        defer { pending.removeAll(keepingCapacity: true) }
        do {
            return try stream.seal(pending[...], last: last)
        } catch {
            throw FormatError(.malformed, "payload too long")
        }
    }
}

/// Opens an envelope in constant memory. Plaintext comes out as chunks authenticate, but the
/// payload is complete and untruncated only once `finish` returns without throwing.
public struct EnvelopeOpener: Sendable {
    private let key: SealingPrivateKey
    private let expectedKind: ObjectKind
    private let expectedObjectID: UUID
    private let caseID: UUID?
    private var buffer: [UInt8] = []
    private var stream: PayloadStream?
    public private(set) var header: EnvelopeHeader?

    /// - Parameters:
    ///   - key: the private key named by the envelope.
    ///   - kind, objectID: what the caller expects; anything else fails to open.
    ///   - caseID: for a follow-up, note or reply, the case the caller found it in; another case fails to open.
    public init(key: SealingPrivateKey, kind: ObjectKind, objectID: UUID, caseID: UUID? = nil) {
        self.key = key
        self.expectedKind = kind
        self.expectedObjectID = objectID
        self.caseID = caseID
    }

    /// Takes more envelope bytes and returns the plaintext of every chunk known not to be the last.
    public mutating func update(_ bytes: some Collection<UInt8>) throws(FormatError) -> [UInt8] {
        buffer.append(contentsOf: bytes)
        if stream == nil {
            guard let parsed = try EnvelopeHeader.parsePrefix(buffer[...]) else { return [] }
            try begin(parsed)
        }
        var output: [UInt8] = []
        var consumed = 0
        while buffer.count - consumed > PayloadStream.sealedChunkSize {
            let chunk = buffer[consumed ..< consumed + PayloadStream.sealedChunkSize]
            output += try stream!.open(chunk, last: false)
            consumed += PayloadStream.sealedChunkSize
        }
        buffer.removeFirst(consumed)
        return output
    }

    /// Opens the final chunk. Throws if the envelope was truncated, extended or altered.
    public mutating func finish() throws(FormatError) -> [UInt8] {
        guard stream != nil else { throw FormatError(.malformed, "truncated header") }
        guard buffer.count >= PayloadStream.tagLength else { throw FormatError(.malformed, "truncated payload") }
        if buffer.count == PayloadStream.tagLength && stream!.counter > 0 {
            throw FormatError(.malformed, "empty final chunk")
        }
        let plaintext = try stream!.open(buffer[...], last: true)
        buffer.removeAll()
        return plaintext
    }

    private mutating func begin(_ parsed: EnvelopeHeader) throws(FormatError) {
        guard parsed.kind == expectedKind, parsed.objectID == expectedObjectID,
              parsed.keyID == key.id, parsed.suite == key.suite else { throw FormatError.openFailed }
        let bound = try EnvelopeHeader.associatedData(fixed: parsed.fixedPart, kind: parsed.kind, caseID: caseID)
        let contentKey: SymmetricKey
        do {
            switch parsed.keySealing {
            case .singleShot:
                var recipient = try key.makeRecipient(info: contentKeyInfo, encapsulatedKey: parsed.encapsulatedKey)
                contentKey = SymmetricKey(data: try recipient.open(parsed.sealedContentKey, authenticating: bound))
            case .sharedContext:
                let recipient = try key.makeRecipient(info: sharedContextInfo, encapsulatedKey: parsed.encapsulatedKey)
                let wrapping = try ContentKeyWrap.wrappingKey(exporter: { try recipient.exportSecret(context: $0, outputByteCount: 32) },
                                                              bound: bound)
                contentKey = try ContentKeyWrap.open(parsed.sealedContentKey, under: wrapping, suite: parsed.suite, bound: bound)
            }
        } catch {
            throw FormatError.openFailed
        }
        let headerBytes = Array(buffer.prefix(parsed.encodedLength))
        buffer.removeFirst(parsed.encodedLength)
        header = parsed
        stream = PayloadStream(key: contentKey, suite: parsed.suite, header: headerBytes)
    }
}

/// One-shot sealing and opening for payloads that fit in memory.
public enum Envelope {
    public static func seal(_ plaintext: some Collection<UInt8>, to recipient: SealingPublicKey,
                            kind: ObjectKind, objectID: UUID, caseID: UUID? = nil) throws(FormatError) -> [UInt8] {
        try sealWhole(plaintext, with: EnvelopeSealer(to: recipient, kind: kind, objectID: objectID, caseID: caseID))
    }

    /// Seals with a shared context (format v2); see `SharedSealingContext`.
    package static func seal(_ plaintext: some Collection<UInt8>, using context: SharedSealingContext,
                            kind: ObjectKind, objectID: UUID, caseID: UUID? = nil) throws(FormatError) -> [UInt8] {
        try sealWhole(plaintext, with: EnvelopeSealer(using: context, kind: kind, objectID: objectID, caseID: caseID))
    }

    private static func sealWhole(_ plaintext: some Collection<UInt8>, with sealer: EnvelopeSealer) throws(FormatError) -> [UInt8] {
        var sealer = sealer
        var out = sealer.header
        out += try sealer.update(plaintext)
        out += try sealer.finish()
        return out
    }

    public static func open(_ envelope: some Collection<UInt8>, with key: SealingPrivateKey,
                            kind: ObjectKind, objectID: UUID, caseID: UUID? = nil) throws(FormatError) -> [UInt8] {
        var opener = EnvelopeOpener(key: key, kind: kind, objectID: objectID, caseID: caseID)
        var out = try opener.update(envelope)
        out += try opener.finish()
        return out
    }
}
