import Foundation
import RelayCore
import RelayFormat
import RelayStore
import Synchronization
import Testing

/// A clock tests can move forward.
final class TestClock: Sendable {
    private let current = Mutex(Date(timeIntervalSince1970: 1_780_000_000))
    var now: Date { current.withLock { $0 } }
    func advance(seconds: Double) { current.withLock { $0 = $0.addingTimeInterval(seconds) } }
}

/// Records group-commit batch sizes.
final class BatchLog: Sendable {
    let sizes = Mutex<[Int]>([])
    func record(_ size: Int) { sizes.withLock { $0.append(size) } }
}

/// Strings gathered from concurrent tasks.
final class Collected: Sendable {
    private let items = Mutex<[String]>([])
    func append(_ item: String) { items.withLock { $0.append(item) } }
    var all: [String] { items.withLock { $0 } }
}

/// A real database file in a temporary directory, its writer running, with a gateway, two responders,
/// a supervisor and a first epoch granted to the members.
final class StoreFixture: @unchecked Sendable {
    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let taxonomyYAML = try! String(contentsOf: repositoryRoot.appendingPathComponent("seeds/taxonomy.yaml"), encoding: .utf8)

    let directory: String
    let clock = TestClock()
    var db: RelayDatabase
    private var writer: Task<Void, Never>

    var gateway: Principal!
    var otherGateway: Principal!
    var responder: Principal!
    var colleague: Principal!
    var supervisor: Principal!
    let gatewayKey = SealingPrivateKey.generate(suite: .x25519ChaChaPoly)
    let otherGatewayKey = SealingPrivateKey.generate(suite: .x25519ChaChaPoly)
    let memberKeys = (0..<3).map { _ in SealingPrivateKey.generate(suite: .x25519ChaChaPoly) }
    var epochKey = SealingPrivateKey.generate(suite: .x25519ChaChaPoly)

    init(directory: String? = nil, options configure: (inout RelayDatabase.Options) -> Void = { _ in }, withEpoch: Bool = true) async throws {
        self.directory = directory ?? FileManager.default.temporaryDirectory.appendingPathComponent("amane-store-\(UUID().uuidString)").path
        let (db, writer) = try Self.open(self.directory, clock: clock, configure: configure)
        self.db = db
        self.writer = writer
        try await db.ensureQueue(.national, actor: .admin("test"))
        gateway = try await enroll("kiosk-casa", .gateway, gatewayKey)
        otherGateway = try await enroll("helpline-rabat", .gateway, otherGatewayKey)
        responder = try await enroll("resp-amina", .responder, memberKeys[0])
        colleague = try await enroll("resp-youssef", .responder, memberKeys[1])
        supervisor = try await enroll("sup-khadija", .supervisor, memberKeys[2])
        if withEpoch { try await rotate(by: responder) }
    }

    private static func open(_ directory: String, clock: TestClock, configure: (inout RelayDatabase.Options) -> Void) throws -> (RelayDatabase, Task<Void, Never>) {
        var options = RelayDatabase.Options()
        options.now = { clock.now }
        configure(&options)
        let db = try RelayDatabase(directory: directory, taxonomyYAML: taxonomyYAML, options: options)
        let writer = Task { await db.runWriter() }
        return (db, writer)
    }

    /// Closes and reopens the database, as a restart would.
    func reopen() async throws {
        writer.cancel()
        await writer.value
        let (db, writer) = try Self.open(directory, clock: clock, configure: { _ in })
        self.db = db
        self.writer = writer
    }

    func enroll(_ name: String, _ role: Role, _ key: SealingPrivateKey) async throws -> Principal {
        try await db.enroll(name: PrincipalName(rawValue: name)!, role: role, spkiFingerprint: Digest.hex(Digest.sha256(Array(name.utf8))),
                            sealingKey: key.publicKey.text, actor: .admin("test"))
    }

    func key(of member: Principal) -> SealingPrivateKey {
        [responder, colleague, supervisor].firstIndex { $0?.id == member.id }.map { memberKeys[$0] }!
    }

    /// A new epoch, granted to every active member.
    func rotate(by actor: Principal) async throws {
        epochKey = SealingPrivateKey.generate(suite: .x25519ChaChaPoly)
        var grants: [String: [UInt8]] = [:]
        for member in [responder, colleague, supervisor].compactMap({ $0 }) where member.isActive {
            grants[member.name.rawValue] = try Grant.seal(epochKey, to: key(of: member).publicKey)
        }
        _ = try await db.createEpoch(queue: .national, publicKey: epochKey.publicKey.text, grants: grants, actor: StoreActor(actor))
    }

    func labels(_ urgency: Urgency = .normal, category: String = "sexual_abuse") -> DisclosureLabels {
        DisclosureLabels(urgency: urgency, category: category, language: "ar", channel: "phone", region: "casablanca-settat")
    }

    @discardableResult
    func submit(_ text: String = "synthetic disclosure", urgency: Urgency = .normal, category: String = "sexual_abuse",
                key idempotencyKey: String = UUID().uuidString, gateway: Principal? = nil) async throws -> IntakeResult {
        try await db.intake(request(text, urgency: urgency, category: category, key: idempotencyKey, gateway: gateway))
    }

    /// A disclosure sealed and ready to submit.
    func request(_ text: String, urgency: Urgency = .normal, category: String = "sexual_abuse",
                 key idempotencyKey: String = UUID().uuidString, gateway: Principal? = nil) throws -> IntakeRequest {
        let id = UUID.v7(now: clock.now)
        let envelope = try Envelope.seal(Array(text.utf8), to: epochKey.publicKey, kind: .disclosure, objectID: id)
        return IntakeRequest(gateway: gateway ?? self.gateway, labels: labels(urgency, category: category), id: id, envelope: envelope,
                             idempotencyKey: idempotencyKey, requestHash: Digest.sha256(Array("\(text)|\(urgency)|\(category)".utf8)))
    }

    /// A second organisation's queue on the same relay, "bayti": a kiosk, a supervisor and a first key.
    struct SecondQueue {
        let name = QueueName(rawValue: "bayti")!
        let kiosk: Principal
        let supervisor: Principal
        let supervisorKey: SealingPrivateKey
        let epochKey: SealingPrivateKey
    }

    func addSecondQueue() async throws -> SecondQueue {
        let queue = QueueName(rawValue: "bayti")!
        let kioskKey = SealingPrivateKey.generate(suite: .x25519ChaChaPoly), supervisorKey = SealingPrivateKey.generate(suite: .x25519ChaChaPoly)
        let kiosk = try await db.enroll(name: PrincipalName(rawValue: "kiosk-bayti")!, role: .gateway, spkiFingerprint: "bayti-kiosk",
                                        sealingKey: kioskKey.publicKey.text, queue: queue, creatingQueue: true, actor: .admin("test"))
        let supervisor = try await db.enroll(name: PrincipalName(rawValue: "sup-nadia")!, role: .supervisor, spkiFingerprint: "bayti-nadia",
                                             sealingKey: supervisorKey.publicKey.text, queue: queue, actor: .admin("test"))
        let epochKey = SealingPrivateKey.generate(suite: .x25519ChaChaPoly)
        _ = try await db.createEpoch(queue: queue, publicKey: epochKey.publicKey.text,
                                     grants: [supervisor.name.rawValue: try Grant.seal(epochKey, to: supervisorKey.publicKey)], actor: StoreActor(supervisor))
        return SecondQueue(kiosk: kiosk, supervisor: supervisor, supervisorKey: supervisorKey, epochKey: epochKey)
    }

    @discardableResult
    func submit(to second: SecondQueue, urgency: Urgency = .high, category: String = "trafficking") async throws -> IntakeResult {
        let id = UUID.v7(now: clock.now)
        return try await db.intake(IntakeRequest(
            gateway: second.kiosk, labels: DisclosureLabels(queue: second.name, urgency: urgency, category: category, language: "ar", channel: "kiosk"),
            id: id, envelope: try Envelope.seal(Array("bayti".utf8), to: second.epochKey.publicKey, kind: .disclosure, objectID: id),
            idempotencyKey: UUID().uuidString, requestHash: Digest.sha256(id.bytes)))
    }

    /// A follow-up, note or reply sealed as the members' tools do: bound to its case.
    func sealed(_ text: String, kind: ObjectKind, in caseID: String, id: UUID = UUID.v7(), to key: SealingPublicKey? = nil) throws -> (UUID, [UInt8]) {
        (id, try Envelope.seal(Array(text.utf8), to: key ?? epochKey.publicKey, kind: kind, objectID: id, caseID: UUID(uuidString: caseID)!))
    }

    /// Every file of the data directory, raw.
    func rawFiles() throws -> [String: Data] {
        var files: [String: Data] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: directory) {
            files[name] = FileManager.default.contents(atPath: (directory as NSString).appendingPathComponent(name))
        }
        return files
    }

    deinit {
        writer.cancel()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

extension StoreError {
    static func code(_ code: StoreError.Code) -> StoreError { StoreError(code, "") }
}

extension Data {
    func contains(_ needle: [UInt8]) -> Bool { range(of: Data(needle)) != nil }
}
