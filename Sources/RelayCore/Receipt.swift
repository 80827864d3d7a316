import RelayFormat

/// The code a reporter keeps to come back: 15 random digits and a Damm check digit, read aloud in groups of four.
/// The relay stores only its SHA-256.
public struct Receipt: Sendable, Hashable, CustomStringConvertible, CustomReflectable {
    public let digits: String

    /// A new receipt from the system's secure random generator.
    public static func generate() -> Receipt {
        var generator = SystemRandomNumberGenerator()
        var random = generator.next(upperBound: UInt64(1_000_000_000_000_000))
        let body = (0..<15).map { _ in
            defer { random /= 10 }
            return UInt8(random % 10)
        }
        return Receipt(validDigits: body + [Damm.checkDigit(body)])
    }

    /// Parses a receipt typed or read back by a person: spaces, other white space, dashes and invisible characters (a
    /// byte order mark from a saved file, a bidi mark pasted with Arabic) are ignored, and Arabic-Indic digits (as an
    /// Arabic keyboard types them) count as the digits they are.
    /// - Throws: `invalidReceipt` when it is not 16 digits; `receiptMisheard` when the check digit is wrong.
    public init(parsing text: String) throws(CoreError) {
        var digits: [UInt8] = []
        for scalar in text.unicodeScalars {
            if let digit = Self.digit(scalar) {
                digits.append(digit)
            } else if !(scalar.properties.isWhitespace || scalar.properties.isDefaultIgnorableCodePoint || scalar == "-") {
                throw CoreError(.invalidReceipt, "a receipt has only digits")
            }
            guard digits.count <= 16 else { break }
        }
        guard digits.count == 16 else { throw CoreError(.invalidReceipt, "a receipt has 16 digits") }
        guard Damm.isValid(digits) else { throw CoreError(.receiptMisheard, "the receipt's check digit does not match; was a digit misheard?") }
        self.init(validDigits: digits)
    }

    /// 0-9 in ASCII, Arabic-Indic (U+0660) or Extended Arabic-Indic (U+06F0) form.
    private static func digit(_ scalar: Unicode.Scalar) -> UInt8? {
        for zero: UInt32 in [0x30, 0x660, 0x6F0] where (zero...zero + 9).contains(scalar.value) {
            return UInt8(scalar.value - zero)
        }
        return nil
    }

    private init(validDigits: [UInt8]) {
        self.digits = String(decoding: validDigits.map { $0 + UInt8(ascii: "0") }, as: UTF8.self)
    }

    /// The digits in groups of four, for reading aloud.
    public var grouped: String {
        stride(from: 0, to: 16, by: 4).map { offset in
            let start = digits.index(digits.startIndex, offsetBy: offset)
            return String(digits[start ..< digits.index(start, offsetBy: 4)])
        }.joined(separator: " ")
    }

    /// What the relay stores and looks up.
    public var digest: [UInt8] { Digest.sha256(Array(digits.utf8)) }

    /// Receipts never print themselves, so that one cannot slip into a log.
    public var description: String { "Receipt(…)" }
    /// Nor through `dump` or a `Mirror` of its fields.
    public var customMirror: Mirror { Mirror(self, children: [:]) }
}

/// The Damm algorithm: detects every single-digit error and every adjacent transposition.
enum Damm {
    private static let table: [[UInt8]] = [
        [0, 3, 1, 7, 5, 9, 8, 6, 4, 2],
        [7, 0, 9, 2, 1, 5, 4, 8, 6, 3],
        [4, 2, 0, 6, 8, 7, 1, 3, 5, 9],
        [1, 7, 5, 0, 9, 8, 3, 4, 2, 6],
        [6, 1, 2, 3, 0, 4, 5, 9, 7, 8],
        [3, 6, 7, 4, 2, 0, 9, 5, 8, 1],
        [5, 8, 6, 9, 7, 2, 0, 1, 3, 4],
        [8, 9, 4, 5, 3, 6, 2, 0, 1, 7],
        [9, 4, 3, 8, 6, 1, 7, 2, 0, 5],
        [2, 5, 8, 1, 4, 3, 6, 7, 9, 0],
    ]

    static func checkDigit(_ digits: [UInt8]) -> UInt8 {
        digits.reduce(0) { table[Int($0)][Int($1)] }
    }

    static func isValid(_ digits: [UInt8]) -> Bool { checkDigit(digits) == 0 }
}
