@testable import RelayServer
import Testing

@Suite struct RateLimiterTests {
    @Test func eachKeyHasItsCapacityAndRefillsOverTheWindow() {
        let limiter = RateLimiter(capacity: 2, per: .seconds(3600))
        let now = ContinuousClock.now
        #expect(limiter.take("kiosk", now: now) == nil && limiter.take("kiosk", now: now) == nil)
        #expect(limiter.take("kiosk", now: now) == 1800, "one token comes back every half hour")
        #expect(limiter.take("helpline", now: now) == nil, "each key has its own bucket")
        #expect(limiter.take("kiosk", now: now + .seconds(1799)) == 1, "a token not yet whole is not given")
        #expect(limiter.take("kiosk", now: now + .seconds(1801)) == nil)
        #expect(limiter.take("kiosk", now: now + .seconds(1801)) != nil)
        #expect(limiter.take("helpline", now: now + .seconds(86_400)) == nil && limiter.take("helpline", now: now + .seconds(86_400)) == nil)
        #expect(limiter.take("helpline", now: now + .seconds(86_400)) != nil, "an idle day refills to capacity, not beyond")
    }
}
