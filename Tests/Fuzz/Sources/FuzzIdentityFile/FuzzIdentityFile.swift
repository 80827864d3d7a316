import RelayFormat

/// The passphrase of the seed identity files in Corpus/FuzzIdentityFile.
let passphrase = Array("correct horse battery staple".utf8)

/// scrypt work (N·r·p) above which the harness does not derive the key. The parser itself caps the cost at
/// N ≤ 2^20, r ≤ 16, p ≤ 4: up to 2 GiB and many seconds per file, which would only measure scrypt.
let maxScryptWork = 1 << 14

/// The N, r and p a file asks for, read as leniently as `IdentityFile` reads them; nil if absent.
func scryptWork(_ text: String) -> Int? {
    guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("kdf: scrypt ") }) else { return nil }
    var work = 1
    for part in line.dropFirst("kdf: scrypt ".count).split(separator: " ") {
        guard let equals = part.firstIndex(of: "="), let value = Int(part[part.index(after: equals)...]),
              value > 0, value <= maxScryptWork else { return nil }
        work = work.multipliedReportingOverflow(by: value).partialValue
        guard work <= maxScryptWork else { return nil }
    }
    return work
}

/// The identity file parser (`publicKey(in:)` runs every check before key derivation), then `decode`
/// when the file's scrypt cost is small. Thrown errors are expected; a trap is a finding.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let publicKey = try? IdentityFile.publicKey(in: text)
    guard publicKey != nil, scryptWork(text) != nil else { return 0 }
    if let key = try? IdentityFile.decode(text, passphrase: passphrase) {
        precondition(key.publicKey == publicKey, "decode returned another key than the file names")
    }
    return 0
}
