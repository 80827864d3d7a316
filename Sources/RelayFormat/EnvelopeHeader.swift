public import Foundation

/// What a sealed object is. The kind is bound into the envelope, so an object cannot change kind.
public enum ObjectKind: UInt8, Sendable, CaseIterable, Codable {
    case disclosure = 1
    case followup = 2
    case note = 3
    case reply = 4
    /// An epoch private key sealed to a member's personal key.
    case grant = 5

    public var name: String {
        switch self {
        case .disclosure: "disclosure"
        case .followup: "followup"
        case .note: "note"
        case .reply: "reply"
        case .grant: "grant"
        }
    }

    public init?(name: String) {
        guard let kind = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = kind
    }

    /// Follow-ups, notes and replies belong to a case whose id is not in their header: it is bound in as
    /// associated data, so an object moved to another case no longer opens.
    public var belongsToCase: Bool { self == .followup || self == .note || self == .reply }
}

/// How the content key is sealed; the header's version byte. See the Envelope article.
public enum KeySealing: UInt8, Sendable, CaseIterable {
    /// Version 1: one HPKE single-shot seal per object.
    case singleShot = 1
    /// Version 2: a key derived from a shared HPKE context's exporter, bound to the object's bound data.
    case sharedContext = 2
}

/// The header of a sealed envelope, format v1 or v2. See the Envelope article for the layout.
public struct EnvelopeHeader: Sendable, Equatable {
    public static let magic: [UInt8] = Array("AMNE".utf8)
    /// Magic, version, kind, suite (3 × u16), key id and object id.
    static let fixedLength = 4 + 1 + 1 + 6 + 16 + 16
    static let sealedContentKeyLength = 32 + 16

    public let keySealing: KeySealing
    public let suite: SealingSuite
    public let kind: ObjectKind
    /// The id of the key the content key is sealed to: the epoch id, or a gateway's key id.
    public let keyID: KeyID
    public let objectID: UUID
    let encapsulatedKey: [UInt8]
    let sealedContentKey: [UInt8]

    init(keySealing: KeySealing, suite: SealingSuite, kind: ObjectKind, keyID: KeyID, objectID: UUID,
         encapsulatedKey: [UInt8], sealedContentKey: [UInt8]) {
        self.keySealing = keySealing
        self.suite = suite
        self.kind = kind
        self.keyID = keyID
        self.objectID = objectID
        self.encapsulatedKey = encapsulatedKey
        self.sealedContentKey = sealedContentKey
    }

    /// The length of the whole header for a suite.
    static func length(of suite: SealingSuite) -> Int {
        fixedLength + 2 + suite.encapsulatedKeyLength + 2 + sealedContentKeyLength
    }

    public var encodedLength: Int { Self.length(of: suite) }

    /// The fixed part: the start of what the content key's seal authenticates (see `associatedData`).
    static func fixedPart(keySealing: KeySealing, suite: SealingSuite, kind: ObjectKind, keyID: KeyID, objectID: UUID) -> [UInt8] {
        var out = magic
        out.append(keySealing.rawValue)
        out.append(kind.rawValue)
        let ids = suite.identifiers
        out.appendBigEndian(ids.kem)
        out.appendBigEndian(ids.kdf)
        out.appendBigEndian(ids.aead)
        out.append(contentsOf: keyID.bytes)
        out.append(contentsOf: objectID.bytes)
        return out
    }

    var fixedPart: [UInt8] { Self.fixedPart(keySealing: keySealing, suite: suite, kind: kind, keyID: keyID, objectID: objectID) }

    /// What the content key's seal authenticates: the fixed part, then the case id for an object that belongs to a case.
    static func associatedData(fixed: [UInt8], kind: ObjectKind, caseID: UUID?) throws(FormatError) -> [UInt8] {
        switch (kind.belongsToCase, caseID) {
        case (true, let caseID?): fixed + caseID.bytes
        case (false, nil): fixed
        case (true, nil): throw FormatError(.malformed, "a \(kind.name) is sealed and opened with the id of its case")
        case (false, _?): throw FormatError(.malformed, "a \(kind.name) is bound by its own id, not a case id")
        }
    }

    public func encoded() -> [UInt8] {
        var out = fixedPart
        out.appendBigEndian(UInt16(encapsulatedKey.count))
        out.append(contentsOf: encapsulatedKey)
        out.appendBigEndian(UInt16(sealedContentKey.count))
        out.append(contentsOf: sealedContentKey)
        return out
    }

    /// Parses the header at the start of `bytes`.
    /// - Returns: nil when more bytes are needed to decide.
    /// - Throws: `malformed`, `unsupportedVersion` or `unsupportedSuite`, checked in that order.
    static func parsePrefix(_ bytes: ArraySlice<UInt8>) throws(FormatError) -> EnvelopeHeader? {
        var reader = ByteReader(bytes)
        guard let magic = reader.read(4) else { return nil }
        guard Array(magic) == Self.magic else { throw FormatError(.malformed, "not an Amane envelope") }
        guard let version = reader.readByte() else { return nil }
        guard let keySealing = KeySealing(rawValue: version) else { throw FormatError(.unsupportedVersion, "envelope version \(version) is unknown to this build") }
        guard let kindByte = reader.readByte(), let kem = reader.readUInt16(), let kdf = reader.readUInt16(),
              let aead = reader.readUInt16() else { return nil }
        guard let suite = SealingSuite(kem: kem, kdf: kdf, aead: aead) else {
            throw FormatError(.unsupportedSuite, "its cipher suite (HPKE KEM 0x\(String(kem, radix: 16)), KDF 0x\(String(kdf, radix: 16)), AEAD 0x\(String(aead, radix: 16))) is unknown to this build")
        }
        guard let kind = ObjectKind(rawValue: kindByte) else { throw FormatError(.malformed, "unknown object kind") }
        guard let keyID = reader.read(16), let objectID = reader.read(16) else { return nil }
        guard let encLength = reader.readUInt16() else { return nil }
        guard Int(encLength) == suite.encapsulatedKeyLength else { throw FormatError(.malformed, "bad encapsulated key length") }
        guard let enc = reader.read(Int(encLength)), let sealedLength = reader.readUInt16() else { return nil }
        guard Int(sealedLength) == sealedContentKeyLength else { throw FormatError(.malformed, "bad sealed key length") }
        guard let sealed = reader.read(Int(sealedLength)) else { return nil }
        return EnvelopeHeader(keySealing: keySealing, suite: suite, kind: kind, keyID: UUID(bytes: keyID), objectID: UUID(bytes: objectID),
                              encapsulatedKey: Array(enc), sealedContentKey: Array(sealed))
    }

    /// Reads the header of a whole envelope without opening it, as the relay does for gateway-sealed objects.
    /// - Throws: `malformed` also when the envelope is too short to hold the empty final chunk.
    public static func inspect(_ envelope: some Collection<UInt8>) throws(FormatError) -> EnvelopeHeader {
        let bytes = ArraySlice(envelope)
        guard let header = try parsePrefix(bytes) else { throw FormatError(.malformed, "truncated header") }
        guard bytes.count >= header.encodedLength + PayloadStream.tagLength else {
            throw FormatError(.malformed, "truncated payload")
        }
        return header
    }
}

struct ByteReader {
    private var bytes: ArraySlice<UInt8>

    init(_ bytes: ArraySlice<UInt8>) { self.bytes = bytes }

    mutating func read(_ count: Int) -> ArraySlice<UInt8>? {
        guard bytes.count >= count else { return nil }
        defer { bytes = bytes.dropFirst(count) }
        return bytes.prefix(count)
    }

    mutating func readByte() -> UInt8? { read(1)?.first }

    mutating func readUInt16() -> UInt16? {
        guard let two = read(2) else { return nil }
        return UInt16(two[two.startIndex]) << 8 | UInt16(two[two.startIndex + 1])
    }
}

extension Array where Element == UInt8 {
    mutating func appendBigEndian(_ value: UInt16) {
        append(UInt8(value >> 8))
        append(UInt8(value & 0xff))
    }
}

extension UUID {
    package var bytes: [UInt8] {
        withUnsafeBytes(of: uuid) { Array($0) }
    }

    package init(bytes: some Collection<UInt8>) {
        let b = Array(bytes)
        precondition(b.count == 16)
        self.init(uuid: (b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]))
    }
}
