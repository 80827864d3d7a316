@testable import RelayServer
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
