import Foundation
import RelayFormat
import Synchronization

/// Seals what gateways send in plaintext, to the queue's epoch key.
///
/// With a window above zero, one shared HPKE context per epoch key seals every object for that long
/// (envelope format v2: one key encapsulation per window instead of one per object), and is then
/// dropped, whether or not more objects came. With a zero window each object gets its own (format v1).
final class IntakeSealer: Sendable {
    let window: Duration
    private let keys = Mutex<[String: SealingPublicKey]>([:])
    private let contexts = Mutex<[KeyID: (context: SharedSealingContext, created: ContinuousClock.Instant)]>([:])

    init(window: Duration) { self.window = window }

    /// A parsed epoch key, kept by its text so that intake does not parse the same key for every object.
    func key(_ text: String) -> SealingPublicKey? {
        if let key = keys.withLock({ $0[text] }) { return key }
        guard let key = try? SealingPublicKey(text: text) else { return nil }
        keys.withLock { keys in
            if keys.count >= 64 { keys.removeAll() }
            keys[text] = key
        }
        return key
    }

    // Kept out of line: inlined into an async caller, it crashes the Swift 6.3 optimizer (coroutine splitting).
    @inline(never)
    func seal(_ plaintext: some Collection<UInt8>, to key: SealingPublicKey, kind: ObjectKind, objectID: UUID) throws -> [UInt8] {
        guard window > .zero else { return try Envelope.seal(plaintext, to: key, kind: kind, objectID: objectID) }
        return try Envelope.seal(plaintext, using: try context(for: key), kind: kind, objectID: objectID)
    }

    /// The live context for `key`, or a new one that lives for one window.
    func context(for key: SealingPublicKey) throws -> SharedSealingContext {
        let now = ContinuousClock.now
        if let live = contexts.withLock({ $0[key.id] }), now - live.created < window { return live.context }
        let fresh = try SharedSealingContext(to: key)
        contexts.withLock { $0[key.id] = (fresh, now) }
        Task { [window] in
            try? await Task.sleep(for: window)
            self.contexts.withLock { contexts in
                if contexts[key.id]?.created == now { contexts[key.id] = nil }
            }
        }
        return fresh
    }

    /// How many contexts are held now.
    var liveContexts: Int { contexts.withLock { $0.count } }
}
