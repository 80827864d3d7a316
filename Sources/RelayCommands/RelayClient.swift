import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import RelayAPI
import RelayCertificateRequest

/// The relay as the CLI sees it: mutual TLS 1.3 with the profile's certificate, JSON in and out,
/// problems turned into `CLIError`s with the right exit code.
final class RelayClient: Sendable {
    let baseURL: String
    private let http: HTTPClient

    init(profile: Profile) throws {
        baseURL = try profile.require(profile.relay, "relay").trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        guard baseURL.lowercased().hasPrefix("https://") else {
            throw CLIError(.usage, "the relay address '\(baseURL)' in \(profile.directory)/config.yaml must start with https://",
                           hint: "amane speaks only TLS to the relay; nothing was sent.")
        }
        guard !baseURL.contains("…"), let host = URL(string: baseURL)?.host, !host.isEmpty else {
            throw CLIError(.usage, "the relay address '\(baseURL)' in \(profile.directory)/config.yaml is not an address",
                           hint: "Write the one your admin gives you, such as https://relay.example.org:8443; nothing was sent.")
        }
        let caPath = try profile.require(profile.ca, "ca")
        let certificatePath = try profile.require(profile.certificate, "certificate")
        let keyPath = try profile.require(profile.key, "key")
        try PrivateFile.check(keyPath, "the client key")
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv13
        let certificatePEM: [UInt8]
        let keyPEM: [UInt8]
        do {
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caPath))
            certificatePEM = Array(try Data(contentsOf: URL(fileURLWithPath: certificatePath)))
            keyPEM = Array(try Data(contentsOf: URL(fileURLWithPath: keyPath)))
            tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(certificatePEM).map { .certificate($0) }
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: keyPEM, format: .pem))
        } catch {
            throw CLIError(.usage, "cannot read the TLS files named in the profile (\(caPath), \(certificatePath), \(keyPath))")
        }
        // A certificate for another key fails in the handshake, where it would read as the relay's fault.
        if ClientKey.certificate(String(decoding: certificatePEM, as: UTF8.self), isForKey: String(decoding: keyPEM, as: UTF8.self)) == false {
            throw CLIError(.usage, "the certificate \(certificatePath) is not for the client key \(keyPath)",
                           hint: "After `amane request-certificate --new-key`, put the certificate your admin issues for the new key in its place; nothing was sent.")
        }
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(60))
        // One attempt: a relay that is down is reported at once, not after the connect timeout's worth of retries.
        configuration.connectionPool.retryConnectionEstablishment = false
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    func shutdown() async {
        try? await http.shutdown()
    }

    func get<T: Decodable>(_ path: String, as type: T.Type) async throws -> T {
        try decode(T.self, try await send("GET", path, body: nil, headers: [:]))
    }

    func post<T: Decodable>(_ path: String, _ body: some Encodable, as type: T.Type, headers: [String: String] = [:]) async throws -> T {
        try decode(T.self, try await send("POST", path, body: try StrictJSON.canonical(body), headers: headers))
    }

    func getText(_ path: String) async throws -> String {
        String(decoding: try await send("GET", path, body: nil, headers: [:]), as: UTF8.self)
    }

    private func decode<T: Decodable>(_ type: T.Type, _ data: Data) throws -> T {
        do { return try JSONDecoder().decode(T.self, from: data) } catch {
            throw CLIError(.server, "the relay answered in an unexpected shape", hint: "Is \(baseURL) an Amane relay of the same version?")
        }
    }

    private func send(_ method: String, _ path: String, body: Data?, headers: [String: String]) async throws -> Data {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = HTTPMethod(rawValue: method)
        request.headers.add(name: "Accept", value: MediaType.json)
        if let body {
            request.headers.add(name: "Content-Type", value: MediaType.json)
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        let response: HTTPClientResponse
        let data: Data
        do {
            response = try await http.execute(request, timeout: .seconds(60))
            data = Data(try await response.body.collect(upTo: 256 * 1024 * 1024).readableBytesView)
        } catch {
            if let tls = Self.tlsFailure(error) {
                var failure = CLIError(.unreachable, "the relay at \(baseURL) answered, but the secure connection failed: \(tls.reason)", hint: tls.hint,
                                       json: nil, outcomeUnknown: !tls.nothingSent)
                failure.secureConnectionFailed = tls.certificateRefused
                throw failure
            }
            let hint = "Check the address in your profile and your network, or ask your admin whether the relay is running."
            if Self.neverConnected(error) {
                throw CLIError(.unreachable, "cannot reach the relay at \(baseURL) (\(Self.reason(error)))", hint: hint)
            }
            throw CLIError(.unreachable, "no answer from the relay at \(baseURL) (\(Self.reason(error))): it may or may not have received the request",
                           hint: hint, json: nil, outcomeUnknown: true)
        }
        guard (200..<300).contains(Int(response.status.code)) else {
            let retryAfter = response.headers.first(name: "Retry-After").flatMap(Int.init)
            let problem = try? JSONDecoder().decode(Problem.self, from: data)
            let text = Output.inert([problem?.title ?? response.status.reasonPhrase, problem?.detail].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: ": "))
            let failed = response.status.code >= 500
            // The request id lets an admin find this request in the relay's log.
            let requestID = response.headers.first(name: "Request-Id").map { "; request \(Output.inert($0))" } ?? ""
            throw CLIError(failed ? .server : .refused, "the relay \(failed ? "failed" : "refused"): \(text) (HTTP \(response.status.code)\(requestID))",
                           hint: Self.hint(for: Int(response.status.code), detail: problem?.detail ?? "", retryAfter: retryAfter), json: nil,
                           problemCode: problem?.code)
        }
        return data
    }

    static func reason(_ error: any Error) -> String {
        let text = String(describing: error)
        if text.lowercased().contains("refused") { return "connection refused: nothing answers at that address" }
        if let error = error as? HTTPClientError, error == .deadlineExceeded { return "nothing came back within 60 seconds" }
        if let error = error as? HTTPClientError, error == .remoteConnectionClosed { return "the connection closed before an answer" }
        return text
    }

    /// The failure came before any connection, so the request never left.
    static func neverConnected(_ error: any Error) -> Bool {
        if error is NIOConnectionError { return true }
        if let error = error as? HTTPClientError, error == .connectTimeout { return true }
        if case .connectTimeout = error as? ChannelError { return true }
        return String(describing: error).lowercased().contains("refused")
    }

    /// A TLS failure said in words, from BoringSSL's reason codes: which side refused whose certificate. A refused
    /// certificate or a failed handshake sent nothing; another failure may come after the request went out.
    static func tlsFailure(_ error: any Error) -> (reason: String, hint: String, certificateRefused: Bool, nothingSent: Bool)? {
        guard let failure = describeTLSFailure(error) else { return nil }
        let inHandshake = if case .handshakeFailed = error as? NIOSSLError { true } else { false }
        return (failure.reason, failure.hint, failure.certificateRefused, failure.certificateRefused || inHandshake)
    }

    private static func describeTLSFailure(_ error: any Error) -> (reason: String, hint: String, certificateRefused: Bool)? {
        if case .uncleanShutdown = error as? NIOSSLError { return nil }
        let text = String(describing: error)
        if error is NIOSSLExtraError, text.contains("validate hostname") || text.contains("in certificate from peer") {
            return ("its certificate is not for the address in your profile ('relay')", "Check 'relay' in your profile against what your admin gave you.", true)
        }
        guard error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError else { return nil }
        if text.contains("CERTIFICATE_VERIFY_FAILED") {
            return ("its certificate could not be verified against the CA in your profile: another CA, a relay certificate that "
                    + "expired or is not yet valid, or a wrong date and time on this computer",
                    "Check this computer's date and time, and that 'ca' in your profile is the relay's CA as your admin gave it. If both are right, tell your admin.", true)
        }
        if ["ALERT_CERTIFICATE_EXPIRED", "ALERT_BAD_CERTIFICATE", "ALERT_UNKNOWN_CA", "ALERT_CERTIFICATE_UNKNOWN",
            "ALERT_CERTIFICATE_REQUIRED"].contains(where: text.contains) {
            return ("it refused your certificate", "Your certificate may have expired or been replaced; ask your admin for a new one (`amane-relayd admin reissue`).", true)
        }
        return ("TLS failed (\(reasonCode(in: text) ?? "\(type(of: error))"))", "Ask your admin; give them this message.", false)
    }

    /// BoringSSL's reason code ("…:OPENSSL_internal:WRONG_VERSION_NUMBER at /…"), without the rest of its text,
    /// which names files of the build.
    static func reasonCode(in text: String) -> String? {
        text.firstMatch(of: /OPENSSL_internal:([A-Z0-9_]+)/).map { String($0.output.1) }
    }

    /// What to do next; the relay's own reason is already in the message.
    static func hint(for status: Int, detail: String, retryAfter: Int? = nil) -> String? {
        switch status {
        case 403 where detail.contains("revoked"): "Your certificate was revoked; ask your admin."
        case 403 where detail.contains("you have no key for the epoch"): "`amane keys` lists the keys you hold; whoever grants reads your fingerprint with you first."
        case 403 where detail.contains("you do not hold the current key"): "`amane keys` lists the keys you hold; a colleague who holds the current one rotates it, or grants it to you."
        case 403 where detail.contains("no key for the epoch"): "Assign it to a colleague who holds that key, or have one grant it to them (they read each other the fingerprint first)."
        case 403 where detail.hasPrefix("a responder may not"): "That is a supervisor's to do: ask one."
        case 403 where detail.contains(" holds it"): "Ask them to release it (`amane release`), or a supervisor to assign it to you (`amane assign`)."
        case 403 where detail.contains("claim"): "`amane claim ID` takes the case first."
        case 403: "Ask an admin if you think you should be allowed to do this."
        case 404 where detail.contains("is a new disclosure"): "Nothing was stored. If the case was removed, submit what the reporter tells now as a new disclosure."
        case 404: "Check the id, receipt or name you gave."
        case 409 where detail.contains("idempotency key"): "Nothing was stored. Sent without --idempotency-key or --idempotency-key-file (amane then makes a new key), it is a new submission."
        case 409: "Nothing was changed; `amane show` gives where the case stands."
        case 429: "Too many requests; try again in \(retryAfter.map { "\($0) seconds" } ?? "a minute")."
        case 503: "The relay is busy, full, or has no sealing key yet; try again shortly or tell your admin."
        default: nil
        }
    }
}
