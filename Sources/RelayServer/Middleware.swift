import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTPTypes
import NIOSSL
import Prometheus
import Synchronization
import RelayCore
import RelayStore

/// Maps the verified client certificate to a principal on every request, so a revocation bites at once,
/// and applies the principal's token bucket.
struct AuthenticationMiddleware: RouterMiddleware {
    typealias Context = RelayRequestContext
    let db: RelayDatabase
    let limiter: RateLimiter

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let certificate = try? await context.channel.nioSSL_peerCertificate().get(),
              let spki = try? certificate.extractPublicKey().toSPKIBytes() else {
            throw APIError(.forbidden, "a client certificate is required")
        }
        guard let principal = try db.principal(spkiFingerprint: SPKIFingerprint.of(spki: spki)) else {
            throw APIError(.forbidden, "this certificate is not enrolled")
        }
        guard principal.isActive else { throw APIError(.forbidden, "\(principal.name) has been revoked") }
        if let wait = limiter.take(principal.id) {
            throw APIError(.tooManyRequests, "too many requests; slow down", headers: [.retryAfter: String(wait)])
        }
        var context = context
        context.principal = principal
        return try await next(request, context)
    }
}

/// Logs one line per request (route pattern, status, principal, request id, duration) and counts it.
/// Never the body, the query, the receipt or the peer's address.
struct RequestLogMiddleware: RouterMiddleware {
    typealias Context = RelayRequestContext
    let metrics: RelayMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        var context = context
        context.logger[metadataKey: "relay.request.id"] = "\(context.requestID)"
        let response = try await next(request, context)
        let route = context.endpointPath ?? "unmatched"
        metrics.countRequest(route: route, method: request.method.rawValue, status: response.status.code)
        let elapsed = ContinuousClock.now - start
        context.logger.info("request", metadata: [
            "relay.route": "\(request.method.rawValue) \(route)",
            "relay.principal": "\(context.trace.principal.withLock { $0 } ?? "-")",
            "relay.status": "\(response.status.code)",
            "relay.duration_ms": "\(elapsed.inNanoseconds / 1_000_000)",
        ])
        var headers = response.headers
        headers[HTTPField.Name("Request-Id")!] = context.requestID
        var tagged = response
        tagged.headers = headers
        return tagged
    }
}

/// Counts failed TLS handshakes for the metrics; sits in each connection's pipeline.
final class TLSFailureCounter: ChannelInboundHandler, RemovableChannelHandler, Sendable {
    typealias InboundIn = NIOAny
    let metrics: RelayMetrics

    init(metrics: RelayMetrics) { self.metrics = metrics }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is NIOSSLError || error is BoringSSLError { metrics.tlsHandshakeFailures.increment() }
        context.fireErrorCaught(error)
    }
}

/// Closes a connection whose request has not fully arrived `limit` after its head. The idle timeout cannot:
/// a client that sends its body a byte at a time is never idle, and would hold the connection for ever.
final class RequestDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    let limit: TimeAmount
    private var deadline: Scheduled<Void>?

    init(limit: TimeAmount) { self.limit = limit }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            deadline?.cancel()
            deadline = context.eventLoop.assumeIsolated().scheduleTask(in: limit) { context.close(promise: nil) }
        case .end:
            deadline?.cancel()
            deadline = nil
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
    }
}
