import Foundation
import RelayCore
import Synchronization

/// Token buckets keyed by principal: `capacity` tokens, refilled at `perSecond`.
final class RateLimiter: Sendable {
    private struct Bucket {
        var tokens: Double
        var updated: ContinuousClock.Instant
    }

    private let capacity: Double
    private let perSecond: Double
    private let buckets = Mutex<[String: Bucket]>([:])

    init(capacity: Int, per window: Duration) {
        self.capacity = Double(max(1, capacity))
        self.perSecond = self.capacity / max(window.inSeconds, 0.001)
    }

    /// Takes a token; returns nil when allowed, else the seconds to wait.
    func take(_ key: String, now: ContinuousClock.Instant = .now) -> Int? {
        buckets.withLock { buckets in
            var bucket = buckets[key] ?? Bucket(tokens: capacity, updated: now)
            bucket.tokens = refilledTokens(in: bucket, at: now)
            bucket.updated = now
            defer { buckets[key] = bucket }
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                return nil
            }
            return max(1, Int(((1 - bucket.tokens) / perSecond).rounded(.up)))
        }
    }

    private func refilledTokens(in bucket: Bucket, at now: ContinuousClock.Instant) -> Double {
        min(capacity, bucket.tokens + (now - bucket.updated).inSeconds * perSecond)
    }

    /// Returns a token that `take` gave, when what it guarded turned out not to cost one.
    func giveBack(_ key: String, now: ContinuousClock.Instant = .now) {
        buckets.withLock { buckets in
            guard var bucket = buckets[key] else { return }
            bucket.tokens = min(capacity, refilledTokens(in: bucket, at: now) + 1)
            bucket.updated = now
            buckets[key] = bucket
        }
    }
}

/// What a lookup on a budget of misses came to.
enum Guarded<Value> {
    case found(Value)
    case missing
    case limited(retryAfter: Int)
}

extension RateLimiter {
    /// Looks something up on `key`'s budget of misses. The lookup holds a token, so lookups sent at once cannot
    /// pass the limit together; one that finds what it looked for (or fails) gives the token back.
    func guarded<Value>(_ key: String, _ lookup: () async throws -> Value?) async throws -> Guarded<Value> {
        if let wait = take(key) { return .limited(retryAfter: wait) }
        let value: Value?
        do {
            value = try await lookup()
        } catch {
            giveBack(key)
            throw error
        }
        guard let value else { return .missing }
        giveBack(key)
        return .found(value)
    }
}
