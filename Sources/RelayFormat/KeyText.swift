public import Foundation
import Crypto

extension SealingPublicKey {
    static let textPrefix = "amanepk1"

    /// A short, human-checkable fingerprint, read aloud when enrolling: `amane1-xxxx-xxxx-xxxx-xxxx-xxxx-xxxx`.
    public var fingerprint: String {
        let encoded = Base32.encode(Array(digest.prefix(15)))
        var groups: [Substring] = []
        var rest = encoded[...]
        while !rest.isEmpty {
            groups.append(rest.prefix(4))
            rest = rest.dropFirst(4)
        }
        return "amane1-" + groups.joined(separator: "-")
    }

    /// The public key as one line of text, with its suite and a checksum, for handing to an admin.
    public var text: String {
        let body = [suite.tag] + rawRepresentation
        let checksum = Array(SHA256.hash(data: body).prefix(4))
        return Self.textPrefix + Base64URL.encode(body + checksum)
    }

    /// Parses the text form. A typo fails the checksum instead of yielding another key.
    public init(text: String) throws(FormatError) {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.hasPrefix(Self.textPrefix),
              let decoded = Base64URL.decode(String(trimmed.dropFirst(Self.textPrefix.count))),
              decoded.count > 5 else {
            throw FormatError(.malformed, trimmed.hasPrefix(Self.textPrefix) ? "not an Amane public key: what follows \(Self.textPrefix) is cut short or not base64url"
                                                                            : "not an Amane public key: one starts with \(Self.textPrefix)")
        }
        let body = decoded.dropLast(4)
        guard Array(SHA256.hash(data: body).prefix(4)) == Array(decoded.suffix(4)) else {
            throw FormatError(.malformed, "public key checksum does not match: it was not copied whole, or was mistyped")
        }
        guard let suite = SealingSuite(tag: body[body.startIndex]) else { throw FormatError(.unsupportedSuite) }
        try self.init(suite: suite, rawRepresentation: body.dropFirst())
    }
}

/// RFC 4648 base32, lowercase, without padding.
enum Base32 {
    private static let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        var buffer = 0
        var bits = 0
        for byte in bytes {
            buffer = (buffer << 8) | Int(byte)
            bits += 8
            while bits >= 5 {
                out.append(alphabet[(buffer >> (bits - 5)) & 31])
                bits -= 5
            }
        }
        if bits > 0 { out.append(alphabet[(buffer << (5 - bits)) & 31]) }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Base64 with the URL alphabet and no padding; decoding accepts only the canonical form.
enum Base64URL {
    static func encode(_ bytes: [UInt8]) -> String {
        let standard = Data(bytes).base64EncodedData()
        return String(decoding: standard.compactMap { byte -> UInt8? in
            switch byte {
            case UInt8(ascii: "+"): UInt8(ascii: "-")
            case UInt8(ascii: "/"): UInt8(ascii: "_")
            case UInt8(ascii: "="): nil
            default: byte
            }
        }, as: UTF8.self)
    }

    static func decode(_ text: String) -> [UInt8]? {
        var standard: [UInt8] = []
        standard.reserveCapacity(text.utf8.count + 3)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "+"), UInt8(ascii: "/"), UInt8(ascii: "="): return nil
            case UInt8(ascii: "-"): standard.append(UInt8(ascii: "+"))
            case UInt8(ascii: "_"): standard.append(UInt8(ascii: "/"))
            default: standard.append(byte)
            }
        }
        standard += Array(repeating: UInt8(ascii: "="), count: (4 - standard.count % 4) % 4)
        guard let data = Data(base64Encoded: Data(standard)) else { return nil }
        let bytes = Array(data)
        return encode(bytes) == text ? bytes : nil
    }
}

/// SHA-256 of a certificate key's SubjectPublicKeyInfo, hex: how the relay finds a principal, and what two people
/// read to each other to know a signing request was not swapped on its way.
public enum SPKIFingerprint {
    public static func of(spki: [UInt8]) -> String {
        Digest.hex(Digest.sha256(spki))
    }

    /// The first 80 bits in groups of four, short enough to read over the phone.
    public static func spoken(_ fingerprint: String) -> String {
        var groups: [Substring] = []
        var rest = fingerprint.prefix(20)[...]
        while !rest.isEmpty { groups.append(rest.prefix(4)); rest = rest.dropFirst(4) }
        return groups.joined(separator: " ")
    }
}

/// Hashing that other modules need without importing Crypto themselves.
package enum Digest {
    package static func sha256(_ bytes: some Collection<UInt8>) -> [UInt8] {
        Array(SHA256.hash(data: Array(bytes)))
    }

    package static func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// Compares two secrets in time that depends only on their lengths.
    package static func constantTimeEquals(_ a: some Collection<UInt8>, _ b: some Collection<UInt8>) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for (x, y) in zip(a, b) { difference |= x ^ y }
        return difference == 0
    }
}
