import Crypto
import Foundation
import RelayCore
import RelayFormat

/// `amane-relay-bench crypto`: seal and open throughput against raw AEAD measured in the same run.
/// `amane-relay-bench self-check`: seals and opens a demo disclosure, as a smoke test of the build.
enum Bench {
    static func measure(seconds: Double = 1.0, _ body: () throws -> Void) rethrows -> Double {
        try body()
        let clock = ContinuousClock()
        let start = clock.now
        var iterations = 0
        while (clock.now - start) < .milliseconds(Int(seconds * 1000)) {
            try body()
            iterations += 1
        }
        let elapsed = clock.now - start
        return Double(iterations) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }

    static func crypto() throws {
        print("Sealed envelope throughput (release build, one core; ratio = envelope MB/s ÷ raw AEAD MB/s, same run)")
        print("suite                                    size     op    ops/s      MB/s   raw MB/s  ratio")
        for suite in SealingSuite.allCases {
            let key = SealingPrivateKey.generate(suite: suite)
            for size in [2 * 1024, 1024 * 1024] {
                let payload = [UInt8](repeating: 0x5a, count: size)
                let id = UUID.v7()
                let envelope = try Envelope.seal(payload, to: key.publicKey, kind: .disclosure, objectID: id)
                let raw = try rawAEADRate(suite: suite, size: size)
                let seal = try measure { _ = try Envelope.seal(payload, to: key.publicKey, kind: .disclosure, objectID: id) }
                let open = try measure { _ = try Envelope.open(envelope, with: key, kind: .disclosure, objectID: id) }
                for (name, rate) in [("seal", seal), ("open", open)] {
                    let mbps = rate * Double(size) / 1e6
                    let rawMBps = raw * Double(size) / 1e6
                    let label = suite.description.padding(toLength: 41, withPad: " ", startingAt: 0)
                        + (size >= 1 << 20 ? "1 MiB" : "2 KiB").padding(toLength: 9, withPad: " ", startingAt: 0)
                        + name.padding(toLength: 4, withPad: " ", startingAt: 0)
                    print(label + String(format: " %8.0f %9.1f %10.1f %6.3f", rate, mbps, rawMBps, mbps / rawMBps))
                }
            }
        }
        let passphrase = Array("bench passphrase".utf8)
        let text = try IdentityFile.encode(SealingPrivateKey.generate(), passphrase: passphrase)
        let sha = measure { _ = SHA256.hash(data: [UInt8](repeating: 1, count: 1 << 20)) }
        let unlock = try measure(seconds: 2) { _ = try IdentityFile.decode(text, passphrase: passphrase) }
        print(String(format: "scrypt unlock (N=2^17, r=8, p=1): %.0f ms; baseline SHA-256 of 1 MiB: %.2f ms; ratio %.0f×",
                     1000 / unlock, 1000 / sha, sha / unlock))
    }

    static func rawAEADRate(suite: SealingSuite, size: Int) throws -> Double {
        let key = SymmetricKey(size: .bits256)
        let payload = [UInt8](repeating: 0x5a, count: size)
        switch suite {
        case .xwingAESGCM: return try measure { _ = try AES.GCM.seal(payload, using: key) }
        case .x25519ChaChaPoly: return try measure { _ = try ChaChaPoly.seal(payload, using: key) }
        }
    }

    static func selfCheck() throws {
        let epoch = SealingPrivateKey.generate()
        let responder = SealingPrivateKey.generate()
        let grant = try Grant.seal(epoch, to: responder.publicKey)
        let id = UUID.v7()
        let text = "Demo: un enfant raconte / طفل يحكي — synthetic text"
        let envelope = try Envelope.seal(Array(text.utf8), to: epoch.publicKey, kind: .disclosure, objectID: id)
        let epochKey = try Grant.open(grant, epochID: epoch.id, with: responder)
        let opened = String(decoding: try Envelope.open(envelope, with: epochKey, kind: .disclosure, objectID: id), as: UTF8.self)
        guard opened == text else { throw FormatError(.openFailed, "self-check round trip differs") }
        print("Self-check passed: sealed \(text.utf8.count) bytes into a \(envelope.count)-byte envelope to epoch \(epoch.id),")
        print("opened it through a grant to responder \(responder.publicKey.fingerprint). Receipt format: \(Receipt.generate().grouped.map { $0.isNumber ? "#" : $0 }.map(String.init).joined())")
    }
}

let arguments = Array(CommandLine.arguments.dropFirst())
do {
    switch arguments.first {
    case "crypto", nil: try Bench.crypto()
    case "self-check": try Bench.selfCheck()
    case "store": try await StoreBench.run()
    case "store-writer" where arguments.count == 2: try await StoreWriter.run(directory: arguments[1])
    case "stream" where arguments.count == 2 && Int(arguments[1]) != nil: try StreamBench.run(mebibytes: Int(arguments[1])!)
    default:
        print("usage: amane-relay-bench [crypto | store | self-check | store-writer DIR | stream MIB]")
        exit(1)
    }
} catch {
    print("Error: \(error)")
    exit(1)
}
