public import Foundation
import Hummingbird
import HummingbirdCore
import Prometheus
import HummingbirdTLS
public import Logging
import NIOCore
import NIOSSL
import RelayAPI
import RelayCore
public import RelayStore
public import ServiceLifecycle
import SwiftASN1
import Synchronization
import UnixSignals
import X509

/// The running relay: its services, and what tests and the CLI need to know about it.
public struct RelayServerApp: Sendable {
    public let services: [any Service]
    public let db: RelayDatabase
    /// Resolves with the HTTPS and ops ports once both listen.
    public let bound: BoundPorts
    let logger: Logger
}

/// Set once a graceful shutdown begins.
final class StoppingSignal: Service, Sendable {
    private let state = Mutex(false)
    var isSet: Bool { state.withLock { $0 } }

    func run() async throws {
        try? await gracefulShutdown()
        state.withLock { $0 = true }
    }
}

/// The ports actually bound (port 0 picks a free one).
public final class BoundPorts: Sendable {
    private let state = Mutex<(https: Int?, ops: Int?)>((nil, nil))

    public var https: Int? { state.withLock { $0.https } }
    public var ops: Int? { state.withLock { $0.ops } }
    /// Each returns true for the call that completes the pair.
    func set(https: Int) -> Bool { state.withLock { $0.https = https; return $0.ops != nil } }
    func set(ops: Int) -> Bool { state.withLock { $0.ops = ops; return $0.https != nil } }

    /// What the daemon prints once ready; tests and benchmarks read the ports from it.
    var listeningLine: String { "amane-relayd: listening on port \(https ?? 0), ops on port \(ops ?? 0)" }

    /// Waits until both listeners are up.
    public func ready() async {
        while https == nil || ops == nil { try? await Task.sleep(for: .milliseconds(10)) }
    }
}

/// Certificate and key served in TLS handshakes, swapped on SIGHUP without dropping connections.
final class TLSIdentity: Sendable {
    private let state: Mutex<(chain: [NIOSSLCertificate], key: NIOSSLPrivateKey)>

    init(configuration: RelayConfiguration) throws {
        state = Mutex(try Self.load(configuration))
    }

    static func load(_ configuration: RelayConfiguration) throws -> (chain: [NIOSSLCertificate], key: NIOSSLPrivateKey) {
        let chainPEM = try RelayConfiguration.read(configuration.certificateFile, key: "tls.certificateFile")
        guard let chain = try? NIOSSLCertificate.fromPEMBytes(Array(chainPEM.utf8)), !chain.isEmpty else {
            throw RelayConfiguration.Invalid(key: "tls.certificateFile", reason: "no PEM certificate in \(configuration.certificateFile)")
        }
        let keyPEM = try configuration.readPrivateKeyPEM()
        // The key comes from the systemd credential when there is one, else from the file.
        let keySetting = configuration.privateKeyPEM == nil ? "tls.keyFile" : "tls.privateKey"
        let keySource = configuration.privateKeyPEM == nil ? configuration.privateKeyFile : "the credential tls-privateKey"
        guard let key = try? NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem) else {
            throw RelayConfiguration.Invalid(key: keySetting, reason: "no PEM private key in \(keySource)")
        }
        // Serving a certificate for another key would fail every handshake; a key swift-certificates cannot read goes unchecked.
        if let leaf = try? Certificate(derEncoded: chain[0].toDERBytes()), let privateKey = try? Certificate.PrivateKey(pemEncoded: keyPEM),
           leaf.publicKey != privateKey.publicKey {
            throw RelayConfiguration.Invalid(key: keySetting, reason: """
                the certificate in \(configuration.certificateFile) is not for the relay's private key (from \(keySource)); \
                renew it with `amane-relayd admin renew-server-cert`, or restart to load a new key
                """)
        }
        return (chain, key)
    }

    func reload(_ configuration: RelayConfiguration) throws {
        let fresh = try Self.load(configuration)
        state.withLock { $0 = fresh }
    }

    var current: (chain: [NIOSSLCertificate], key: NIOSSLPrivateKey) { state.withLock { $0 } }

    /// When the served certificate stops being valid.
    var expiry: Date? {
        guard let leaf = current.chain.first, let certificate = try? Certificate(derEncoded: leaf.toDERBytes()) else { return nil }
        return certificate.notValidAfter
    }

    /// What ops must hear of a certificate that has expired or expires within 30 days; nil otherwise.
    static func expiryWarning(_ expiry: Date, now: Date = Date()) -> String? {
        let day = String(Timestamp.iso8601(Int64(expiry.timeIntervalSince1970)).prefix(10))
        let renew = "renew it with `amane-relayd admin renew-server-cert`, then reload (systemctl reload amane-relayd)"
        if expiry <= now { return "the TLS certificate expired on \(day): clients refuse it; \(renew)" }
        let days = Int(expiry.timeIntervalSince(now) / 86_400)
        return days < 30 ? "the TLS certificate expires on \(day), in \(days) days; \(renew)" : nil
    }

    /// Logs what `expiryWarning` says and sets the expiry gauge: at start, on reload, and daily.
    func reportExpiry(_ metrics: RelayMetrics, logger: Logger) {
        guard let expiry else { return }
        metrics.tlsCertificateExpiry.set(expiry.timeIntervalSince1970)
        guard let warning = Self.expiryWarning(expiry) else { return }
        if expiry <= Date() { logger.error("\(warning)") } else { logger.warning("\(warning)") }
    }
}

extension RelayServerApp {
    /// Sets the client-certificate gauges and names the principals whose certificate ends within 30 days: all the
    /// kiosks enrolled on one day would otherwise stop on one day, two years later.
    static func reportClientCertificates(_ db: RelayDatabase, metrics: RelayMetrics, logger: Logger, now: Date = Date()) async throws {
        let nowSeconds = Int64(now.timeIntervalSince1970)
        let soon = metrics.update(certificateEnds: try await db.certificateEnds(), now: nowSeconds)
        guard !soon.isEmpty else { return }
        let named = soon.prefix(20).map { "\($0.key) (\($0.value <= nowSeconds ? "ended" : "ends") \(Timestamp.iso8601($0.value).prefix(10)))" }
        let message: Logger.Message = """
            client certificates end within 30 days: \(named.joined(separator: ", "))\(soon.count > 20 ? " and \(soon.count - 20) more" : ""); \
            issue each a new one with `amane-relayd admin reissue NAME --out DIR` (or, for a key they keep, with --csr and --keep-key) and hand it over
            """
        if soon.contains(where: { $0.value <= nowSeconds }) { logger.error(message) } else { logger.warning(message) }
    }

    static func reportCAExpiry(_ end: Date, metrics: RelayMetrics, logger: Logger, now: Date = Date()) {
        metrics.tlsCAExpiry.set(end.timeIntervalSince1970)
        guard let warning = CertificateAuthority.expiryWarning(end, now: now) else { return }
        if end <= now { logger.error("\(warning)") } else { logger.warning("\(warning)") }
    }

    /// Builds the HTTPS API, the ops listener and the background services from a configuration.
    /// Services shut down in reverse order: the API drains first, the group-commit writer last.
    public static func build(configuration: RelayConfiguration, logger: Logger) async throws -> RelayServerApp {
        // The TLS files first: a mistyped --data-dir must fail before it leaves an empty database behind.
        let identity = try TLSIdentity(configuration: configuration)
        let caPEM = try RelayConfiguration.read(configuration.caFile, key: "tls.caFile")
        let caEnd = try configuration.checkClientCA(caPEM: caPEM)
        let metrics = RelayMetrics()
        var options = RelayDatabase.Options()
        options.policy = configuration.policy
        options.batchObserver = { metrics.batchSizes.record(Double($0)) }
        let dataDirectory = configuration.dataDirectory
        options.writeHealthObserver = { failure in
            metrics.storeCannotWrite.set(Double(failure == nil ? 0 : 1))
            if let failure {
                logger.error("the store cannot write: nothing is acknowledged until it can", metadata: ["relay.error": "\(failure)", "relay.dataDirectory": "\(dataDirectory)"])
            } else {
                logger.notice("the store writes again")
            }
        }
        let taxonomy = try? RelayConfiguration.readSeed("taxonomy.yaml", in: configuration.seedsDirectory)
        let db = try RelayDatabase(directory: configuration.dataDirectory, taxonomyYAML: taxonomy, options: options)
        guard !db.taxonomy.codes.isEmpty else {
            throw RelayConfiguration.Invalid(key: "seeds.directory", reason: "no taxonomy in the database and none at \(configuration.seedsDirectory)/taxonomy.yaml; \(RelayConfiguration.findingSeeds)")
        }
        let auditWatch = AuditTailWatch(db: db, metrics: metrics, logger: logger)
        let writeCheck = StoreWriteCheck(db: db, directory: dataDirectory, room: 2 * Int64(configuration.limits.largestSubmission),
                                         freeBytes: metrics.storeFreeBytes, logger: logger)

        let trustRoots = try NIOSSLCertificate.fromPEMBytes(Array(caPEM.utf8))
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: identity.current.chain.map { .certificate($0) }, privateKey: .privateKey(identity.current.key))
        tls.minimumTLSVersion = .tlsv13
        tls.maximumTLSVersion = .tlsv13
        tls.certificateVerification = .noHostnameVerification
        tls.trustRoots = .certificates(trustRoots)
        tls.sslContextCallback = { _, promise in
            let current = identity.current
            var override = NIOSSLContextConfigurationOverride()
            override.certificateChain = current.chain.map { .certificate($0) }
            override.privateKey = .privateKey(current.key)
            promise.succeed(override)
        }

        let bound = BoundPorts()
        // Only once both listen: a relay that cannot take its ops port never said it was listening.
        let announce: @Sendable () -> Void = {
            logger.notice("listening", metadata: ["relay.url": "https://\(RelayConfiguration.Address(host: configuration.listen.host, port: bound.https ?? 0))",
                                                 "relay.ops": "http://\(RelayConfiguration.Address(host: configuration.opsListen.host, port: bound.ops ?? 0))",
                                                 "relay.version": "\(RelayVersion.current)"])
        }
        let router = Router(context: RelayRequestContext.self)
        let gatewayTally = GatewayTally()
        router.add(middleware: RequestLogMiddleware(metrics: metrics, gateways: gatewayTally))
        router.add(middleware: ProblemMiddleware())
        router.add(middleware: AuthenticationMiddleware(
            db: db, limiter: RateLimiter(capacity: configuration.limits.requestsPerMinute, per: .seconds(60)),
            bodies: BodyBudget(perPrincipal: configuration.limits.bodyBytesInFlight), largestBody: configuration.limits.largestBody))
        RelayRoutes(db: db, limits: configuration.limits,
                    receiptMisses: RateLimiter(capacity: configuration.limits.receiptMissesPerHour, per: .seconds(3600)),
                    receiptLookups: RateLimiter(capacity: configuration.limits.receiptLookupsPerMinute, per: .seconds(60)),
                    storageQuota: RateLimiter(capacity: configuration.limits.gatewayBytesPerDay, per: .seconds(86_400)),
                    metrics: metrics, sealer: IntakeSealer(window: .milliseconds(configuration.sharedContextMilliseconds)),
                    closedRetentionDays: configuration.policy.closedRetentionDays).register(on: router)

        let http1 = HTTP1Channel.Configuration(
            additionalChannelHandlers: [TLSFailureCounter(metrics: metrics, tally: gatewayTally),
                                        RequestDeadlineHandler(limit: .seconds(Int64(configuration.limits.requestBodySeconds)), timedOutRequests: metrics.requestsTimedOut, logger: logger),
                                        StalledReaderHandler(limit: .seconds(Int64(configuration.limits.idleTimeoutSeconds))),
                                        MalformedRequestAnswer()],
            idleTimeout: .seconds(Int64(configuration.limits.idleTimeoutSeconds)),
            httpDecoderConfiguration: .init(maxHeaderFieldSize: 16 * 1024, maxHeaderListSize: 64 * 1024, maxHeaderFieldCount: 100))
        let api = Application(
            router: router,
            server: try .tls(HTTPServerBuilder { RelayHTTP1Channel(base: HTTP1Channel(responder: $0, configuration: http1)) }, tlsConfiguration: tls),
            configuration: .init(address: .hostname(configuration.listen.host, port: configuration.listen.port), serverName: "amane-relayd"),
            onServerRunning: { channel in
                if bound.set(https: channel.localAddress?.port ?? configuration.listen.port) { announce() }
            },
            logger: logger)

        // HEAD as GET without the body, for load balancers that probe with it; the API's GETs are not all free of effects
        // (a case file read is audited and marks its follow-ups opened), so HEAD there stays 405.
        let opsRouter = Router(options: .autoGenerateHeadEndpoints)
        opsRouter.get("/healthz") { _, _ in "ok\n" }
        let stopping = StoppingSignal()
        opsRouter.get("/readyz") { _, _ -> Response in
            if stopping.isSet { return Response(status: .serviceUnavailable, body: .init(byteBuffer: .init(string: "not ready: shutting down\n"))) }
            let readable = await db.isReadable()
            guard bound.https != nil && readable else { return Response(status: .serviceUnavailable, body: .init(byteBuffer: .init(string: "not ready\n"))) }
            if let failure = await writeCheck.failure() {
                return Response(status: .serviceUnavailable, body: .init(byteBuffer: .init(string: "not ready: \(failure)\n")))
            }
            // Still ready: responders must reach the relay to create the first key.
            let unsealed = (try? await db.queuesWithoutSealingKey()) ?? []
            return Response(status: .ok, body: .init(byteBuffer: .init(string: unsealed.isEmpty ? "ready\n" : "ready; \(RelayServerApp.noSealingKey(unsealed))\n")))
        }
        opsRouter.get("/metrics") { _, _ -> Response in
            if let depth = try? await db.queueDepth() { metrics.update(depth: depth) }
            if let unsealed = try? await db.queuesWithoutSealingKey() { metrics.queuesWithoutSealingKey.set(Double(unsealed.count)) }
            if let holders = try? await db.currentKeyHolders() { metrics.update(keyHolders: holders) }
            // Enrolments, reissues and revocations are made by other processes: read the ends at every scrape.
            if let ends = try? await db.certificateEnds() { metrics.update(certificateEnds: ends, now: Int64(Date().timeIntervalSince1970)) }
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                            body: .init(byteBuffer: .init(string: metrics.exposition)))
        }
        let ops = Application(
            router: opsRouter,
            configuration: .init(address: .hostname(configuration.opsListen.host, port: configuration.opsListen.port), serverName: "amane-relayd-ops"),
            onServerRunning: { channel in
                if bound.set(ops: channel.localAddress?.port ?? configuration.opsListen.port) { announce() }
            },
            logger: logger)

        let notifier = configuration.slaNotifyCommand.map { SLANotifier(command: $0, failures: metrics.slaNotifyFailures, logger: logger) }
        let services: [any Service] = [
            WriterService(db: db),
            PeriodicService(name: "lease reaper", every: .seconds(30), logger: logger) {
                let count = try await db.reapExpiredClaims()
                if count > 0 { logger.info("returned expired claims to the queue", metadata: ["relay.count": "\(count)"]) }
            },
            PeriodicService(name: "retention sweep", every: .seconds(3600), logger: logger) {
                let purged = try await db.purgeExpiredCases()
                let forgotten = try await db.expireIdempotencyKeys()
                metrics.retentionPurged.increment(by: Int64(purged))
                metrics.retentionLastSweep.set(Date().timeIntervalSince1970)
                if purged + forgotten > 0 { logger.info("retention sweep", metadata: ["relay.purged": "\(purged)", "relay.idempotency": "\(forgotten)"]) }
            },
            // Both first run at start: a relay started on a full disk says so before a client writes.
            PeriodicService(name: "store write check", every: .seconds(60), logger: logger) { _ = await writeCheck.failure(telling: true) },
            PeriodicService(name: "audit trail check", every: .seconds(3600), logger: logger) { auditWatch.check() },
            PeriodicService(name: "SLA monitor", every: .seconds(60), logger: logger) {
                let depth = try await db.queueDepth()
                metrics.update(depth: depth)
                for (queue, urgencies) in depth.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
                    for (urgency, value) in urgencies.sorted(by: { $0.key.rank < $1.key.rank }) where value.pastSLA > 0 {
                        logger.warning("cases past their SLA", metadata: ["relay.queue": "\(queue.rawValue)", "relay.urgency": "\(urgency.rawValue)",
                                                                          "relay.count": "\(value.pastSLA)", "relay.unopened_followups": "\(value.unopened)"])
                        if let notifier { Task { await notifier.notify(queue, urgency, count: value.pastSLA) } }
                    }
                }
            },
            PeriodicService(name: "certificate check", every: .seconds(86_400), logger: logger) {
                identity.reportExpiry(metrics, logger: logger)
                if let caEnd { RelayServerApp.reportCAExpiry(caEnd, metrics: metrics, logger: logger) }
                try await RelayServerApp.reportClientCertificates(db, metrics: metrics, logger: logger)
            },
            GatewayTallyService(tally: gatewayTally, logger: logger),
            TLSReloader(identity: identity, configuration: configuration, metrics: metrics, logger: logger,
                        hangups: await UnixSignalsSequence(trapping: .sighup)),
            ops,
            api,
            SystemdNotifier(logger: logger) { await bound.ready() },
            // Last, so told first of a shutdown: /readyz says so while the API drains.
            stopping,
        ]
        return RelayServerApp(services: services, db: db, bound: bound, logger: logger)
    }

    /// What ops hear while a queue has no key yet (queue names are no secret).
    static func noSealingKey(_ queues: [QueueName]) -> String {
        "no sealing key that an active member holds for the queue \(queues.map(\.rawValue).joined(separator: ", ")): intake answers 503 until a member runs `amane rotate`"
    }

    /// Warns once at start when a queue has no key, so that a fresh install says what it waits for.
    static func warnOfQueuesWithoutSealingKey(_ db: RelayDatabase, logger: Logger) async {
        guard let unsealed = try? await db.queuesWithoutSealingKey(), !unsealed.isEmpty else { return }
        logger.warning("\(Self.noSealingKey(unsealed))")
    }

    /// The routes the API router serves, as "METHOD /path/{param}".
    static func routeDescriptions(db: RelayDatabase) -> [String] {
        let router = Router(context: RelayRequestContext.self)
        let limits = RelayConfiguration.Limits(maxBodyBytes: 1, maxEnvelopeBytes: 1, narrativeMaxBytes: 1, requestsPerMinute: 1,
                                               receiptMissesPerHour: 1, receiptLookupsPerMinute: 1, idleTimeoutSeconds: 1, requestBodySeconds: 1,
                                               gatewayBytesPerDay: 1)
        RelayRoutes(db: db, limits: limits, receiptMisses: RateLimiter(capacity: 1, per: .seconds(1)),
                    receiptLookups: RateLimiter(capacity: 1, per: .seconds(1)), storageQuota: RateLimiter(capacity: 1, per: .seconds(1)), metrics: RelayMetrics(),
                    sealer: IntakeSealer(window: .zero)).register(on: router)
        return router.routes.map { "\($0.method.rawValue) \($0.path.description)" }
    }

    /// Runs every service until SIGTERM or SIGINT, then drains in-flight requests and their commits.
    public func run() async throws {
        var group = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        // limits.requestBodySeconds (at most 30) and TLS's close, within systemd's TimeoutStopSec=45s.
        group.maximumGracefulShutdownDuration = .seconds(40)
        try await ServiceGroup(configuration: group).run()
        logger.notice("stopped; every acknowledged write is committed")
    }
}

/// Checks the audit trail's guard and last link, at start and then hourly: serving goes on (children still need
/// the relay), but the gauge and a critical line tell ops, once each time it breaks.
final class AuditTailWatch: Sendable {
    let db: RelayDatabase
    let metrics: RelayMetrics
    let logger: Logger
    private let wasBroken = Mutex(false)

    init(db: RelayDatabase, metrics: RelayMetrics, logger: Logger) {
        self.db = db
        self.metrics = metrics
        self.logger = logger
    }

    func check() {
        let problem: String?
        do {
            problem = try db.auditTailProblem().map { "the audit trail is broken: \($0); run `amane-relayd admin audit verify` and treat it as a possible compromise" }
        } catch {
            // A tail that cannot even be read is as much a reason to look.
            problem = "the audit trail could not be checked (\(type(of: error))); run `amane-relayd admin audit verify`"
        }
        metrics.auditTrailBroken.set(Double(problem == nil ? 0 : 1))
        let newlyBroken = wasBroken.withLock { wasBroken in
            defer { wasBroken = problem != nil }
            return problem != nil && !wasBroken
        }
        if newlyBroken, let problem { logger.critical("\(problem)") }
    }
}

/// Runs the group-commit writer; on shutdown it commits what is queued, then stops.
struct WriterService: Service {
    let db: RelayDatabase

    func run() async throws {
        await withGracefulShutdownHandler {
            await db.runWriter()
        } onGracefulShutdown: {
            db.closeWriter()
        }
        // A clean stop leaves one self-contained database file, with the WAL folded in.
        try? db.checkpoint()
    }
}

/// Runs `work` every `interval` until shutdown; a failure is logged and retried next time.
struct PeriodicService: Service {
    let name: String
    let interval: Duration
    let logger: Logger
    let work: @Sendable () async throws -> Void

    init(name: String, every interval: Duration, logger: Logger, work: @escaping @Sendable () async throws -> Void) {
        self.name = name
        self.interval = interval
        self.logger = logger
        self.work = work
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    try await work()
                } catch {
                    // Shutting down closes the store under a running task: nothing to warn about.
                    guard !Task.isCancelled else { break }
                    // A StoreError's reason names ids and states, never content; anything else only by its type.
                    let reason = (error as? StoreError).map(\.description) ?? "\(type(of: error))"
                    logger.warning("\(name) failed", metadata: ["relay.error": "\(reason)"])
                }
                try? await Task.sleep(for: interval)
            }
        }
    }
}

/// Reloads the TLS certificate and key on SIGHUP; open connections keep theirs. The signal is trapped when
/// the app is built, before it listens: a reload sent as soon as systemd hears READY=1 is not lost.
struct TLSReloader: Service {
    let identity: TLSIdentity
    let configuration: RelayConfiguration
    let metrics: RelayMetrics
    let logger: Logger
    let hangups: UnixSignalsSequence

    func run() async throws {
        for await _ in hangups.cancelOnGracefulShutdown() {
            do {
                try identity.reload(configuration)
                logger.notice("reloaded the TLS certificate and key")
                identity.reportExpiry(metrics, logger: logger)
            } catch {
                logger.error("could not reload the TLS certificate; keeping the old one", metadata: ["relay.error": "\(error)"])
            }
        }
    }
}

