import Crypto

/// The HPKE suites an object or a key may use. Each fixes the payload AEAD too.
public enum SealingSuite: Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// X-Wing (ML-KEM-768 + X25519), HKDF-SHA256, AES-256-GCM. The default.
    case xwingAESGCM
    /// X25519, HKDF-SHA256, ChaCha20-Poly1305, for interoperability.
    case x25519ChaChaPoly

    public static let `default` = SealingSuite.xwingAESGCM

    /// The RFC 9180 identifiers, as written in envelopes.
    package var identifiers: (kem: UInt16, kdf: UInt16, aead: UInt16) {
        switch self {
        case .xwingAESGCM: (0x647a, 0x0001, 0x0002)
        case .x25519ChaChaPoly: (0x0020, 0x0001, 0x0003)
        }
    }

    package init?(kem: UInt16, kdf: UInt16, aead: UInt16) {
        guard let suite = Self.allCases.first(where: { $0.identifiers == (kem, kdf, aead) }) else { return nil }
        self = suite
    }

    /// The swift-crypto name, used in text files.
    public var description: String {
        switch self {
        case .xwingAESGCM: "XWingMLKEM768X25519_SHA256_AES_GCM_256"
        case .x25519ChaChaPoly: "Curve25519_SHA256_ChachaPoly"
        }
    }

    package init?(name: String) {
        guard let suite = Self.allCases.first(where: { $0.description == name }) else { return nil }
        self = suite
    }

    /// A one-byte tag used in compact key strings.
    package var tag: UInt8 {
        switch self {
        case .xwingAESGCM: 1
        case .x25519ChaChaPoly: 2
        }
    }

    package init?(tag: UInt8) {
        guard let suite = Self.allCases.first(where: { $0.tag == tag }) else { return nil }
        self = suite
    }

    var hpke: HPKE.Ciphersuite {
        switch self {
        case .xwingAESGCM: .XWingMLKEM768X25519_SHA256_AES_GCM_256
        case .x25519ChaChaPoly: .Curve25519_SHA256_ChachaPoly
        }
    }

    var encapsulatedKeyLength: Int {
        switch self {
        case .xwingAESGCM: 1120
        case .x25519ChaChaPoly: 32
        }
    }

    var publicKeyLength: Int {
        switch self {
        case .xwingAESGCM: 1216
        case .x25519ChaChaPoly: 32
        }
    }

    var privateKeyLength: Int { 32 }
}
