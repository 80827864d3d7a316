@testable import RelayServer
import Synchronization
import Testing

@Suite struct RateLimiterTests {
    @Test func aTokenGivenBackCanBeTakenAgainButNeverBeyondCapacity() {
        let limiter = RateLimiter(capacity: 2, per: .seconds(3600))
        let now = ContinuousClock.now
        #expect(limiter.take("kiosk", now: now) == nil && limiter.take("kiosk", now: now) == nil)
        #expect(limiter.take("kiosk", now: now) == 1800, "one token comes back every half hour")
        #expect(limiter.take("helpline", now: now) == nil, "each key has its own bucket")

        limiter.giveBack("kiosk", now: now)
        #expect(limiter.take("kiosk", now: now) == nil)
        #expect(limiter.take("kiosk", now: now) != nil)

        for _ in 0..<5 { limiter.giveBack("kiosk", now: now) }
        #expect(limiter.take("kiosk", now: now) == nil && limiter.take("kiosk", now: now) == nil)
        #expect(limiter.take("kiosk", now: now) != nil, "giving back more than was taken does not raise the capacity")
        limiter.giveBack("never-seen", now: now)
        #expect(limiter.take("never-seen", now: now) == nil && limiter.take("never-seen", now: now) == nil)
        #expect(limiter.take("never-seen", now: now) != nil)
    }
}

extension RateLimiterTests {
    @Test func lookupsSentAtOnceCannotPassTheLimitTogether() async throws {
        final class Tally: Sendable {
            let counts = Mutex(["inside": 0, "limited": 0])
            func add(_ name: String) { counts.withLock { $0[name]! += 1 } }
            var settled: Bool { counts.withLock { $0["inside"]! + $0["limited"]! == 5 } }
        }
        let limiter = RateLimiter(capacity: 2, per: .seconds(3600))
        let tally = Tally()
        let outcomes = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<5 {
                group.addTask {
                    let outcome = try await limiter.guarded("kiosk") { () async throws -> String? in
                        // Each lookup lasts until every guess has begun its own or been refused, as on a busy relay.
                        tally.add("inside")
                        return try await Self.waitUntil { tally.settled } ? nil : "timed out"
                    }
                    switch outcome {
                    case .found(let value): return value
                    case .missing: return "missing"
                    case .limited: tally.add("limited"); return "limited"
                    }
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(outcomes.sorted() == ["limited", "limited", "limited", "missing", "missing"])
    }

    @Test func aFoundLookupOrAFailedOneGivesItsTokenBack() async throws {
        struct Unavailable: Error {}
        let limiter = RateLimiter(capacity: 1, per: .seconds(3600))
        for _ in 0..<3 {
            guard case .found("case-1") = try await limiter.guarded("kiosk", { "case-1" }) else { Issue.record("not found"); return }
            await #expect(throws: Unavailable.self) { _ = try await limiter.guarded("kiosk") { () async throws -> String? in throw Unavailable() } }
        }
        guard case .missing = try await limiter.guarded("kiosk", { nil as String? }) else { Issue.record("a miss keeps its token"); return }
        guard case .limited(let wait) = try await limiter.guarded("kiosk", { "case-1" }) else { Issue.record("not limited"); return }
        #expect(wait > 0, "even a receipt that exists waits: 200 against 429 would tell a gateway over its limit which receipts exist")
    }

    static func waitUntil(_ condition: () -> Bool) async throws -> Bool {
        for _ in 0..<500 where !condition() { try await Task.sleep(for: .milliseconds(10)) }
        return condition()
    }
}
