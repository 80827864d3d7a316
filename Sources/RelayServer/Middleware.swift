import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOSSL
import NIOTLS
import Prometheus
import RelayAPI
import RelayFormat
import SwiftASN1
import Synchronization
import RelayCore
import X509
import RelayStore
import ServiceLifecycle

/// Maps the verified client certificate to a principal on every request, so a revocation bites at once, checks
/// that the certificate is still within its dates (a resumed TLS session is not verified again: its ticket would
/// outlive the certificate), and applies the principal's token bucket and body budget.
struct AuthenticationMiddleware: RouterMiddleware {
    typealias Context = RelayRequestContext
    let db: RelayDatabase
    let limiter: RateLimiter
    let bodies: BodyBudget
    let largestBody: Int

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let certificate = try? await context.channel.nioSSL_peerCertificate().get(),
              let spki = try? certificate.extractPublicKey().toSPKIBytes() else {
            throw APIError(.forbidden, "a client certificate is required", code: .notEnrolled)
        }
        let now = time(nil)
        guard certificate.notValidBefore <= now, now <= certificate.notValidAfter else {
            context.trace.unenrolledName.withLock { $0 = Self.issuedName(certificate).map { "an ended certificate issued to \($0)" } }
            throw APIError(.forbidden, "this client certificate has ended; ask an admin for a new one", code: .certificateExpired)
        }
        let fingerprint = SPKIFingerprint.of(spki: spki)
        guard let principal = try db.principal(spkiFingerprint: fingerprint) else {
            let whose = try db.retiredKeyOwner(spkiFingerprint: fingerprint).map { "a retired certificate of \($0)" }
                ?? Self.issuedName(certificate).map { "a certificate issued to \($0)" }
            context.trace.unenrolledName.withLock { $0 = whose }
            throw APIError(.forbidden, "this certificate is not enrolled", code: .notEnrolled)
        }
        // Named before a refusal, so that the log says who was refused or slowed down.
        var context = context
        context.principal = principal
        guard principal.isActive else { throw APIError(.forbidden, "\(principal.name) has been revoked", code: .revoked) }
        if let wait = limiter.take(principal.id) {
            throw APIError(.tooManyRequests, "too many requests; slow down", headers: [.retryAfter: String(wait)])
        }
        // What the body will take, as declared: one larger than its route takes is refused unread (413).
        let bodyBytes = request.headers[.contentLength].flatMap { Int($0) }.map { min($0, largestBody) }
            ?? (request.headers[.transferEncoding] == nil ? 0 : largestBody)
        guard bodies.reserve(bodyBytes, for: principal.id) else {
            throw APIError(.tooManyRequests, "too many large bodies on the way at once from \(principal.name); send again once the others are answered",
                           headers: [.retryAfter: "1"])
        }
        defer { bodies.release(bodyBytes, for: principal.id) }
        return try await next(request, context)
    }

    /// The common name the relay's CA issued the certificate to, when it is a principal's name (nothing else is logged).
    static func issuedName(_ certificate: NIOSSLCertificate) -> String? {
        guard let der = try? certificate.toDERBytes(), let parsed = try? Certificate(derEncoded: der) else { return nil }
        return parsed.subject.commonNames.first.flatMap(PrincipalName.init(rawValue:))?.rawValue
    }
}

/// Logs one line per request (route pattern, status, principal, request id, duration) and counts it.
/// Never the body, the query, the receipt or the peer's address. A gateway's requests go to the debug level
/// and into a tally logged once a minute: a line timed to the second with a kiosk's name would date a
/// visit more finely than the store does. So do requests without an enrolled certificate, which anyone may send.
struct RequestLogMiddleware: RouterMiddleware {
    typealias Context = RelayRequestContext
    let metrics: RelayMetrics
    let gateways: GatewayTally

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        var context = context
        context.logger[metadataKey: "relay.request.id"] = "\(context.requestID)"
        let response = try await next(request, context)
        let route = context.endpointPath ?? "unmatched"
        metrics.countRequest(route: route, method: request.method.rawValue, status: response.status.code)
        let elapsed = ContinuousClock.now - start
        let principal = context.trace.principal.withLock { $0 }
        let problem = context.trace.problem.withLock { $0 }
        let unenrolled = context.trace.unenrolledName.withLock { $0 }
        var metadata: Logger.Metadata = [
            "relay.route": "\(request.method.rawValue) \(route)",
            "relay.principal": "\(principal?.name ?? "-")",
            "relay.status": "\(response.status.code)",
            "relay.duration_ms": "\(elapsed.inNanoseconds / 1_000_000)",
        ]
        // Which refusal it was (revoked, rate_limited, not_enrolled…): a status alone does not tell.
        if let problem { metadata["relay.problem"] = "\(problem)" }
        // Requests without an enrolled certificate are tallied too: a client could otherwise fill the journal with them.
        if principal == nil || principal?.role == .gateway {
            gateways.count(principal?.name ?? "-", "\(request.method.rawValue) \(route) \(response.status.code)\(problem.map { " \($0)" } ?? "")"
                           + (unenrolled.map { " (\($0))" } ?? ""))
            context.logger.debug("request", metadata: metadata)
        } else {
            context.logger.info("request", metadata: metadata)
        }
        var headers = response.headers
        headers[HTTPField.Name("Request-Id")!] = context.requestID
        var tagged = response
        tagged.headers = headers
        return tagged
    }
}

/// Counts failed TLS handshakes by reason, for the metrics and the minute's tally of unauthenticated traffic.
/// An error after the handshake (a client that hangs up without a TLS close) is not a failed handshake.
final class TLSFailureCounter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    let metrics: RelayMetrics
    let tally: GatewayTally
    private var settled = false

    init(metrics: RelayMetrics, tally: GatewayTally) {
        self.metrics = metrics
        self.tally = tally
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent { settled = true }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !settled, error is NIOSSLError || error is BoringSSLError {
            settled = true
            let reason = HandshakeFailure(error)
            metrics.countHandshakeFailure(reason)
            let code = reason == .other ? String(describing: error).firstMatch(of: /OPENSSL_internal:([A-Z0-9_]+)/).map { " (\($0.output.1))" } : nil
            tally.count("-", "TLS handshake failed: \(reason.explanation)\(code ?? "")")
        }
        context.fireErrorCaught(error)
    }
}

/// Why a TLS handshake failed, in the few kinds ops can act on.
enum HandshakeFailure: String, CaseIterable, Sendable {
    case noCertificate = "no_certificate"
    case certificateRefused = "certificate_refused"
    /// The client sent an alert: it refused the relay's own certificate (expired, or another CA in its profile).
    /// OpenSSL's clients (curl, Python) send it unencrypted, in a record too short to be one: BAD_PACKET_LENGTH.
    case serverCertificateRefused = "server_certificate_refused"
    case notTLS = "not_tls"
    case protocolMismatch = "protocol"
    case abandoned
    case other

    init(_ error: any Error) {
        let text = String(describing: error)
        func mentions(_ names: String...) -> Bool { names.contains { text.contains($0) } }
        self = if mentions("EOF during handshake") { .abandoned }
            else if mentions("PEER_DID_NOT_RETURN_A_CERTIFICATE") { .noCertificate }
            else if mentions("UNSUPPORTED_PROTOCOL", "PROTOCOL_VERSION", "NO_SHARED_CIPHER", "NO_SHARED_GROUP") { .protocolMismatch }
            else if mentions("_ALERT_", "BAD_PACKET_LENGTH") { .serverCertificateRefused }
            else if mentions("CERTIFICATE_VERIFY_FAILED") { .certificateRefused }
            else if mentions("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST") { .notTLS }
            else { .other }
    }

    var explanation: String {
        switch self {
        case .noCertificate: "no client certificate"
        case .certificateRefused: "a client certificate not from this relay's CA, or expired"
        case .serverCertificateRefused: "the client refused the relay's certificate (expired, or another CA in its profile)"
        case .notTLS: "not TLS (plain HTTP?)"
        case .protocolMismatch: "no TLS version or cipher in common"
        case .abandoned: "the client hung up during the handshake"
        case .other: "another TLS error"
        }
    }
}

/// Answers 408 and closes a connection whose request has not fully arrived `limit` after its head. The idle
/// timeout cannot: a client that sends its body a byte at a time is never idle, and would hold the connection
/// for ever. The 408 goes out only once every earlier pipelined request is answered and nothing of this one's
/// answer is, else the connection just closes; what the route answers later is dropped. An answer sent before
/// its own request ended (a body refused as too large) closes the connection too, and says so: the rest of that body
/// is not worth waiting for. Unless the request declared a small body (`drainableBytes` at most): then the rest is read
/// and dropped, and the connection serves on. Closed with a body still arriving, the kernel would reset it, and the
/// client could lose the answer (a 429 or 403 sent before the body was read).
final class RequestDeadlineHandler: ChannelDuplexHandler, RemovableChannelHandler {
    static let drainableBytes = 1 << 20
    typealias InboundIn = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart
    let limit: TimeAmount
    let timedOutRequests: Counter
    /// Says why the connection closed; the route, whose body read fails with it, logs only its 408.
    let logger: Logger
    private var method = ""
    private var deadline: Scheduled<Void>?
    private var requestsBegun = 0
    private var answersBegun = 0
    private var answersEnded = 0
    private var timedOut = false
    /// The request still arriving declared a body small enough to read to its end after an early answer.
    private var drainable = false

    init(limit: TimeAmount, timedOutRequests: Counter, logger: Logger) {
        self.limit = limit
        self.timedOutRequests = timedOutRequests
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !timedOut else { return }
        switch unwrapInboundIn(data) {
        case .head(let head):
            requestsBegun += 1
            method = head.method.rawValue
            drainable = head.headerFields[.contentLength].flatMap { Int($0) }.map { $0 <= Self.drainableBytes } ?? false
            deadline?.cancel()
            deadline = context.eventLoop.assumeIsolated().scheduleTask(in: limit) { self.timeOut(context) }
        case .end:
            deadline?.cancel()
            deadline = nil
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    private func timeOut(_ context: ChannelHandlerContext) {
        timedOut = true
        timedOutRequests.increment()
        let answered = answersBegun == requestsBegun - 1 && answersEnded == answersBegun
        logger.info("a request's body did not arrive in time; the connection is closed", metadata: [
            "relay.method": "\(method)", "relay.status": "\(answered ? "408" : "none")", "relay.limit_s": "\(limit.nanoseconds / 1_000_000_000)"])
        guard answered else { return context.close(promise: nil) }
        let body = Response.problemBody(.requestTimeout, detail: "the request's body did not arrive within \(limit.nanoseconds / 1_000_000_000) s of its head")
        let head = HTTPResponse(status: .requestTimeout, headerFields: [.contentType: RelayAPI.MediaType.problem,
                                                                      .contentLength: String(body.readableBytes), .connection: "close"])
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(body)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard !timedOut else { return promise?.fail(ChannelError.ioOnClosedChannel) ?? () }
        switch unwrapOutboundIn(data) {
        case .head(var head):
            answersBegun += 1
            if closesEarly(answer: answersBegun) {
                head.headerFields[.connection] = "close"
                return context.write(wrapOutboundOut(.head(head)), promise: promise)
            }
        case .body: break
        case .end:
            answersEnded += 1
            // The answer to the request still arriving: its body is not worth waiting for.
            if closesEarly(answer: answersEnded) {
                let written = context.eventLoop.makePromise(of: Void.self)
                written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
                written.futureResult.cascade(to: promise)
                return context.write(data, promise: written)
            }
        }
        context.write(data, promise: promise)
    }

    /// Whether this answer goes to the request still arriving, whose body is too large to read to its end.
    private func closesEarly(answer: Int) -> Bool { deadline != nil && answer == requestsBegun && !drainable }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
    }
}

/// HTTP/1.1 as Hummingbird serves it, with what it misses because it sees requests only after their HTTP version is
/// gone: a request that ends its connection (HTTP/1.0 without keep-alive, `Connection: Close` in any case) closes it
/// once answered, instead of holding it until the idle timeout; `Expect: 100-continue` is answered; and a request
/// RFC 9112 says must not be served is refused.
struct RelayHTTP1Channel: ServerChildChannel {
    let base: HTTP1Channel

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<HTTP1Channel.Value> {
        base.setup(channel: channel, logger: logger).flatMapThrowing { value in
            let codec = try channel.pipeline.syncOperations.handler(type: HTTP1ToHTTPServerCodec.self)
            try channel.pipeline.syncOperations.addHandler(RequestFramingHandler(), position: .before(codec))
            try channel.pipeline.syncOperations.addHandler(LastRequestHandler(), position: .before(codec))
            try channel.pipeline.syncOperations.addHandler(ExpectContinueHandler(), position: .before(codec))
            return value
        }
    }

    func handle(value: HTTP1Channel.Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

/// Refuses, before Hummingbird sees it, an HTTP/1.1 request without one valid Host (400, as RFC 9112 says a server must),
/// a body in a transfer coding other than chunked (501), and CONNECT or an Upgrade (400: the parser stops reading
/// after one, so the connection would otherwise hang until its idle timeout). The refusal is sent once the requests before it are
/// answered, and ends the connection: nothing after such a request can be trusted to be framed as its client meant.
final class RequestFramingHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart
    private var requests = 0
    private var answered = 0
    private var refusal: (request: Int, version: HTTPVersion, status: HTTPResponse.Status, detail: String)?
    /// A request that ended the connection came: LastRequestHandler drops what follows, unanswered.
    private var pastLast = false

    static func refusal(of head: HTTPRequestHead) -> (HTTPResponse.Status, String)? {
        let codings = head.headers["transfer-encoding"].flatMap { $0.split(separator: ",") }
            .map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        if !codings.isEmpty && codings != ["chunked"] {
            return (.notImplemented, "the relay takes a body as it is or chunked, not in Transfer-Encoding '\(codings.joined(separator: ", "))'")
        }
        if head.method == .CONNECT { return (.badRequest, "the relay is not a proxy: it takes no CONNECT") }
        if head.headers.contains(name: "upgrade") {
            return (.badRequest, "the relay does not switch protocols: send the request without an Upgrade header")
        }
        guard head.version.major == 1, head.version.minor >= 1 else { return nil }
        let hosts = head.headers["host"]
        guard hosts.count == 1 else { return (.badRequest, "a request names its Host once in HTTP/1.1; this one names it \(hosts.count) times") }
        guard hosts[0].unicodeScalars.allSatisfy(Self.hostCharacters.contains) else { return (.badRequest, "the Host header is not a host name") }
        return nil
    }

    /// RFC 3986's host and port: a name, an IPv4 or a bracketed IPv6 address.
    private static let hostCharacters = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()*+,;=:[]")

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard refusal == nil else { return }
        if case .head(let head) = unwrapInboundIn(data), !pastLast {
            requests += 1
            pastLast = !head.isKeepAlive
            if let (status, detail) = Self.refusal(of: head) {
                refusal = (requests, head.version, status, detail)
                if answered == requests - 1 { refuse(context) }
                return
            }
        }
        context.fireChannelRead(data)
    }

    /// The parser's complaint about what follows a refused request (its body, in a coding it cannot frame) would be a
    /// second answer to it.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard refusal == nil else { return }
        context.fireErrorCaught(error)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        context.write(data, promise: promise)
        guard case .end = unwrapOutboundIn(data) else { return }
        answered += 1
        if let refusal, answered == refusal.request - 1 { refuse(context) }
    }

    private func refuse(_ context: ChannelHandlerContext) {
        guard let refusal else { return }
        let body = Response.problemBody(refusal.status, detail: refusal.detail)
        let head = HTTPResponseHead(version: refusal.version, status: HTTPResponseStatus(statusCode: refusal.status.code),
                                    headers: ["content-type": RelayAPI.MediaType.problem, "content-length": String(body.readableBytes),
                                              "connection": "close"])
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }
}

/// Closes the connection once the answer to its last request is written, and reads nothing after that request: what
/// a client pipelines behind it would otherwise be taken, never answered, and hold the connection. The request gets
/// the exact `Connection: close` Hummingbird looks for, and its answer says so too.
final class LastRequestHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart
    private var requests = 0
    private var answersBegun = 0
    private var answersEnded = 0
    /// The number of the request after which the connection ends.
    private var last: Int?
    private var readingDone = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !readingDone else { return }
        switch unwrapInboundIn(data) {
        case .head(var head):
            requests += 1
            guard !head.isKeepAlive else { break }
            last = requests
            head.headers.replaceOrAdd(name: "connection", value: "close")
            return context.fireChannelRead(wrapInboundOut(.head(head)))
        case .end:
            readingDone = last == requests
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head) where head.status.code >= 200:
            answersBegun += 1
            guard answersBegun == last else { break }
            head.headers.replaceOrAdd(name: "connection", value: "close")
            return context.write(wrapOutboundOut(.head(head)), promise: promise)
        case .end:
            answersEnded += 1
            guard answersEnded == last else { break }
            let written = context.eventLoop.makePromise(of: Void.self)
            written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            written.futureResult.cascade(to: promise)
            return context.write(data, promise: written)
        case .head, .body:
            break
        }
        context.write(data, promise: promise)
    }
}

/// Answers `Expect: 100-continue` at once: a client that asks (curl does for larger bodies, older libcurl for any over
/// 1 KiB) would otherwise wait a second before it sends the body.
final class ExpectContinueHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(var head) = unwrapInboundIn(data), head.version.major == 1, head.version.minor >= 1,
              head.headers["expect"].contains(where: { $0.lowercased() == "100-continue" }) else {
            return context.fireChannelRead(data)
        }
        head.headers.remove(name: "expect")
        context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
        context.fireChannelRead(wrapInboundOut(.head(head)))
    }
}

/// Gives the answer to a request that is not valid HTTP (Hummingbird's bare 400, sent before it closes the
/// connection) a problem body, and the status 431 when its headers were too large.
final class MalformedRequestAnswer: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart
    private var parserError: HTTPParserError?
    private var problem: ByteBuffer?

    /// Also what a route answers when the parser fails inside its body (a bad chunk size, trailers too large).
    static func answer(to error: HTTPParserError) -> (HTTPResponse.Status, String) {
        error == .headerOverflow ? (.requestHeaderFieldsTooLarge, "the request's headers are larger than the relay accepts")
                                 : (.badRequest, "the request is not valid HTTP")
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? HTTPParserError { parserError = error }
        context.fireErrorCaught(error)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head) where parserError != nil && head.status == .badRequest && head.headerFields[.contentLength] == "0":
            let (status, detail) = Self.answer(to: parserError!)
            head.status = status
            let body = Response.problemBody(status, detail: detail)
            head.headerFields[.contentType] = RelayAPI.MediaType.problem
            head.headerFields[.contentLength] = String(body.readableBytes)
            problem = body
            context.write(wrapOutboundOut(.head(head)), promise: promise)
        case .end where problem != nil:
            context.write(wrapOutboundOut(.body(problem!)), promise: nil)
            problem = nil
            context.write(data, promise: promise)
        default:
            context.write(data, promise: promise)
        }
    }
}

/// Closes a connection whose client stopped reading: its answers waited unsent (the channel unwritable) for
/// `limit` with none of them taken meanwhile. The idle timeout cannot: a client that pipelined requests is not
/// idle while they are answered. A slow download that still moves is left alone.
final class StalledReaderHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    let limit: TimeAmount
    private var check: Scheduled<Void>?
    private var unsentAtLastLook = 0

    init(limit: TimeAmount) { self.limit = limit }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            check?.cancel()
            check = nil
        } else if check == nil {
            unsentAtLastLook = unsent(context)
            scheduleLook(context)
        }
        context.fireChannelWritabilityChanged()
    }

    private func unsent(_ context: ChannelHandlerContext) -> Int {
        (try? context.channel.syncOptions?.getOption(.bufferedWritableBytes)) ?? 0
    }

    private func scheduleLook(_ context: ChannelHandlerContext) {
        check = context.eventLoop.assumeIsolated().scheduleTask(in: limit) {
            let now = self.unsent(context)
            guard now < self.unsentAtLastLook else { return context.close(promise: nil) }
            self.unsentAtLastLook = now
            self.scheduleLook(context)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        check?.cancel()
    }
}

/// Gateways' requests by route and status, logged once a minute and at shutdown, then forgotten.
final class GatewayTally: Sendable {
    private let counts = Mutex<[String: [String: Int]]>([:])

    func count(_ gateway: String, _ request: String) {
        counts.withLock { $0[gateway, default: [:]][request, default: 0] += 1 }
    }

    func log(to logger: Logger) {
        let tally = counts.withLock { counts in
            defer { counts = [:] }
            return counts
        }
        for (gateway, requests) in tally.sorted(by: { $0.key < $1.key }) {
            let summary = requests.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")
            logger.info("gateway and unauthenticated requests since the last tally", metadata: ["relay.principal": "\(gateway)", "relay.requests": "\(summary)"])
        }
    }
}

/// Logs the gateway tally every minute until shutdown, and once more after it.
struct GatewayTallyService: Service {
    let tally: GatewayTally
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while (try? await Task.sleep(for: .seconds(60))) != nil { tally.log(to: logger) }
        }
        tally.log(to: logger)
    }
}
