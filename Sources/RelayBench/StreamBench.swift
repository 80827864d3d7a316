import Crypto
import Foundation
import RelayCore
import RelayFormat

/// `amane-relay-bench stream MIB`: seals MIB mebibytes from a generator straight into the opener and prints
/// one JSON line with the throughput and this process's peak resident growth. Running alone in its own
/// process, the peak belongs to the stream only; the memory test reads it from there.
enum StreamBench {
    struct Report: Codable {
        var bytes: Int
        var largestSealedPiece: Int
        var roundTripIntact: Bool
        var peakResidentGrowthBytes: Int
        var megabytesPerSecond: Double
    }

    static func run(mebibytes: Int) throws {
        let total = mebibytes * 1024 * 1024
        let key = SealingPrivateKey.generate()
        let id = UUID()
        var block = (0..<(48 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 131) }
        let residentBefore = ResidentMemory.currentBytes()
        let start = ContinuousClock.now

        var sealer = try EnvelopeSealer(to: key.publicKey, kind: .disclosure, objectID: id)
        var opener = EnvelopeOpener(key: key, kind: .disclosure, objectID: id)
        var plainIn = SHA256()
        var plainOut = SHA256()
        var largestPiece = try opener.update(sealer.header).count
        var fed = 0
        while fed < total {
            block[0] = UInt8(truncatingIfNeeded: fed >> 16)
            let piece = block.prefix(total - fed)
            plainIn.update(data: piece)
            let sealed = try sealer.update(piece)
            largestPiece = max(largestPiece, sealed.count)
            plainOut.update(data: try opener.update(sealed))
            fed += piece.count
        }
        plainOut.update(data: try opener.update(try sealer.finish()))
        plainOut.update(data: try opener.finish())

        let elapsed = ContinuousClock.now - start
        let seconds = elapsed.inSeconds
        let report = Report(bytes: total, largestSealedPiece: largestPiece,
                            roundTripIntact: plainIn.finalize() == plainOut.finalize(),
                            peakResidentGrowthBytes: ResidentMemory.peakBytes() - residentBefore,
                            megabytesPerSecond: Double(total) / 1e6 / seconds)
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        print(String(decoding: try encoder.encode(report), as: UTF8.self))
    }
}

/// Resident memory from the kernel: now (`VmRSS`) or at its peak (`VmHWM`), of this process or another.
enum ResidentMemory {
    static func currentBytes(pid: String = "self") -> Int { statusField("VmRSS:", pid: pid) }
    static func peakBytes(pid: String = "self") -> Int { statusField("VmHWM:", pid: pid) }

    private static func statusField(_ name: String, pid: String) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name) }),
              let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) else { return 0 }
        return kib * 1024
    }
}
