public import Configuration
public import Foundation
public import Logging
public import RelayAPI
public import RelayCore
import RelayFormat
import SystemPackage
import Yams

/// Everything the daemon reads at start. Keys are dotted (`http.listen`); see `Config/amane-relayd.yaml`.
public struct RelayConfiguration: Sendable {
    public struct Address: Sendable, Equatable, CustomStringConvertible {
        public var host: String
        public var port: Int

        /// Parses `HOST:PORT` or `[v6]:PORT`.
        public init?(_ text: String) {
            guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else { return nil }
            var host = String(text[..<colon])
            if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            guard !host.isEmpty else { return nil }
            self.host = host
            self.port = port
        }

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    public struct Limits: Sendable {
        public var maxBodyBytes: Int
        public var maxEnvelopeBytes: Int
        public var narrativeMaxBytes: Int
        public var requestsPerMinute: Int
        public var receiptMissesPerHour: Int
        public var receiptLookupsPerMinute: Int
        public var idleTimeoutSeconds: Int
        public var requestBodySeconds: Int
        /// What one gateway may store in a day (sealed disclosures and follow-ups), as a bucket refilled over the day.
        public var gatewayBytesPerDay: Int

        /// The most one stored submission takes: a sealed plaintext body is its size and an HPKE encapsulation, and
        /// a submission has its rows besides.
        public var largestSubmission: Int { max(maxEnvelopeBytes, maxBodyBytes + 2048) + RelayRoutes.rowBytes }

        /// The largest body a route reads: JSON with base64 envelopes. Plain JSON is held to `maxBodyBytes` once read.
        public var largestBody: Int { max(maxBodyBytes, maxEnvelopeBytes / 3 * 4 + 64 * 1024) }

        /// The bytes of bodies one principal may have on the way at once: four of the largest.
        public var bodyBytesInFlight: Int { 4 * largestBody }

        public var intake: IntakeLimits {
            IntakeLimits(maxBodyBytes: maxBodyBytes, maxEnvelopeBytes: maxEnvelopeBytes, narrativeMaxBytes: narrativeMaxBytes)
        }
    }

    public enum LogFormat: String, Sendable { case json, text }

    public var listen: Address
    public var opsListen: Address
    public var dataDirectory: String
    public var dev: Bool
    public var certificateFile: String
    public var caFile: String
    /// The TLS private key: PEM from configuration (systemd credential `tls-privateKey`) or the file.
    public var privateKeyPEM: SecretText?
    public var privateKeyFile: String
    public var caKeyPEM: SecretText?
    public var caKeyFile: String
    public var logLevel: Logger.Level
    public var logFormat: LogFormat
    public var limits: Limits
    public var policy: TriagePolicy
    public var seedsDirectory: String
    public var slaNotifyCommand: String?
    /// How long one shared HPKE context seals plaintext intake (envelope v2); zero seals each object alone (v1).
    public var sharedContextMilliseconds: Int

    /// A configuration problem, naming the offending key.
    public struct Invalid: Error, CustomStringConvertible {
        public let key: String
        public let reason: String
        public var description: String { key.hasPrefix("AMANE_") ? "environment variable \(key): \(reason)" : "configuration key '\(key)': \(reason)" }
    }

    /// Reads every key, in order of precedence: `overrides` (the command line), `AMANE_*` environment variables,
    /// the YAML file, `$CREDENTIALS_DIRECTORY`, the seed policy, then defaults.
    public static func load(overrides: [String: String], configFile: String?, environment: [String: String] = ProcessInfo.processInfo.environment) async throws -> RelayConfiguration {
        if let unknown = unknownVariables(in: environment).first {
            let suggestion = closestVariable(to: unknown).map { "did you mean \($0)? " } ?? ""
            throw Invalid(key: unknown, reason: "names no configuration key (a typo?); \(suggestion)Every key has one, in capitals with _ between words: AMANE_LIMITS_MAX_BODY_BYTES for limits.maxBodyBytes")
        }
        var providers: [any ConfigProvider] = [
            InMemoryProvider(name: "command line", values: Dictionary(uniqueKeysWithValues: overrides.map { (AbsoluteConfigKey(stringLiteral: $0.key), ConfigValue(stringLiteral: $0.value)) })),
            EnvironmentVariablesProvider(environmentVariables: environment).prefixKeys(with: "amane"),
        ]
        if let configFile {
            let text = try read(configFile, key: "config")
            if let unknown = try unknownKeys(inYAML: text, file: configFile).first {
                // A key under the wrong section (an uncommented line whose section line stayed commented) keeps its own name.
                let misplaced = knownKeys.sorted().first { $0.split(separator: ".").last == unknown.split(separator: ".").last }
                let hint = misplaced.map { "; did you mean \($0), under its section?" } ?? closestKey(to: unknown).map { "; did you mean \($0)?" } ?? ""
                throw Invalid(key: unknown, reason: """
                    is not a configuration key (a typo?)\(hint); the example \
                    amane-relayd.yaml (Config/ in the source, /etc/amane-relay/ once installed) lists every key
                    """)
            }
            do {
                providers.append(try await FileProvider<YAMLSnapshot>(filePath: FilePath(configFile)))
            } catch {
                // The YAML parser's own words name neither the file nor what it should hold.
                throw Invalid(key: "config", reason: "\(configFile) is not a YAML mapping of sections and keys (\(error)); the example amane-relayd.yaml shows one")
            }
        }
        if let credentials = environment["CREDENTIALS_DIRECTORY"] {
            providers.append(try await DirectoryFilesProvider(directoryPath: FilePath(credentials), allowMissing: true))
        }
        let early = ConfigReader(providers: providers)
        let seeds = early.string(forKey: "seeds.directory") ?? Self.defaultSeedsDirectory()
        let policyFile = (seeds as NSString).appendingPathComponent("policy.yaml")
        if FileManager.default.fileExists(atPath: policyFile) {
            providers.append(try await FileProvider<YAMLSnapshot>(filePath: FilePath(policyFile)))
        }
        return try RelayConfiguration(reader: ConfigReader(providers: providers), seedsDirectory: seeds)
    }

    /// Every key the relay reads. A file that names another is refused: a misspelt key must not pass for its default.
    static let knownKeys = Set<String>([
        "dev", "db.path", "http.listen", "ops.listen", "seeds.directory", "log.level", "log.format",
        "tls.certificateFile", "tls.keyFile", "tls.caFile", "tls.privateKey", "ca.keyFile", "ca.privateKey",
        "limits.maxBodyBytes", "limits.maxEnvelopeBytes", "limits.narrativeMaxBytes", "limits.requestsPerMinute", "limits.gatewayBytesPerDay",
        "limits.receiptMissesPerHour", "limits.receiptLookupsPerMinute", "limits.idleTimeoutSeconds", "limits.requestBodySeconds",
        "sealing.sharedContextMilliseconds", "claim.leaseMinutes", "retention.closedDays", "sla.notifyCommand",
    ] + Urgency.allCases.map { "sla.\($0.rawValue)" })

    /// `AMANE_*` variables that the relay's own tools read (the CLI's profile and passphrase, the benchmark and test switches).
    static let toolVariables: Set<String> = ["AMANE_HOME", "AMANE_PASSPHRASE_FILE"]
    static let toolVariablePrefixes = ["AMANE_BENCH_", "AMANE_REGENERATE_"]

    /// The environment's `AMANE_*` variables that name no key, sorted; swift-configuration's spelling: `limits.maxBodyBytes` is `AMANE_LIMITS_MAX_BODY_BYTES`.
    static func unknownVariables(in environment: [String: String]) -> [String] {
        let known = Set(knownKeys.map(variable(for:)))
        return environment.keys.filter { name in
            name.hasPrefix("AMANE_") && !known.contains(name) && !toolVariables.contains(name) && !toolVariablePrefixes.contains { name.hasPrefix($0) }
        }.sorted()
    }

    /// The known variable within three edits of `name`, if any: what a typo most likely meant.
    static func closestVariable(to name: String) -> String? {
        closest(to: name, among: knownKeys.map(variable(for:)))
    }

    /// The known key nearest a mistyped one, if any is within three edits.
    static func closestKey(to key: String) -> String? {
        closest(to: key, among: Array(knownKeys))
    }

    private static func closest(to name: String, among candidates: [String]) -> String? {
        func distance(_ a: [Character], _ b: [Character]) -> Int {
            var previous = Array(0...b.count)
            for (i, x) in a.enumerated() {
                var current = [i + 1]
                for (j, y) in b.enumerated() { current.append(min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1))) }
                previous = current
            }
            return previous[b.count]
        }
        let scored = candidates.sorted().map { ($0, distance(Array($0), Array(name))) }
        return scored.filter { $0.1 <= 3 }.min { $0.1 < $1.1 }?.0
    }

    static func variable(for key: String) -> String {
        "AMANE_" + key.replacing(/([a-z])([A-Z])/) { "\($0.1)_\($0.2)" }.replacingOccurrences(of: ".", with: "_").uppercased()
    }

    /// The dotted keys of a YAML configuration file that the relay does not read, in file order.
    static func unknownKeys(inYAML text: String, file: String) throws -> [String] {
        func leaves(_ node: Node, _ prefix: String) -> [String] {
            // A section whose keys are all commented out is empty, not a key.
            if node.null != nil, knownKeys.contains(where: { $0.hasPrefix(prefix + ".") }) { return [] }
            guard let mapping = node.mapping else { return [prefix] }
            return mapping.flatMap { key, value in leaves(value, prefix.isEmpty ? key.string ?? "" : "\(prefix).\(key.string ?? "")") }
        }
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch {
            throw Invalid(key: "config", reason: "\(file) is not valid YAML: \(error) (the mistake may be on a line before the one named)")
        }
        return root.map { leaves($0, "") }?.filter { !knownKeys.contains($0) } ?? []
    }

    init(reader config: ConfigReader, seedsDirectory: String) throws {
        dev = config.bool(forKey: "dev", default: false) || config.string(forKey: "dev") == "true"
        let data = config.string(forKey: "db.path", default: dev ? ".amane-dev" : "/var/lib/amane-relay")
        dataDirectory = (data as NSString).expandingTildeInPath
        func address(_ key: String, _ fallback: String) throws -> Address {
            let text = config.string(forKey: ConfigKey(key), default: fallback)
            guard let address = Address(text) else { throw Invalid(key: key, reason: "'\(text)' is not HOST:PORT") }
            return address
        }
        listen = try address("http.listen", dev ? "127.0.0.1:8443" : "0.0.0.0:8443")
        opsListen = try address("ops.listen", "127.0.0.1:9090")
        guard ["127.0.0.1", "::1", "localhost"].contains(opsListen.host) else {
            throw Invalid(key: "ops.listen", reason: "the ops listener serves plain HTTP and must stay on 127.0.0.1, ::1 or localhost")
        }
        // Loopback by any name; 0.0.0.0 holds every IPv4 address, :: every address.
        func host(_ name: String) -> String { name == "localhost" ? "127.0.0.1" : name }
        let ipv4 = !opsListen.host.contains(":")
        if opsListen.port != 0, opsListen.port == listen.port,
           host(listen.host) == host(opsListen.host) || listen.host == "::" || (listen.host == "0.0.0.0" && ipv4) {
            throw Invalid(key: "ops.listen", reason: "\(opsListen) is where http.listen (\(listen)) already listens; give the ops listener its own port")
        }
        let pki = (dataDirectory as NSString).appendingPathComponent("pki")
        certificateFile = config.string(forKey: "tls.certificateFile", default: (pki as NSString).appendingPathComponent("server-cert.pem"))
        privateKeyFile = config.string(forKey: "tls.keyFile", default: (pki as NSString).appendingPathComponent("server-key.pem"))
        caFile = config.string(forKey: "tls.caFile", default: (pki as NSString).appendingPathComponent("ca-cert.pem"))
        caKeyFile = config.string(forKey: "ca.keyFile", default: (pki as NSString).appendingPathComponent("ca-key.pem"))
        privateKeyPEM = config.string(forKey: "tls.privateKey", isSecret: true).map(SecretText.init)
        caKeyPEM = config.string(forKey: "ca.privateKey", isSecret: true).map(SecretText.init)

        let level = config.string(forKey: "log.level", default: "info")
        guard let parsedLevel = Logger.Level(rawValue: level) else { throw Invalid(key: "log.level", reason: "'\(level)' is not trace, debug, info, notice, warning, error or critical") }
        logLevel = parsedLevel
        let format = config.string(forKey: "log.format", default: "text")
        guard let parsedFormat = LogFormat(rawValue: format) else { throw Invalid(key: "log.format", reason: "'\(format)' is not json or text") }
        logFormat = parsedFormat

        // A value that is there but no number is an error, never the default.
        func integer(_ key: String, _ fallback: Int) throws -> Int {
            if let value = config.int(forKey: ConfigKey(key)) { return value }
            guard let text = config.string(forKey: ConfigKey(key)) else { return fallback }
            guard let value = Int(text.trimmingCharacters(in: .whitespaces)) else { throw Invalid(key: key, reason: "'\(text)' is not a whole number") }
            return value
        }
        func positive(_ key: String, _ fallback: Int, atMost ceiling: Int = .max, because reason: String = "") throws -> Int {
            let value = try integer(key, fallback)
            guard value > 0 else { throw Invalid(key: key, reason: "must be a positive number") }
            guard value <= ceiling else { throw Invalid(key: key, reason: "must be at most \(ceiling)\(reason)") }
            return value
        }
        let mebibyte = 1024 * 1024
        limits = Limits(
            maxBodyBytes: try positive("limits.maxBodyBytes", 256 * 1024, atMost: 16 * mebibyte, because: " (a plain JSON body is held in memory whole)"),
            maxEnvelopeBytes: try positive("limits.maxEnvelopeBytes", 8 * mebibyte, atMost: 64 * mebibyte, because: " (an envelope is held in memory whole)"),
            narrativeMaxBytes: try positive("limits.narrativeMaxBytes", 64 * 1024, atMost: 16 * mebibyte),
            requestsPerMinute: try positive("limits.requestsPerMinute", 120),
            receiptMissesPerHour: try positive("limits.receiptMissesPerHour", 20),
            receiptLookupsPerMinute: try positive("limits.receiptLookupsPerMinute", 10),
            idleTimeoutSeconds: try positive("limits.idleTimeoutSeconds", 30, atMost: 3600),
            requestBodySeconds: try positive("limits.requestBodySeconds", 30, atMost: 30,
                                             because: " seconds: a restart waits this long for a body still arriving, within the 40 s it allows itself to stop"),
            gatewayBytesPerDay: try positive("limits.gatewayBytesPerDay", 256 * mebibyte))
        let largestSubmission = limits.largestSubmission
        guard limits.gatewayBytesPerDay >= largestSubmission else {
            throw Invalid(key: "limits.gatewayBytesPerDay", reason: "must be at least \(largestSubmission): a day's quota holds the largest submission the limits allow")
        }
        var sla: [Urgency: Int] = [:]
        for urgency in Urgency.allCases {
            sla[urgency] = try positive("sla.\(urgency.rawValue)", TriagePolicy.default.slaSeconds[urgency]! / 60) * 60
        }
        policy = TriagePolicy(claimLeaseSeconds: try positive("claim.leaseMinutes", 15) * 60, slaSeconds: sla,
                              closedRetentionDays: try positive("retention.closedDays", 180))
        self.seedsDirectory = seedsDirectory
        slaNotifyCommand = config.string(forKey: "sla.notifyCommand")
        sharedContextMilliseconds = try integer("sealing.sharedContextMilliseconds", 250)
        guard (0...1000).contains(sharedContextMilliseconds) else {
            throw Invalid(key: "sealing.sharedContextMilliseconds", reason: "must be 0 to 1000 milliseconds")
        }
    }

    /// `seeds/` in the working directory (development), else the installed share directory.
    static func defaultSeedsDirectory() -> String {
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        let installed = executable.deletingLastPathComponent().appendingPathComponent("share/amane-relay/seeds").path
        if FileManager.default.fileExists(atPath: "seeds/taxonomy.yaml") { return "seeds" }
        return installed
    }

    func readPrivateKeyPEM() throws -> String {
        if let privateKeyPEM { return privateKeyPEM.value }
        try Self.checkPrivate(privateKeyFile, key: "tls.keyFile")
        return try Self.read(privateKeyFile, key: "tls.keyFile")
    }

    /// A private key file that others may read is refused, as sshd refuses one.
    static func checkPrivate(_ path: String, key: String) throws {
        if let mode = SecretFile.openToOthers(path) {
            throw Invalid(key: key, reason: "\(path) is open to other users (mode \(String(mode, radix: 8))); run chmod 600 \(path)")
        }
    }

    /// The relay's CA from its certificate and key, for issuing certificates.
    func certificateAuthority() throws -> CertificateAuthority {
        try CertificateAuthority(certificatePEM: try Self.read(caFile, key: "tls.caFile"), keyPEM: try readCAKeyPEM())
    }

    /// Checked by `serve` and `check-config` only: a pager that is gone must not stop a backup or an enrolment.
    func checkNotifyCommand() throws {
        guard let command = slaNotifyCommand else { return }
        var isDirectory: ObjCBool = false
        guard command.hasPrefix("/"), FileManager.default.fileExists(atPath: command, isDirectory: &isDirectory), !isDirectory.boolValue,
              access(command, X_OK) == 0 else {
            throw Invalid(key: "sla.notifyCommand", reason: "\(command) is not an executable file (an absolute path, run with the urgency, the count and the queue)")
        }
    }

    func readCAKeyPEM() throws -> String {
        if let caKeyPEM { return caKeyPEM.value }
        try Self.checkPrivate(caKeyFile, key: "ca.keyFile")
        return try Self.read(caKeyFile, key: "ca.keyFile")
    }

    static let findingSeeds = "run from the source tree (./seeds), install with `make install`, or set seeds.directory (AMANE_SEEDS_DIRECTORY)"

    /// A file of the seeds folder, which a new database loads its taxonomy and policy from.
    static func readSeed(_ name: String, in directory: String) throws -> String {
        let path = (directory as NSString).appendingPathComponent(name)
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw Invalid(key: "seeds.directory", reason: "no \(name) at \(path); \(findingSeeds)")
        }
        return text
    }

    static func read(_ path: String, key: String) throws -> String {
        // Opened here so that the reason is this open's own errno: a folder that cannot be entered is not "no file".
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            let error = errno
            guard error == ENOENT else {
                throw Invalid(key: key, reason: "cannot read \(path): \(String(cString: strerror(error))); it and its folders must be readable by the user running amane-relayd (uid \(getuid()))")
            }
            if key == "config" { throw Invalid(key: key, reason: "no file at \(path)") }
            if key == "ca.keyFile" {
                throw Invalid(key: key, reason: """
                    no file at \(path): the CA's key signs new certificates; if it is kept offline, put it back (or give its path as \(key)) \
                    for this command only
                    """)
            }
            let neverSetUp = !FileManager.default.fileExists(atPath: (path as NSString).deletingLastPathComponent)
            throw Invalid(key: key, reason: """
                no file at \(path); check the path given as \(key), and --data-dir (or --config)\
                \(neverSetUp ? ", or run `amane-relayd init` if this relay was never set up" : "")
                """)
        }
        let handle = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
        let data: Data
        do { data = try handle.readToEnd() ?? Data() } catch { throw Invalid(key: key, reason: "cannot read \(path) (a folder?)") }
        guard let text = String(data: data, encoding: .utf8) else { throw Invalid(key: key, reason: "\(path) is not UTF-8 text") }
        return text
    }
}

/// Secret text, such as a private key's PEM, that prints as a placeholder wherever it is described or dumped:
/// a service logged at debug level describes its configuration.
public struct SecretText: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public let value: String

    public init(_ value: String) { self.value = value }

    public var description: String { "<secret>" }
    public var debugDescription: String { "<secret>" }
    public var customMirror: Mirror { Mirror(self, children: []) }
}
