import Foundation
import RelayCore
import Synchronization

/// Token buckets keyed by principal: `capacity` tokens, refilled at `perSecond`. A request costs one token, or
/// as many as the bytes it stores.
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

    /// Takes `cost` tokens; returns nil when allowed, else the seconds to wait.
    func take(_ key: String, cost: Int = 1, now: ContinuousClock.Instant = .now) -> Int? {
        let cost = Double(cost)
        return buckets.withLock { buckets in
            var bucket = buckets[key] ?? Bucket(tokens: capacity, updated: now)
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated).inSeconds * perSecond)
            bucket.updated = now
            defer { buckets[key] = bucket }
            if bucket.tokens >= cost {
                bucket.tokens -= cost
                return nil
            }
            return max(1, Int(((cost - bucket.tokens) / perSecond).rounded(.up)))
        }
    }

    /// Returns tokens taken for something that, in the end, is not to count.
    func giveBack(_ key: String, cost: Int = 1) {
        buckets.withLock { buckets in
            guard var bucket = buckets[key] else { return }
            bucket.tokens = min(capacity, bucket.tokens + Double(cost))
            buckets[key] = bucket
        }
    }
}

/// The bytes of request bodies each principal has on the way at once. A body costs the relay a few times its size
/// while it is read and decoded, so without this one stolen certificate could make it hold gigabytes with many
/// large bodies sent together.
final class BodyBudget: Sendable {
    private let perPrincipal: Int
    private let reserved = Mutex<[String: Int]>([:])

    init(perPrincipal: Int) { self.perPrincipal = perPrincipal }

    /// Reserves `bytes` for `key`; false when that would pass its budget.
    func reserve(_ bytes: Int, for key: String) -> Bool {
        guard bytes > 0 else { return true }
        return reserved.withLock { reserved in
            let total = reserved[key, default: 0] + bytes
            guard total <= perPrincipal else { return false }
            reserved[key] = total
            return true
        }
    }

    func release(_ bytes: Int, for key: String) {
        guard bytes > 0 else { return }
        reserved.withLock { reserved in
            let left = reserved[key, default: 0] - bytes
            reserved[key] = left > 0 ? left : nil
        }
    }
}
