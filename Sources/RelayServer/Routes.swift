import Foundation
import HTTPTypes
import Hummingbird
import RelayAPI
import RelayCore
import RelayFormat
import RelayStore
import Prometheus

/// The API v1 handlers. Each route is registered with the roles the authorization table gives it.
struct RelayRoutes: Sendable {
    let db: RelayDatabase
    let limits: RelayConfiguration.Limits
    let receiptMisses: RateLimiter
    let receiptLookups: RateLimiter
    /// Bytes each gateway may store, refilled over a day.
    let storageQuota: RateLimiter
    let metrics: RelayMetrics
    let sealer: IntakeSealer
    /// How long a closed case is kept: its receipt goes with it.
    var closedRetentionDays = TriagePolicy.default.closedRetentionDays

    typealias Handler = @Sendable (Request, RelayRequestContext) async throws -> Response

    func register(on router: Router<RelayRequestContext>) {
        add(router, "POST", "/v1/disclosures", submitDisclosure)
        add(router, "POST", "/v1/followups", submitFollowup)
        add(router, "POST", "/v1/replies/fetch", fetchReplies)
        add(router, "GET", "/v1/queues/{queue}/sealing-key", sealingKey)
        add(router, "GET", "/v1/queue", listQueue)
        add(router, "GET", "/v1/disclosures/{id}", fetchCase)
        add(router, "POST", "/v1/disclosures/{id}/claim") { request, context in try await transition(context, .claim) }
        add(router, "POST", "/v1/disclosures/{id}/release") { request, context in try await transition(context, .release) }
        add(router, "POST", "/v1/disclosures/{id}/transition", transitionCase)
        add(router, "POST", "/v1/disclosures/{id}/notes", addNote)
        add(router, "POST", "/v1/disclosures/{id}/replies", addReply)
        add(router, "GET", "/v1/disclosures/{id}/reply-key", replyKey)
        add(router, "POST", "/v1/disclosures/{id}/assign", assign)
        add(router, "POST", "/v1/disclosures/{id}/hold", hold)
        add(router, "GET", "/v1/grants", listGrants)
        add(router, "POST", "/v1/grants", uploadGrants)
        add(router, "POST", "/v1/epochs", createEpoch)
        add(router, "GET", "/v1/members", listMembers)
        add(router, "GET", "/v1/stats", statistics)
        add(router, "GET", "/v1/audit", auditPage)
        add(router, "GET", "/v1/me") { _, context in
            let me = try context.caller
            return try .json(Identity(name: me.name.rawValue, role: me.role.rawValue, queue: me.queue.rawValue))
        }
        add(router, "GET", "/v1/taxonomy") { _, _ in
            // In the store's order (by position), which grouping keeps.
            let entries = try await db.taxonomyEntries()
            return try .json(TaxonomyListing(labels: Dictionary(grouping: entries, by: \.dimension.rawValue).mapValues { group in
                group.map { TaxonomyLabel(code: $0.code, fr: $0.fr, ar: $0.ar, en: $0.en) }
            }))
        }
        add(router, "GET", "/v1/openapi.yaml") { _, _ in
            Response(status: .ok, headers: [.contentType: MediaType.yaml], body: .init(byteBuffer: .init(string: OpenAPIDocument.yaml)))
        }
    }

    private func add(_ router: Router<RelayRequestContext>, _ method: String, _ path: String, _ handler: @escaping Handler) {
        let roles = Authorization.roles(for: RouteKey(method, path))
        router.on(RouterPath(path), method: HTTPRequest.Method(method)!) { request, context in
            let caller = try context.caller
            guard roles.contains(caller.role) else {
                let allowed = Role.allCases.filter(roles.contains).map { $0.rawValue + "s" }.joined(separator: " and ")
                throw APIError(.forbidden, "a \(caller.role.rawValue) may not call \(method) \(path); it is for \(allowed)")
            }
            return try await handler(request, context)
        }
    }

    // MARK: Gateways

    @Sendable func submitDisclosure(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let start = ContinuousClock.now
        let gateway = try context.caller
        let key = try Self.idempotencyKey(request, for: "disclosure")
        let (submission, body, canonical) = try await decodeSealable(DisclosureSubmission.self, from: request)
        let labels = try labels(submission, gateway: gateway)
        // A retry is recognised by what it says, not by how its JSON is laid out; the tag is keyed by the
        // idempotency key, so the stored value cannot be tested against a guessed narrative.
        let retryForm: Data
        do { retryForm = try IntakeCheck.retryForm(submission, canonical: canonical) } catch { throw APIError(error) }
        let requestTag = KeyedBox.tag(retryForm, secret: Array(key.utf8), context: Array(gateway.id.utf8))
        let result = try await sealThenStore(content: submission.content, sealed: submission.sealed, sealedID: nil, kind: .disclosure,
                                             caseID: nil, queue: labels.queue, bodySize: body.count, sender: gateway, idempotencyKey: key) { id, envelope in
            try await db.intake(IntakeRequest(gateway: gateway, labels: labels, id: id, envelope: envelope, idempotencyKey: key, requestHash: requestTag))
        }
        metrics.intakeLatency.record(ContinuousClock.now - start)
        return try .json(DisclosureReceipt(id: result.id, receipt: result.receipt.grouped, receivedAt: Timestamp.iso8601(result.receivedAt)),
                         status: .created)
    }

    @Sendable func submitFollowup(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let gateway = try context.caller
        let key = try Self.idempotencyKey(request, for: "follow-up")
        let (submission, body, canonical) = try await decodeSealable(FollowupSubmission.self, from: request)
        let (form, urgency): ([UInt8], Urgency?)
        do { (form, urgency) = (try IntakeCheck.retryForm(submission), try IntakeCheck.raisedUrgency(submission)) } catch { throw APIError(error) }
        let (receipt, caseID) = try caseFor(receipt: submission.receipt, gateway: gateway)
        let tag = { (form: [UInt8]) in KeyedBox.tag(form, secret: Array(key.utf8), context: Array("followup \(gateway.id)".utf8)) }
        let requestTag = tag(receipt + form)
        // Before the receipt's digest stood for its spelling, a follow-up in the clear was tagged on its whole body.
        let formerTag = submission.sealed == nil ? tag(Array(canonical)) : nil
        // A follow-up is sealed bound to its case, so the case comes first, and it is stored in that same case.
        guard let bound = UUID(uuidString: caseID) else { throw receiptMiss(gateway) }
        let stored: FollowupResult
        do {
            stored = try await sealThenStore(content: submission.content, sealed: submission.sealed, sealedID: submission.id, kind: .followup,
                                             caseID: bound, queue: gateway.queue, bodySize: body.count, sender: gateway, idempotencyKey: key) { id, envelope in
                try await db.addFollowup(gateway: gateway, caseID: caseID, objectID: id, envelope: envelope, raisingUrgencyTo: urgency,
                                         idempotencyKey: key, requestHash: requestTag, formerRequestHash: formerTag)
            }
        } catch let error as StoreError where error.code == .notFound {
            throw receiptMiss(gateway)
        }
        return try .json(FollowupAccepted(id: stored.id, receivedAt: Timestamp.iso8601(stored.receivedAt)), status: .created)
    }

    @Sendable func fetchReplies(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let gateway = try context.caller
        let (fetch, _) = try await request.decodeJSON(ReplyFetch.self, limit: limits.maxBodyBytes)
        let (receipt, _) = try caseFor(receipt: fetch.receipt, gateway: gateway)
        let (caseID, replies): (String, [SealedItem])
        do {
            (caseID, replies) = try await db.replies(gateway: gateway, receiptHash: receipt)
        } catch let error as StoreError where error.code == .notFound {
            throw receiptMiss(gateway)
        }
        return try .json(ReplyList(caseId: caseID, replies: replies.compactMap { item in
            item.gatewayEnvelope.map { SealedReply(id: item.id, sealed: Base64.encode($0), createdAt: Timestamp.iso8601(item.createdAt)) }
        }))
    }

    @Sendable func sealingKey(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let queue = try Self.queue(context.parameters.require("queue"))
        guard try context.caller.queue == queue else { throw APIError(.notFound, "no queue \(queue) for this gateway") }
        guard let epoch = try db.currentEpoch(queue: queue) else {
            throw APIError.noSealingKey("the queue \(queue) has no epoch yet; a responder runs `amane rotate`")
        }
        guard try db.currentEpochIsHeld(queue: queue) else { throw APIError(RelayDatabase.noHolder(queue)) }
        let fingerprint = sealer.key(epoch.publicKey)?.fingerprint ?? ""
        return try .json(SealingKeyInfo(queue: queue.rawValue, epoch: epoch.id, publicKey: epoch.publicKey, fingerprint: fingerprint,
                                        narrativeMaxBytes: limits.narrativeMaxBytes, contentMaxBytes: limits.maxBodyBytes))
    }

    /// A body that may carry sealed envelopes in `envelopeFields`: as large as they are, and the rest held to plain JSON's limit.
    private func decodeSealable<T: Codable>(_ type: T.Type, from request: Request,
                                            envelopeFields: Set<String> = ["sealed"]) async throws -> (T, [UInt8], Data) {
        try await request.decodeCanonicalJSON(type, limit: limits.largestBody, structureLimit: limits.maxBodyBytes, envelopeFields: envelopeFields)
    }

    /// Seals plaintext content (or accepts a gateway-sealed envelope) and stores it with `store`, within the
    /// gateway's storage quota. When a rotation lands between sealing and storing plaintext, the store says
    /// `staleEpoch`: seal again to the new epoch, once.
    private func sealThenStore<Stored: PossiblyReplayed>(content: DisclosureContent?, sealed: String?, sealedID: String?, kind: ObjectKind,
                                                         caseID: UUID?, queue: QueueName, bodySize: Int, sender: Principal, idempotencyKey: String,
                                                         store: (UUID, [UInt8]) async throws -> Stored) async throws -> Stored {
        let (id, envelope) = try sealOrAccept(content: content, sealed: sealed, sealedID: sealedID, kind: kind, caseID: caseID, queue: queue,
                                              bodySize: bodySize, sender: sender.id)
        var charge = envelope.count + Self.rowBytes
        if let wait = storageQuota.take(sender.id, cost: charge) {
            // A retry under a known key stores nothing new: it gets its first answer (or 409) whatever the quota.
            guard try db.isKnownIdempotencyKey(idempotencyKey, gatewayID: sender.id) else { throw overQuota(needing: charge, wait: wait) }
            charge = 0
        }
        do {
            let stored: Stored
            do {
                stored = try await store(id, envelope)
            } catch let error as StoreError where error.code == .staleEpoch && content != nil {
                let (id, envelope) = try sealOrAccept(content: content, sealed: nil, sealedID: nil, kind: kind, caseID: caseID, queue: queue,
                                                      bodySize: bodySize, sender: sender.id)
                stored = try await store(id, envelope)
            }
            if stored.replayed { storageQuota.giveBack(sender.id, cost: charge) }
            return stored
        } catch {
            storageQuota.giveBack(sender.id, cost: charge)
            throw error
        }
    }

    /// What a stored submission costs besides its envelope: its rows, index entries and audit entry, roughly.
    static let rowBytes = 1024

    private func overQuota(needing bytes: Int, wait: Int) -> APIError {
        APIError(.tooManyRequests, """
            this gateway has stored its quota for the day (limits.gatewayBytesPerDay, \(limits.gatewayBytesPerDay) bytes, refilled over \
            the day); this one needs \(bytes) bytes: send it again later, under the same idempotency key
            """, code: .storageQuotaExceeded, headers: [.retryAfter: String(wait)])
    }

    /// Seals plaintext content in memory at once, or checks a gateway-sealed envelope. Returns the object id and envelope.
    private func sealOrAccept(content: DisclosureContent?, sealed: String?, sealedID: String?, kind: ObjectKind, caseID: UUID?,
                              queue: QueueName, bodySize: Int, sender: String) throws -> (UUID, [UInt8]) {
        let payload: IntakePayload
        do {
            payload = try IntakeCheck.payload(content: content, sealed: sealed, sealedID: sealedID, bodySize: bodySize, limits: limits.intake)
        } catch {
            throw APIError(error)
        }
        switch payload {
        case .sealed(let envelope, let objectID):
            return (objectID, envelope)
        case .plaintext(let content):
            guard let epoch = try db.currentEpoch(queue: queue), let key = sealer.key(epoch.publicKey) else {
                throw APIError.noSealingKey("the queue \(queue) has no epoch yet; a responder runs `amane rotate`")
            }
            let id = UUID.v7()
            return (id, try sealer.seal(try StrictJSON.canonical(content), to: key, from: sender, kind: kind, objectID: id, caseID: caseID))
        }
    }

    /// The case a gateway's receipt names. Every lookup waits while the gateway's lookups are past a person's
    /// pace, which bounds guessing; one that names a case gives its turn back, so that a gateway's many reporters
    /// do not share one person's pace, and a guess that hits is no faster. A receipt that names a case is answered
    /// also while its gateway is past its limit of unknown receipts, which must not let one person at a kiosk
    /// lock every reporter out of their replies. A misheard receipt (its check digit) is refused before either counts.
    private func caseFor(receipt text: String, gateway: Principal) throws -> (digest: [UInt8], caseID: String) {
        let digest: [UInt8]
        do {
            digest = try Receipt(parsing: text).digest
        } catch {
            throw APIError(.badRequest, "field 'receipt': \(error.reason)", code: error.code == .receiptMisheard ? .receiptMisheard : .invalidRequest)
        }
        if let wait = receiptLookups.take(gateway.id) {
            throw APIError(.tooManyRequests, "too many receipt lookups from this gateway; wait before trying again", code: .receiptLookupsLimited,
                           headers: [.retryAfter: String(wait)])
        }
        guard let caseID = try db.caseID(receiptHash: digest, gateway: gateway) else { throw receiptMiss(gateway) }
        receiptLookups.giveBack(gateway.id)
        return (digest, caseID)
    }

    /// An unknown receipt (or a case purged between its lookup and its use): 404 within the gateway's limit, 429 past it.
    private func receiptMiss(_ gateway: Principal) -> APIError {
        guard let wait = receiptMisses.take(gateway.id) else { return unknownReceipt }
        metrics.receiptMissesRefused.increment()
        return APIError(.tooManyRequests, "too many unknown receipts from this gateway; wait before trying again", code: .unknownReceiptsLimited,
                        headers: [.retryAfter: String(wait)])
    }

    /// Said the same whether the receipt was mistyped or its case removed: the relay keeps nothing that tells them apart.
    private var unknownReceipt: APIError {
        APIError(.notFound, """
            no case for this receipt from this gateway: check its digits with the reporter. A case closed more than \(closedRetentionDays) days \
            ago is removed with its receipt; what a reporter tells after that is a new disclosure
            """, code: .unknownReceipt)
    }

    static func idempotencyKey(_ request: Request, for submission: String) throws -> String {
        guard let key = request.headers[HTTPField.Name(HeaderName.idempotencyKey)!], isValidIdempotencyKey(key) else {
            throw APIError(.badRequest, "send an Idempotency-Key header of 32 to 128 visible ASCII characters, random and new for each \(submission) (a UUIDv4 will do)")
        }
        return key
    }

    static func isValidIdempotencyKey(_ key: String) -> Bool {
        (32...128).contains(key.utf8.count) && key.utf8.allSatisfy { (0x21...0x7e).contains($0) }
    }

    static func queue(_ text: String) throws -> QueueName {
        guard let queue = QueueName(rawValue: text) else { throw APIError(.notFound, "no queue '\(text)'") }
        return queue
    }

    func labels(_ submission: DisclosureSubmission, gateway: Principal) throws -> DisclosureLabels {
        do { return try IntakeCheck.labels(submission, gatewayQueue: gateway.queue, taxonomy: db.taxonomy) } catch { throw APIError(error) }
    }

    // MARK: Members

    @Sendable func listQueue(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let query = request.uri.queryParameters
        let known: Set<Substring> = ["state", "urgency", "category", "mine", "overdue", "idMatch", "cursor", "limit"]
        if let unknown = query.first(where: { !known.contains($0.key) }) { throw APIError(.badRequest, "unknown parameter '\(unknown.key)'") }
        try Self.requireOnce(query, repeatable: ["state"])
        var filter = QueueFilter(queue: try context.caller.queue)
        for state in query[values: "state"] {
            guard let parsed = CaseState(rawValue: String(state)) else { throw APIError(.badRequest, "parameter 'state': unknown state '\(state)'") }
            filter.states.insert(parsed)
        }
        if let urgency = query["urgency"] {
            guard let parsed = Urgency(rawValue: String(urgency)) else { throw APIError(.badRequest, "parameter 'urgency': unknown urgency '\(urgency)'") }
            filter.urgency = parsed
        }
        if let category = query["category"] {
            guard db.taxonomy.contains(String(category), in: .category) else { throw APIError(.badRequest, "parameter 'category': unknown category '\(category)'") }
            filter.category = String(category)
        }
        if let mine = query["mine"] {
            guard mine == "true" || mine == "false" else { throw APIError(.badRequest, "parameter 'mine' is true or false") }
            if mine == "true" { filter.assigneeID = try context.caller.id }
        }
        if let overdue = query["overdue"] {
            guard overdue == "true" || overdue == "false" else { throw APIError(.badRequest, "parameter 'overdue' is true or false") }
            filter.overdue = overdue == "true"
        }
        if let match = query["idMatch"] {
            let lowered = match.lowercased()
            guard (4...36).contains(lowered.count), lowered.allSatisfy({ $0.isHexDigit || $0 == "-" }) else {
                throw APIError(.badRequest, "parameter 'idMatch' is 4 to 36 hex digits of a case id")
            }
            filter.idMatch = lowered
        }
        var cursor: QueueCursor?
        if let token = query["cursor"] {
            guard let parsed = QueueCursor(token: String(token)) else { throw APIError(.badRequest, "parameter 'cursor' is not a cursor from this API") }
            cursor = parsed
        }
        let limit = try Self.intParameter(query["limit"], name: "limit", range: 1...500) ?? 50
        let page = try await db.listQueue(filter, after: cursor, limit: limit)
        return try .json(QueueListing(cases: page.cases.map { CaseView($0, policy: db.options.policy) }, next: page.next?.token))
    }

    /// A parameter given twice is refused rather than read as its first value: `overdue=true&overdue=false` has no meaning.
    static func requireOnce<Query: Sequence>(_ query: Query, repeatable: Set<Substring> = []) throws where Query.Element == (key: Substring, value: Substring) {
        var seen: Set<Substring> = []
        for (key, _) in query where !repeatable.contains(key) && !seen.insert(key).inserted {
            throw APIError(.badRequest, "parameter '\(key)' is given more than once")
        }
    }

    static func intParameter(_ value: Substring?, name: String, range: ClosedRange<Int>) throws -> Int? {
        guard let value else { return nil }
        guard let number = Int(value), range.contains(number) else {
            throw APIError(.badRequest, "parameter '\(name)' must be a number from \(range.lowerBound) to \(range.upperBound)")
        }
        return number
    }

    static func caseID(_ context: RelayRequestContext) throws -> String {
        guard let text = context.parameters.get("id"), let id = UUID(uuidString: text) else { throw APIError(.notFound, "no such case") }
        return id.uuidString.lowercased()
    }

    @Sendable func replyKey(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let caseID = try Self.caseID(context)
        let (gateway, key) = try await db.replyKey(caseID: caseID, actor: try context.actor)
        return try .json(ReplyKey(caseId: caseID, gatewayKey: key, gateway: gateway))
    }

    @Sendable func fetchCase(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let detail = try await db.fetchCase(id: try Self.caseID(context), actor: try context.actor)
        return try .json(CaseFile(case: CaseView(detail.summary, policy: db.options.policy), disclosure: detail.disclosure.map(SealedObjectView.init),
                                  items: detail.items.map(SealedObjectView.init), gatewayKey: detail.gatewayKey))
    }

    private func transition(_ context: RelayRequestContext, _ action: TriageAction, referral: String? = nil, outcome: String? = nil,
                            assignee: PrincipalName? = nil) async throws -> Response {
        let summary = try await db.transition(id: try Self.caseID(context), action: action, actor: try context.actor,
                                              referral: referral, outcome: outcome, assignee: assignee)
        return try .json(CaseView(summary, policy: db.options.policy))
    }

    /// What POST /v1/disclosures/{id}/transition takes; claim and release have routes of their own.
    static let transitionActions: [TriageAction] = [.start, .refer, .close, .reopen]

    @Sendable func transitionCase(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let (body, _) = try await request.decodeJSON(TransitionRequest.self, limit: limits.maxBodyBytes)
        guard let action = TriageAction(rawValue: body.action), Self.transitionActions.contains(action) else {
            throw APIError(.badRequest, "field 'action' must be one of \(Self.transitionActions.map(\.rawValue).joined(separator: ", "))")
        }
        return try await transition(context, action, referral: body.referral, outcome: body.outcome)
    }

    @Sendable func assign(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let (body, _) = try await request.decodeJSON(AssignRequest.self, limit: limits.maxBodyBytes)
        guard let name = PrincipalName(rawValue: body.to) else { throw APIError(.badRequest, "field 'to' is not a member name") }
        return try await transition(context, .assign, assignee: name)
    }

    @Sendable func hold(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let (body, _) = try await request.decodeJSON(HoldRequest.self, limit: limits.maxBodyBytes)
        let id = try Self.caseID(context)
        try await db.setHold(id: id, on: body.on, actor: try context.actor)
        return try .json(CaseView(try await db.caseSummary(id: id), policy: db.options.policy))
    }

    static func envelope(_ text: String, field: String, limit: Int) throws -> [UInt8] {
        guard let bytes = Base64.decode(text) else { throw APIError(.badRequest, "field '\(field)' is not base64") }
        guard bytes.count <= limit else { throw APIError(.contentTooLarge, "field '\(field)' is too large") }
        return bytes
    }

    static func objectID(_ text: String) throws -> UUID {
        guard let id = UUID(uuidString: text) else { throw APIError(.badRequest, "field 'id' is not a UUID") }
        return id
    }

    @Sendable func addNote(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let (body, _, _) = try await decodeSealable(NoteSubmission.self, from: request)
        let id = try Self.objectID(body.id)
        try await db.addNote(caseID: try Self.caseID(context), objectID: id,
                             envelope: try Self.envelope(body.sealed, field: "sealed", limit: limits.maxEnvelopeBytes), actor: try context.actor)
        return try .json(Accepted(id: id.uuidString.lowercased()), status: .created)
    }

    @Sendable func addReply(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let (body, _, _) = try await decodeSealable(ReplySubmission.self, from: request, envelopeFields: ["sealed", "gatewaySealed"])
        let id = try Self.objectID(body.id)
        try await db.addReply(caseID: try Self.caseID(context), objectID: id,
                              envelope: try Self.envelope(body.sealed, field: "sealed", limit: limits.maxEnvelopeBytes),
                              gatewayEnvelope: try Self.envelope(body.gatewaySealed, field: "gatewaySealed", limit: limits.maxEnvelopeBytes),
                              actor: try context.actor)
        return try .json(Accepted(id: id.uuidString.lowercased()), status: .created)
    }

    // MARK: Keys

    @Sendable func listGrants(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let grants = try await db.grants(for: try context.caller)
        return try .json(GrantList(grants: grants.map {
            GrantView(epoch: $0.epochID, queue: $0.queue, sealed: Base64.encode($0.sealed), grantedBy: $0.grantedBy, current: $0.isCurrent)
        }))
    }

    static func decodeGrants(_ grants: [String: String]) throws -> [String: [UInt8]] {
        try grants.mapValues { text in
            guard let bytes = Base64.decode(text) else { throw APIError(.badRequest, "field 'grants' holds a value that is not base64") }
            return bytes
        }
    }

    @Sendable func uploadGrants(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let (body, _) = try await request.decodeJSON(GrantUpload.self, limit: limits.maxBodyBytes)
        let kept = try await db.addGrants(epochID: body.epoch, grants: try Self.decodeGrants(body.grants), actor: try context.actor)
        return try .json(GrantsStored(id: body.epoch, kept: kept), status: .created)
    }

    @Sendable func createEpoch(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let (body, _) = try await request.decodeJSON(EpochCreation.self, limit: limits.maxBodyBytes)
        let caller = try context.caller
        let queue = try body.queue.map(Self.queue) ?? caller.queue
        guard queue == caller.queue else {
            throw APIError(.forbidden, "you may create epochs only for your own queue, \(caller.queue)")
        }
        let epoch = try await db.createEpoch(queue: queue, publicKey: body.publicKey, grants: try Self.decodeGrants(body.grants), actor: StoreActor(caller))
        return try .json(EpochView(id: epoch.id, queue: epoch.queue, publicKey: epoch.publicKey, createdBy: epoch.createdBy, current: epoch.isCurrent),
                         status: .created)
    }

    @Sendable func listMembers(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let queue = try context.caller.queue
        let members = try await db.principals().filter { $0.isActive && $0.role.isMember && $0.queue == queue }
        let holders = try await db.currentKeyHolders(queue: queue)
        return try .json(MemberList(members: members.map { member in
            MemberView(name: member.name.rawValue, role: member.role.rawValue, sealingKey: member.sealingKey,
                       fingerprint: member.sealingKey.flatMap { try? SealingPublicKey(text: $0).fingerprint },
                       holdsCurrentKey: holders.contains(member.id))
        }))
    }

    @Sendable func statistics(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        try Self.requireOnce(request.uri.queryParameters)
        let by = request.uri.queryParameters["by"].map(String.init) ?? "month"
        guard let dimension = StatisticsDimension(rawValue: by) else {
            throw APIError(.badRequest, "parameter 'by' must be one of \(StatisticsDimension.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        func month(_ name: String) throws -> Month? {
            guard let text = request.uri.queryParameters[Substring(name)].map(String.init) else { return nil }
            guard let month = Month(text) else { throw APIError(.badRequest, "parameter '\(name)' must be a month as YYYY-MM, such as 2026-11") }
            return month
        }
        let from = try month("from"), to = try month("to")
        if let from, let to, to < from { throw APIError(.badRequest, "parameter 'to' (\(to)) comes before 'from' (\(from))") }
        let received = (from != nil || to != nil) ? (from?.start ?? Int64.min)..<(to?.end ?? Int64.max) : nil
        let queue = try context.caller.queue
        let rows = try await db.statistics(by: dimension, received: received, queue: queue)
        return try .json(Statistics(by: by, rows: rows.map { StatRow(key: $0.key, count: $0.count) }, from: from?.description, to: to?.description,
                                    queue: queue.rawValue))
    }

    @Sendable func auditPage(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let query = request.uri.queryParameters
        try Self.requireOnce(query)
        let after = try Self.intParameter(query["after"], name: "after", range: 0...Int.max) ?? 0
        let limit = try Self.intParameter(query["limit"], name: "limit", range: 1...1000) ?? 500
        let entries = try await db.auditEntries(after: Int64(after), limit: limit, readableIn: try context.caller.queue)
        return try .json(AuditPage(entries: entries.map { AuditEntryView($0.chained, withheld: $0.withheld) },
                                   next: entries.count == limit ? entries.last?.chained.entry.seq : nil))
    }
}

/// A stored submission, or the first answer to a retry of one.
protocol PossiblyReplayed {
    var replayed: Bool { get }
}

extension IntakeResult: PossiblyReplayed {}
extension FollowupResult: PossiblyReplayed {}
