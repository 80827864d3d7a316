public import Foundation
import Crypto

let contentKeyInfo = Array("amane-relay/v1 content key".utf8)

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
    public init(to recipient: SealingPublicKey, kind: ObjectKind, objectID: UUID) throws(FormatError) {
        let suite = recipient.suite
        let contentKey = SymmetricKey(size: .bits256)
        let fixed = EnvelopeHeader.fixedPart(suite: suite, kind: kind, keyID: recipient.id, objectID: objectID)
        let encapsulated: [UInt8]
        let sealedKey: [UInt8]
        do {
            var sender = try recipient.makeSender(info: contentKeyInfo)
            sealedKey = Array(try contentKey.withUnsafeBytes { try sender.seal($0, authenticating: fixed) })
            encapsulated = Array(sender.encapsulatedKey)
        } catch {
            throw FormatError(.malformed, "recipient key rejected")
        }
        let header = EnvelopeHeader(suite: suite, kind: kind, keyID: recipient.id, objectID: objectID,
                                    encapsulatedKey: encapsulated, sealedContentKey: sealedKey)
        self.header = header.encoded()
        self.stream = PayloadStream(key: contentKey, suite: suite, header: self.header)
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
    private var buffer: [UInt8] = []
    private var stream: PayloadStream?
    public private(set) var header: EnvelopeHeader?

    /// - Parameters:
    ///   - key: the private key named by the envelope.
    ///   - kind, objectID: what the caller expects; anything else fails to open.
    public init(key: SealingPrivateKey, kind: ObjectKind, objectID: UUID) {
        self.key = key
        self.expectedKind = kind
        self.expectedObjectID = objectID
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
        let contentKey: SymmetricKey
        do {
            var recipient = try key.makeRecipient(info: contentKeyInfo, encapsulatedKey: parsed.encapsulatedKey)
            contentKey = SymmetricKey(data: try recipient.open(parsed.sealedContentKey, authenticating: parsed.fixedPart))
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
                            kind: ObjectKind, objectID: UUID) throws(FormatError) -> [UInt8] {
        var sealer = try EnvelopeSealer(to: recipient, kind: kind, objectID: objectID)
        var out = sealer.header
        out += try sealer.update(plaintext)
        out += try sealer.finish()
        return out
    }

    public static func open(_ envelope: some Collection<UInt8>, with key: SealingPrivateKey,
                            kind: ObjectKind, objectID: UUID) throws(FormatError) -> [UInt8] {
        var opener = EnvelopeOpener(key: key, kind: kind, objectID: objectID)
        var out = try opener.update(envelope)
        out += try opener.finish()
        return out
    }
}
