import Dispatch
import Foundation
import RelayCore
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
    private let contexts = Mutex<[ContextKey: (context: SharedSealingContext, created: ContinuousClock.Instant)]>([:])

    /// Contexts are per epoch key and per gateway, so that objects from different gateways never share an
    /// encapsulated key: one gateway's own submissions cannot date another's.
    struct ContextKey: Hashable {
        var recipient: KeyID
        var sender: String
    }

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

    /// Seals what `sender` (a gateway's principal id) sent; a follow-up is bound to its case.
    func seal(_ plaintext: some Collection<UInt8>, to key: SealingPublicKey, from sender: String, kind: ObjectKind,
              objectID: UUID, caseID: UUID? = nil) throws -> [UInt8] {
        guard window > .zero else { return try Envelope.seal(plaintext, to: key, kind: kind, objectID: objectID, caseID: caseID) }
        return try Envelope.seal(plaintext, using: try context(for: key, from: sender), kind: kind, objectID: objectID, caseID: caseID)
    }

    /// The live context for `key` and `sender`, or a new one that lives for one window. Expired contexts go
    /// by a timer when their window ends, and whenever a new context is made.
    func context(for key: SealingPublicKey, from sender: String) throws -> SharedSealingContext {
        let now = ContinuousClock.now
        let slot = ContextKey(recipient: key.id, sender: sender)
        let window = self.window
        if let live = contexts.withLock({ $0[slot] }), now - live.created < window { return live.context }
        let fresh = try SharedSealingContext(to: key)
        contexts.withLock { contexts in
            contexts = contexts.filter { now - $0.value.created < window }
            contexts[slot] = (fresh, now)
        }
        // A Dispatch timer, not a task: a saturated concurrency pool must not keep a context alive.
        DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(Int(window.inNanoseconds))) {
            self.contexts.withLock { contexts in
                if contexts[slot]?.created == now { contexts[slot] = nil }
            }
        }
        return fresh
    }

    /// How many contexts are held now.
    var liveContexts: Int { contexts.withLock { $0.count } }
}
