import RelayCore

/// `Receipt(parsing:)` on the input as UTF-8; a parsed receipt must read back from its grouped form.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    guard let receipt = try? Receipt(parsing: text) else { return 0 }
    precondition(receipt.digits.utf8.count == 16 && receipt.digits.utf8.allSatisfy { (0x30...0x39).contains($0) })
    precondition((try? Receipt(parsing: receipt.grouped)) == receipt, "a receipt does not read back from its grouped form")
    precondition(receipt.digest.count == 32)
    return 0
}
