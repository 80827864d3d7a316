import Crypto

/// The STREAM construction over 64 KiB chunks: nonce = 11-byte big-endian counter ‖ last-chunk flag.
/// Every chunk authenticates the SHA-256 of the whole header.
struct PayloadStream {
    static let chunkSize = 64 * 1024
    static let tagLength = 16
    static let sealedChunkSize = chunkSize + tagLength
    static let maxCounter: UInt64 = 1 << 40

    private let key: SymmetricKey
    private let suite: SealingSuite
    private let headerDigest: [UInt8]
    private(set) var counter: UInt64 = 0

    init(key: SymmetricKey, suite: SealingSuite, header: [UInt8]) {
        self.key = key
        self.suite = suite
        self.headerDigest = Array(SHA256.hash(data: header))
    }

    private func nonceBytes(last: Bool) -> [UInt8] {
        var nonce = [UInt8](repeating: 0, count: 12)
        var c = counter
        for index in stride(from: 10, through: 3, by: -1) {
            nonce[index] = UInt8(c & 0xff)
            c >>= 8
        }
        nonce[11] = last ? 1 : 0
        return nonce
    }

    mutating func seal(_ chunk: ArraySlice<UInt8>, last: Bool) throws -> [UInt8] {
        precondition(chunk.count <= Self.chunkSize && counter < Self.maxCounter)
        defer { counter += 1 }
        let nonce = nonceBytes(last: last)
        switch suite {
        case .xwingAESGCM:
            let box = try AES.GCM.seal(chunk, using: key, nonce: AES.GCM.Nonce(data: nonce), authenticating: headerDigest)
            return Array(box.ciphertext) + Array(box.tag)
        case .x25519ChaChaPoly:
            let box = try ChaChaPoly.seal(chunk, using: key, nonce: ChaChaPoly.Nonce(data: nonce), authenticating: headerDigest)
            return Array(box.ciphertext) + Array(box.tag)
        }
    }

    mutating func open(_ chunk: ArraySlice<UInt8>, last: Bool) throws(FormatError) -> [UInt8] {
        guard chunk.count >= Self.tagLength, chunk.count <= Self.sealedChunkSize, counter < Self.maxCounter else {
            throw FormatError(.malformed, "bad chunk length")
        }
        defer { counter += 1 }
        let nonce = nonceBytes(last: last)
        let ciphertext = chunk.dropLast(Self.tagLength)
        let tag = chunk.suffix(Self.tagLength)
        do {
            switch suite {
            case .xwingAESGCM:
                let box = try AES.GCM.SealedBox(nonce: AES.GCM.Nonce(data: nonce), ciphertext: ciphertext, tag: tag)
                return Array(try AES.GCM.open(box, using: key, authenticating: headerDigest))
            case .x25519ChaChaPoly:
                let box = try ChaChaPoly.SealedBox(nonce: ChaChaPoly.Nonce(data: nonce), ciphertext: ciphertext, tag: tag)
                return Array(try ChaChaPoly.open(box, using: key, authenticating: headerDigest))
            }
        } catch {
            throw FormatError.openFailed
        }
    }
}
