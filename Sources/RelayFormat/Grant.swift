/// A grant: an epoch private key sealed to one member's personal key, as an envelope of kind `grant`
/// whose object id is the epoch id. The relay stores grants but can never open them.
public enum Grant {
    public static func seal(_ epochKey: SealingPrivateKey, to member: SealingPublicKey) throws(FormatError) -> [UInt8] {
        let payload = [epochKey.suite.tag] + epochKey.rawRepresentation
        return try Envelope.seal(payload, to: member, kind: .grant, objectID: epochKey.id)
    }

    /// - Throws: `openFailed` when the grant is not for this member or not for that epoch.
    public static func open(_ grant: some Collection<UInt8>, epochID: KeyID,
                            with identity: SealingPrivateKey) throws(FormatError) -> SealingPrivateKey {
        let payload = try Envelope.open(grant, with: identity, kind: .grant, objectID: epochID)
        guard let tag = payload.first, let suite = SealingSuite(tag: tag) else { throw FormatError(.malformed, "bad grant payload") }
        let key = try SealingPrivateKey(suite: suite, rawRepresentation: payload.dropFirst())
        guard key.id == epochID else { throw FormatError.openFailed }
        return key
    }
}
