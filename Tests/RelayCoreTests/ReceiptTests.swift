import Foundation
import RelayCore
import Testing

@Suite struct ReceiptTests {
    static let sample = (0..<300).map { _ in Receipt.generate() }

    @Test func generatedReceiptsAreSixteenDigitsAndParse() throws {
        for receipt in Self.sample {
            #expect(receipt.digits.count == 16 && receipt.digits.allSatisfy(\.isNumber))
            #expect(try Receipt(parsing: receipt.digits) == receipt)
            #expect(try Receipt(parsing: receipt.grouped) == receipt)
        }
        #expect(Set(Self.sample.map(\.digits)).count == Self.sample.count)
    }

    @Test func everySingleDigitErrorIsDetected() {
        var undetected = 0
        for receipt in Self.sample {
            let digits = Array(receipt.digits)
            for position in digits.indices {
                for replacement in "0123456789" where replacement != digits[position] {
                    var typo = digits
                    typo[position] = replacement
                    if (try? Receipt(parsing: String(typo))) != nil { undetected += 1 }
                }
            }
        }
        #expect(undetected == 0)
    }

    @Test func everyAdjacentTranspositionIsDetected() {
        var undetected = 0
        var tried = 0
        for receipt in Self.sample {
            let digits = Array(receipt.digits)
            for position in 0..<15 where digits[position] != digits[position + 1] {
                var swapped = digits
                swapped.swapAt(position, position + 1)
                tried += 1
                if (try? Receipt(parsing: String(swapped))) != nil { undetected += 1 }
            }
        }
        #expect(tried > 1000 && undetected == 0)
    }

    @Test func badInputIsRefused() {
        #expect(throws: CoreError(.invalidReceipt, "")) { try Receipt(parsing: "12345") }
        #expect(throws: CoreError(.invalidReceipt, "")) { try Receipt(parsing: "1234 5678 9012 345a") }
        #expect(throws: CoreError(.invalidReceipt, "")) { try Receipt(parsing: String(repeating: "1", count: 40)) }
        #expect(throws: CoreError(.invalidReceipt, "")) { try Receipt(parsing: "1234_5678_9012_3456") }
        let receipt = Receipt.generate()
        let misheard = String(receipt.digits.dropLast()) + String((Int(String(receipt.digits.last!))! + 1) % 10)
        #expect(throws: CoreError(.receiptMisheard, "")) { try Receipt(parsing: misheard) }
    }

    @Test func aReceiptIsReadAsPeopleTypeIt() throws {
        let receipt = Receipt.generate()
        let arabicIndic = String(String.UnicodeScalarView(receipt.digits.unicodeScalars.map { Unicode.Scalar($0.value - 0x30 + 0x660)! }))
        let persian = String(String.UnicodeScalarView(receipt.digits.unicodeScalars.map { Unicode.Scalar($0.value - 0x30 + 0x6F0)! }))
        for typed in ["  \(receipt.grouped)\n", receipt.grouped.replacingOccurrences(of: " ", with: "\u{00A0}"), "\t" + receipt.digits,
                      arabicIndic, persian, receipt.grouped.replacingOccurrences(of: " ", with: "-"), "\u{FEFF}" + receipt.digits,
                      "\u{200F}" + arabicIndic + "\u{200E}"] {
            #expect(try Receipt(parsing: typed).digest == receipt.digest, "\(typed.unicodeScalars.map(\.value))")
        }
    }

    @Test func aReceiptNeverPrintsItsDigits() {
        let receipt = Receipt.generate()
        #expect(receipt.digest.count == 32)
        var dumped = ""
        dump(receipt, to: &dumped)
        for text in ["\(receipt)", String(reflecting: receipt), dumped] {
            #expect(!text.contains(receipt.digits.prefix(6)) && !text.contains(receipt.digits.suffix(6)), "\(text)")
        }
    }
}
