import Crypto
import Foundation

struct IncrementalSHA256 {
    private var hasher = SHA256()
    mutating func update(_ bytes: some Collection<UInt8>) { hasher.update(data: Array(bytes)) }
    func finalize() -> [UInt8] { Array(hasher.finalize()) }
}

enum ResidentMemory {
    /// Resets VmHWM where the kernel allows it (Linux ≥ 4.0).
    static func resetPeak() {
        try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
    }

    static func peakBytes() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) else { return 0 }
        return kib * 1024
    }
}
