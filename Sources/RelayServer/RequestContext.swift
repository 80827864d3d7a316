import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import RelayAPI
import RelayCore
import RelayStore
import Synchronization

/// The request context: the TLS channel, and the principal once the middleware has found it.
/// Handlers read `principal`, never certificates.
struct RelayRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel
    var principal: Principal? {
        didSet { trace.principal.withLock { $0 = principal.map { ($0.name.rawValue, $0.role) } } }
    }
    var requestID: String
    /// Shared by every copy of this context, so the request log sees who was authenticated further in.
    let trace = RequestTrace()

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
        principal = nil
        requestID = UUID().uuidString.lowercased()
    }

    /// The authenticated principal; the authentication middleware guarantees it on every route.
    var caller: Principal {
        get throws {
            guard let principal else { throw APIError(.forbidden, "no principal") }
            return principal
        }
    }

    var actor: StoreActor { get throws { StoreActor(try caller) } }
}

final class RequestTrace: Sendable {
    let principal = Mutex<(name: String, role: Role)?>(nil)
    /// The problem code of a refusal or failure.
    let problem = Mutex<String?>(nil)
    /// Whose a certificate of the relay's CA that is not enrolled is (retired by a reissue, or of someone enrolled
    /// after a restored copy), so that the log tells the admin.
    let unenrolledName = Mutex<String?>(nil)
}

/// An error the API answers with a problem body.
struct APIError: Error {
    let status: HTTPResponse.Status
    let detail: String
    let code: ProblemCode
    var headers: HTTPFields = [:]

    init(_ status: HTTPResponse.Status, _ detail: String, code: ProblemCode? = nil, headers: HTTPFields = [:]) {
        self.status = status
        self.detail = detail
        self.code = code ?? ProblemCode(status: status.code)
        self.headers = headers
    }

    init(_ rejection: IntakeRejection) {
        self.init(rejection.status == 413 ? .contentTooLarge : .badRequest, rejection.detail)
    }

    init(_ error: StoreError) {
        switch error.code {
        case .notFound: self.init(.notFound, error.reason)
        case .keyReused: self.init(.conflict, error.reason, code: .idempotencyKeyReused)
        case .duplicate: self.init(.conflict, error.reason, code: .duplicate)
        case .conflict, .invalidState: self.init(.conflict, error.reason)
        case .forbidden: self.init(.forbidden, error.reason)
        case .revoked: self.init(.forbidden, error.reason, code: .revoked)
        case .invalid: self.init(.badRequest, error.reason)
        case .staleEpoch: self.init(.badRequest, error.reason, code: .staleEpoch)
        case .noSealingKey: self = .noSealingKey(error.reason)
        case .busy: self.init(.serviceUnavailable, "the relay is busy; retry shortly", headers: [.retryAfter: "1"])
        case .unavailable: self.init(.serviceUnavailable, "storage is unavailable; nothing was stored", headers: [.retryAfter: "5"])
        }
    }

    /// Intake waits for a responder's `amane rotate`: a gateway may retry, not at once.
    static func noSealingKey(_ reason: String) -> APIError {
        APIError(.serviceUnavailable, "no sealing key: \(reason)", code: .noSealingKey, headers: [.retryAfter: "60"])
    }
}

extension Response {
    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Response(status: status, headers: [.contentType: MediaType.json],
                        body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }

    static func problem(_ status: HTTPResponse.Status, detail: String?, code: ProblemCode? = nil, headers: HTTPFields = [:]) -> Response {
        var headers = headers
        headers[.contentType] = MediaType.problem
        return Response(status: status, headers: headers, body: .init(byteBuffer: problemBody(status, detail: detail, code: code)))
    }

    static func problemBody(_ status: HTTPResponse.Status, detail: String?, code: ProblemCode? = nil) -> ByteBuffer {
        let problem = Problem(status: status.code, title: status.reasonPhrase, detail: detail, code: code)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return ByteBuffer(bytes: (try? encoder.encode(problem)) ?? Data())
    }
}

/// Turns every error into `application/problem+json`. Unknown errors become a bare 500, logged by type only.
/// The problem's code goes into the request's trace, for the log line and the gateway tally.
struct ProblemMiddleware: RouterMiddleware {
    typealias Context = RelayRequestContext

    private struct Answer {
        var status: HTTPResponse.Status
        var detail: String?
        var code: ProblemCode?
        var headers: HTTPFields = [:]
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let answer = answer(to: error, request: request, context: context)
            let code = answer.code ?? ProblemCode(status: answer.status.code)
            context.trace.problem.withLock { $0 = code.rawValue }
            return .problem(answer.status, detail: answer.detail, code: code, headers: answer.headers)
        }
    }

    private func answer(to error: any Error, request: Request, context: Context) -> Answer {
        switch error {
        case let error as APIError:
            return Answer(status: error.status, detail: error.detail, code: error.code, headers: error.headers)
        case let error as StoreError:
            let mapped = APIError(error)
            return Answer(status: mapped.status, detail: mapped.detail, code: mapped.code, headers: mapped.headers)
        case let error as HTTPError where error.status == .notFound:
            let routes = Authorization.routes(at: request.uri.path)
            guard !routes.isEmpty else { return Answer(status: .notFound, detail: "no such route") }
            let allowed = Set(routes.map(\.method)).sorted()
            // Counted and logged under the path's pattern, not as the router's "NotFound"; the most literal one.
            context.coreContext.endpointPath.value = routes.map(\.path).max { $0.filter { $0 == "{" }.count > $1.filter { $0 == "{" }.count }
            return Answer(status: .methodNotAllowed, detail: "\(request.uri.path) takes \(allowed.joined(separator: " and ")), not \(request.method)",
                          headers: [.allow: allowed.joined(separator: ", ")])
        case let error as HTTPError:
            return Answer(status: error.status, detail: error.body, headers: error.headers)
        case let error as HTTPParserError:
            // A body that breaks HTTP's framing (a bad chunk size): the client's fault, not ours.
            let (status, detail) = MalformedRequestAnswer.answer(to: error)
            return Answer(status: status, detail: detail)
        case let error as any HTTPResponseError:
            return Answer(status: error.status, detail: error.status == .contentTooLarge ? "the body is larger than this route accepts" : nil)
        default:
            context.logger.error("request failed", metadata: ["relay.error": "\(type(of: error))"])
            return Answer(status: .internalServerError, detail: nil)
        }
    }
}

extension Request {
    /// Reads a JSON body: checks the media type (415), the size (413) and the shape (400, naming the field).
    func decodeJSON<T: Codable>(_ type: T.Type, limit: Int) async throws -> (T, [UInt8]) {
        let (value, body, _) = try await decodeCanonicalJSON(type, limit: limit)
        return (value, body)
    }

    /// As `decodeJSON`, with the value re-encoded with sorted keys as well. `structureLimit` bounds the bytes
    /// outside the top-level `envelopeFields` (sealed envelopes), checked before parsing.
    func decodeCanonicalJSON<T: Codable>(_ type: T.Type, limit: Int, structureLimit: Int? = nil,
                                         envelopeFields: Set<String> = []) async throws -> (T, [UInt8], Data) {
        if let coding = headers[.contentEncoding], coding.lowercased() != "identity" {
            throw APIError(.unsupportedMediaType, "send the body uncompressed, without Content-Encoding", headers: [.acceptEncoding: "identity"])
        }
        let contentTypes = headers[values: .contentType]
        guard contentTypes.count <= 1 else {
            throw APIError(.unsupportedMediaType, "the request names its Content-Type \(contentTypes.count) times: send it once, as \(MediaType.json)")
        }
        let contentType = contentTypes.first?.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? []
        guard contentType.first == MediaType.json else {
            throw APIError(.unsupportedMediaType, "send the body as \(MediaType.json)")
        }
        // JSON is UTF-8: a body labelled otherwise would be read as what it is not.
        let charsets = contentType.dropFirst().filter { $0.hasPrefix("charset=") }.map { $0.dropFirst("charset=".count).trimmingCharacters(in: ["\""]) }
        guard charsets.allSatisfy({ $0 == "utf-8" || $0 == "utf8" }) else {
            throw APIError(.unsupportedMediaType, "send the body as \(MediaType.json) in UTF-8 (charset=\(charsets.joined(separator: ",")) is not taken)")
        }
        func tooLarge() -> APIError { APIError(.contentTooLarge, "the body is larger than this route accepts: \(limit) bytes") }
        // A declared length past the limit is refused before waiting for a body that may never come.
        if let declared = headers[.contentLength].flatMap({ Int($0) }), declared > limit {
            throw tooLarge()
        }
        let buffer: ByteBuffer
        do {
            buffer = try await body.collect(upTo: limit)
        } catch let error as any HTTPResponseError {
            if error.status == .contentTooLarge { throw tooLarge() }
            throw error
        } catch let error as HTTPParserError {
            throw error
        } catch {
            // The connection ended under the body: the client left, or RequestDeadlineHandler answered 408 and closed it.
            throw APIError(.requestTimeout, "the request's body did not arrive in full")
        }
        let bytes = Array(buffer.readableBytesView)
        do {
            try StrictJSON.checkShape(bytes, maxStructureBytes: structureLimit ?? limit, largeFields: envelopeFields)
        } catch .tooLarge {
            let besides = envelopeFields.isEmpty ? "" : " besides sealed envelopes (\(envelopeFields.sorted().joined(separator: ", ")))"
            throw APIError(.contentTooLarge, "the body is larger than this route accepts: \(structureLimit ?? limit) bytes\(besides)")
        } catch .invalid(let reason) {
            throw APIError(.badRequest, reason)
        }
        do {
            let (value, canonical) = try StrictJSON.decodeCanonical(T.self, from: Data(bytes))
            return (value, bytes, canonical)
        } catch {
            throw APIError(.badRequest, error.description)
        }
    }
}
