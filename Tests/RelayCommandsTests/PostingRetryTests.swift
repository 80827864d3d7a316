import ArgumentParser
import Foundation
import NIOSSL
@testable import RelayCommands
import RelayAPI
import Testing

/// Sealed text is posted again while the relay cannot be reached or gives no answer: its own id makes a second
/// copy a `duplicate`, which says the first arrived.
@Suite struct PostingRetryTests {
    final class Attempts: @unchecked Sendable {
        var outcomes: [CLIError?]
        var count = 0
        init(_ outcomes: [CLIError?]) { self.outcomes = outcomes }

        func post() throws {
            count += 1
            if let failure = outcomes.removeFirst() { throw failure }
        }
    }

    static let refused = CLIError(.unreachable, "cannot reach the relay (connection refused)")
    static let unanswered = CLIError(.unreachable, "no answer from the relay", hint: nil, json: nil, outcomeUnknown: true)
    static let duplicate = CLIError(.refused, "an object with this id is stored already", hint: nil, json: nil, problemCode: ProblemCode.duplicate.rawValue)
    static let forbidden = CLIError(.refused, "a gateway may not call this", hint: nil, json: nil, problemCode: ProblemCode.forbidden.rawValue)

    func run(_ attempts: Attempts) async -> (any Error)? {
        do {
            try await TextInput.posting(retryingAfter: [.zero, .zero]) { try attempts.post() }
            return nil
        } catch {
            return error
        }
    }

    @Test func aRelayBackOnTheSecondTryGetsTheTextOnce() async {
        let attempts = Attempts([Self.refused, nil])
        #expect(await run(attempts) == nil && attempts.count == 2)
    }

    @Test func aDuplicateAfterAnUnansweredPostMeansTheFirstArrived() async {
        let attempts = Attempts([Self.unanswered, Self.duplicate])
        #expect(await run(attempts) == nil && attempts.count == 2)
    }

    @Test func aDuplicateAtTheFirstTryIsAFailure() async {
        let error = await run(Attempts([Self.duplicate]))
        #expect((error as? CLIError)?.problemCode == "duplicate")
    }

    @Test func aRefusalIsNotTriedAgain() async {
        let attempts = Attempts([Self.forbidden, nil])
        #expect((await run(attempts) as? CLIError)?.problemCode == "forbidden" && attempts.count == 1)
    }

    @Test func aFailedSecureConnectionIsNotTriedAgain() async {
        var wrongCA = CLIError(.unreachable, "the secure connection failed: its certificate could not be verified")
        wrongCA.secureConnectionFailed = true
        let attempts = Attempts([wrongCA, nil, nil])
        #expect((await run(attempts) as? CLIError)?.secureConnectionFailed == true && attempts.count == 1)
        // After a post that went out unanswered, it still may have been stored.
        let afterUnanswered = Attempts([Self.unanswered, wrongCA, nil])
        #expect(await run(afterUnanswered) is TextInput.PossiblyStored && afterUnanswered.count == 2)
    }

    @Test func onlyAFailedHandshakeSaysNothingWasSent() throws {
        // A TLS failure after the handshake may come after the request went out (GoldenTests meets a refused certificate).
        let afterTheHandshake = try #require(RelayClient.tlsFailure(NIOSSLError.readInInvalidTLSState))
        #expect(!afterTheHandshake.certificateRefused && !afterTheHandshake.nothingSent)
        let inTheHandshake = try #require(RelayClient.tlsFailure(NIOSSLError.handshakeFailed(.unknownError([]))))
        #expect(!inTheHandshake.certificateRefused && inTheHandshake.nothingSent)
        #expect(RelayClient.tlsFailure(NIOSSLError.uncleanShutdown) == nil, "a connection cut is no TLS failure")
    }

    @Test func neverReachedItIsNotStoredAndOnceUnansweredItMayBe() async {
        let never = Attempts([Self.refused, Self.refused, Self.refused])
        let neverError = await run(never)
        #expect(neverError is CLIError && never.count == 3, "three tries, none left the machine: \(String(describing: neverError))")
        let once = Attempts([Self.unanswered, Self.refused, Self.refused])
        #expect(await run(once) is TextInput.PossiblyStored && once.count == 3)
        // Once a post may have stored it, a later refusal (the case moved on) does not say it was not.
        let thenRefused = Attempts([Self.unanswered, Self.forbidden])
        #expect(await run(thenRefused) is TextInput.PossiblyStored && thenRefused.count == 2)
        // 503 unavailable says nothing was stored.
        let busy = CLIError(.server, "the relay failed: busy", hint: nil, json: nil, problemCode: ProblemCode.unavailable.rawValue)
        #expect(await run(Attempts([busy, busy, busy])) is CLIError)
    }

    /// A submission the relay answered "nothing was stored" needs no key kept to retry under; any other failure of the relay does.
    @Test func onlyASubmissionThatMayBeStoredKeepsItsKey() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("amane-send-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let profile = try Profile.load(directory)
        let sending = try SendingOptions.parse([])
        for (problem, mayBeStored) in [("unavailable", false), ("no_sealing_key", false), ("internal", true)] {
            let failure = CLIError(.server, "HTTP 503", json: nil, problemCode: problem)
            await #expect { try await sending.send(under: "key-\(problem)", profile: profile, retrying: "amane submit x.json") { () async throws -> Int in throw failure } } throws: {
                (($0 as? CLIError)?.hint ?? "").contains("It may have been stored") == mayBeStored
            }
            let kept = (try? FileManager.default.contentsOfDirectory(atPath: directory + "/unanswered")) ?? []
            #expect(kept.count == (mayBeStored ? 1 : 0), "\(problem): \(kept)")
        }
        let modes = try [directory + "/unanswered", directory + "/unanswered/" + FileManager.default.contentsOfDirectory(atPath: directory + "/unanswered")[0]]
            .map { try FileManager.default.attributesOfItem(atPath: $0)[.posixPermissions] as? Int }
        #expect(modes == [0o700, 0o600])

        // A retry under a key given again: a try that stored nothing does not say the earlier one did not.
        let retrying = try SendingOptions.parse(["--idempotency-key", "retry-key-0000000001"])
        let full = CLIError(.server, "HTTP 503", json: nil, problemCode: "unavailable")
        await #expect { try await retrying.send(under: "retry-key-0000000001", profile: profile, retrying: "amane submit x.json") { () async throws -> Int in throw full } } throws: {
            (($0 as? CLIError)?.hint ?? "").contains("This try stored nothing, but an earlier one under this key may have")
        }
        let reused = CLIError(.refused, "HTTP 409", hint: "Nothing was stored.", json: nil, problemCode: "idempotency_key_reused")
        await #expect { try await retrying.send(under: "retry-key-0000000001", profile: profile, retrying: "amane submit x.json") { () async throws -> Int in throw reused } } throws: {
            let hint = ($0 as? CLIError)?.hint ?? ""
            return hint.contains("An earlier request under this key was stored") && !hint.hasPrefix("Nothing was stored")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory + "/unanswered").count == 1, "a key given again is not saved again")
    }
}
