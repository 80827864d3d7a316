import Crypto

/// Seals a small value under a key derived (HKDF-SHA256) from a high-entropy secret the caller holds,
/// such as an idempotency key: the store can hand the value back to whoever presents the secret again,
/// and nobody else can read it from the database.
package enum KeyedBox {
    private static let info = Array("amane-relay/v1 keyed box".utf8)

    private static func key(_ secret: some Collection<UInt8>, context: some Collection<UInt8>) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: Array(secret)), salt: Array(context), info: info, outputByteCount: 32)
    }

    package static func seal(_ plaintext: some Collection<UInt8>, secret: some Collection<UInt8>, context: some Collection<UInt8>) -> [UInt8] {
        // AES-GCM with a fresh random nonce cannot fail for inputs this small.
        let box = try! AES.GCM.seal(Array(plaintext), using: key(secret, context: context))
        return Array(box.combined!)
    }

    /// A MAC of `data` under a key derived from the same secret: lets a store recognise a repeated request
    /// without keeping anything an attacker could test a guessed plaintext against.
    package static func tag(_ data: some Collection<UInt8>, secret: some Collection<UInt8>, context: some Collection<UInt8>) -> [UInt8] {
        let macKey = HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: Array(secret)), salt: Array(context),
                                            info: Array("amane-relay/v1 request tag".utf8), outputByteCount: 32)
        return Array(HMAC<SHA256>.authenticationCode(for: Array(data), using: macKey))
    }

    package static func open(_ sealed: some Collection<UInt8>, secret: some Collection<UInt8>, context: some Collection<UInt8>) throws(FormatError) -> [UInt8] {
        do {
            let box = try AES.GCM.SealedBox(combined: Array(sealed))
            return Array(try AES.GCM.open(box, using: key(secret, context: context)))
        } catch {
            throw FormatError.openFailed
        }
    }
}
