public import ArgumentParser
import Foundation
import Logging
import NIOCore
import RelayCore
import RelayFormat
import RelayStore
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

/// `amane-relayd`: the relay daemon and its admin tools.
public struct DaemonCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "amane-relayd",
        abstract: "The Amane Relay daemon: receives disclosures over mutual TLS, seals them at once, and serves the triage API.",
        discussion: """
            Configuration is read in this order: command-line options, AMANE_* environment variables (AMANE_HTTP_LISTEN \
            for http.listen), the YAML file given with --config, systemd credentials in $CREDENTIALS_DIRECTORY, the seed \
            policy (seeds/policy.yaml), then defaults. The example configuration, installed as /etc/amane-relay/amane-relayd.yaml \
            (Config/amane-relayd.yaml in the source), shows every key; a key or AMANE_* variable \
            that the relay does not read is refused.

            Exit status: 0 done; 1 failed (the message says why); 6 the audit trail does not verify (backup, restore, \
            admin audit verify); 64 a bad argument; 78 a configuration the relay refuses (any command; for serve and \
            check-config also a data directory it cannot use), which the systemd unit does not restart on.
            """,
        version: RelayVersion.current,
        subcommands: [Serve.self, Init.self, Admin.self, Backup.self, Restore.self, CheckConfig.self, PrintOpenAPI.self],
        defaultSubcommand: Serve.self)

    public init() {}

    /// Parses the command line and runs; the executable's whole `main`.
    public static func runFromCommandLine() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            let (failure, status) = Self.failure(error)
            guard JSONLogHandler.isActive, status != .success else {
                if let failure = failure as? RelayConfiguration.Invalid {
                    FileHandle.standardError.write(Data("Error: \(failure)\n".utf8))
                    exit(withError: status)
                }
                exit(withError: failure)
            }
            // A log that is JSON stays JSON to its last line, so that whatever reads it sees why the relay stopped.
            FileHandle.standardError.write(JSONLogHandler.line(level: .critical, label: "amane-relayd", message: "\(failure)",
                                                               fields: ["relay.exitStatus": "\(status.rawValue)"]))
            Glibc.exit(status.rawValue)
        }
    }

    /// What a failure says, and the exit status it ends with.
    private static func failure(_ error: any Error) -> (any Error, ExitCode) {
        switch error {
        // Its reason is written for people; the code before it is for programs.
        case let error as StoreError: (CommandFailure(error.reason), .failure)
        // EX_CONFIG: the unit's RestartPreventExitStatus keeps a bad configuration out of a restart loop.
        case let error as RelayConfiguration.Invalid: (error, ExitCode(78))
        default: (error, exitCode(for: error))
        }
    }
}

/// Options every subcommand shares.
struct CommonOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The YAML configuration file.", valueName: "file"))
    var config: String?

    @Option(name: .customLong("data-dir"), help: ArgumentHelp("The data directory (db.path).", valueName: "dir"))
    var dataDirectory: String?

    @Flag(name: .long, help: "Work on the development relay in the local folder .amane-dev, which `serve --dev` makes on its first start (a CA, certificates, demo profiles).")
    var dev = false

    func load(extra: [String: String] = [:]) async throws -> RelayConfiguration {
        var overrides = extra
        if let dataDirectory { overrides["db.path"] = dataDirectory }
        if dev { overrides["dev"] = "true" }
        return try await RelayConfiguration.load(overrides: overrides, configFile: config)
    }

    /// Opens the store with its writer running, for admin work beside (or instead of) the daemon. Only `init`
    /// creates a database: elsewhere a missing one is a mistyped --data-dir, not an empty relay.
    func withStore<T: Sendable>(_ configuration: RelayConfiguration, creating: Bool = false,
                                _ body: (RelayDatabase) async throws -> T) async throws -> T {
        if !creating { try requireDatabase(configuration) }
        var options = RelayDatabase.Options()
        options.policy = configuration.policy
        // Only `init` and the relay's start take the taxonomy file: an admin command beside a running relay leaves it be.
        let taxonomy = creating ? try? RelayConfiguration.readSeed("taxonomy.yaml", in: configuration.seedsDirectory) : nil
        let db = try RelayDatabase(directory: configuration.dataDirectory, taxonomyYAML: taxonomy, options: options)
        let writer = Task { await db.runWriter() }
        defer { db.closeWriter() }
        let result = try await body(db)
        db.closeWriter()
        await writer.value
        return result
    }

    /// Opens a database that must exist, without its writer: for reading and backups.
    func openExisting(_ configuration: RelayConfiguration) throws -> RelayDatabase {
        try requireDatabase(configuration)
        return try RelayDatabase(directory: configuration.dataDirectory)
    }

    /// As `requireDatabase`, for `serve` and `check-config`: a configuration error (exit 78), which systemd does not restart on.
    func requireDatabaseToServe(_ configuration: RelayConfiguration) throws {
        do { try requireDatabase(configuration) } catch let failure as CommandFailure {
            throw RelayConfiguration.Invalid(key: "db.path", reason: failure.description)
        }
    }

    /// A data directory this user cannot write, likewise a configuration error for `serve` and `check-config`.
    func requireWritableToServe(_ configuration: RelayConfiguration) throws {
        do { try RelayDatabase.requireWritable(configuration.dataDirectory) } catch let error as StoreError {
            throw RelayConfiguration.Invalid(key: "db.path", reason: error.reason)
        }
    }

    func requireDatabase(_ configuration: RelayConfiguration) throws {
        let file = (configuration.dataDirectory as NSString).appendingPathComponent(RelayDatabase.fileName)
        if access(file, F_OK) != 0, errno == EACCES {
            throw CommandFailure("""
                cannot reach \(file): the data directory must belong to the user running this command (uid \(getuid())); \
                run it as the service user (sudo -u amane-relay, or runuser -u amane-relay --)
                """)
        }
        guard FileManager.default.fileExists(atPath: file) else {
            throw CommandFailure("""
                no relay database at \(file): give the relay's --data-dir (or --config, or --dev for the development folder), \
                or create one with `amane-relayd init`
                """)
        }
    }
}

/// What an admin command says on standard error without failing.
enum Console {
    static func warn(_ text: String) {
        FileHandle.standardError.write(Data("Warning: \(text)\n".utf8))
    }
}

/// A failure of the work rather than of the arguments: printed without the usage text, exit 1.
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the relay (the default).",
        discussion: "Example: amane-relayd serve --dev --listen 127.0.0.1:0")

    @OptionGroup var common: CommonOptions

    @Option(help: ArgumentHelp("Where the HTTPS API listens (http.listen); port 0 picks a free port.", valueName: "host:port"))
    var listen: String?

    @Option(name: .customLong("ops-listen"), help: ArgumentHelp("Where /healthz, /readyz and /metrics listen, loopback only (ops.listen).", valueName: "host:port"))
    var opsListen: String?

    func run() async throws {
        var extra: [String: String] = [:]
        if let listen { extra["http.listen"] = listen }
        if let opsListen { extra["ops.listen"] = opsListen }
        let configuration = try await common.load(extra: extra)
        let logger = configuration.bootstrapLogging()
        if !ProcessLimits.refuseCoreDumps() {
            logger.warning("could not make the process undumpable; core dumps rest on the core limit alone", metadata: ["relay.errno": "\(errno)"])
        }
        let openFiles = ProcessLimits.raiseOpenFiles()
        if openFiles < 4096 {
            logger.warning("few open files allowed; each connection needs one", metadata: ["relay.openFileLimit": "\(openFiles)"])
        }
        // Only `init` and development mode make a database: a missing one is a wrong --data-dir or db.path, not an empty relay.
        if !configuration.dev { try common.requireDatabaseToServe(configuration) }
        // A new development relay needs the seed taxonomy: without it, fail before leaving a half-made folder behind.
        if !FileManager.default.fileExists(atPath: (configuration.dataDirectory as NSString).appendingPathComponent(RelayDatabase.fileName)) {
            _ = try RelayConfiguration.readSeed("taxonomy.yaml", in: configuration.seedsDirectory)
        }
        try RelayFiles.makeDirectory(configuration.dataDirectory)
        try common.requireWritableToServe(configuration)
        for warning in RelayFiles.openToOthers(configuration) { logger.warning("\(warning)") }
        let lock = try DataDirectoryLock.acquire(configuration.dataDirectory)
        defer { close(lock) }
        FolderLock.removeLeftovers(in: configuration.dataDirectory, prefix: Restore.stagingPrefix, leftBy: "a restore") { logger.notice("\($0)") }
        if configuration.dev { try DevEnvironment.preparePKI(configuration) }
        try configuration.checkNotifyCommand()
        let app = try await RelayServerApp.build(configuration: configuration, logger: logger)
        if configuration.dev {
            let db = app.db
            let bound = app.bound
            Task {
                do {
                    guard try await DevEnvironment.populate(db, configuration: configuration) else {
                        logger.warning("development mode on a relay with a CA of its own (not the development CA): no demo principal, key or profile was made")
                        await bound.ready()
                        say(bound.listeningLine)
                        return
                    }
                    await bound.ready()
                    try DevEnvironment.writeProfiles(configuration, port: bound.https ?? configuration.listen.port)
                    // "listening" comes earlier: a script that watches the log waits for this line instead.
                    logger.notice("development profiles ready", metadata: ["relay.dev": "\(DevEnvironment.folder(configuration, ""))"])
                    say(DevEnvironment.banner(configuration, port: bound.https ?? configuration.listen.port, opsPort: bound.ops ?? configuration.opsListen.port))
                    // Only now: whoever waits for this line may use the demo profiles at once.
                    say(bound.listeningLine)
                } catch {
                    logger.critical("could not prepare the development environment", metadata: ["relay.error": "\(error)"])
                }
            }
        } else {
            let db = app.db
            let bound = app.bound
            Task {
                try? await db.ensureQueue(.national, actor: .relay)
                await RelayServerApp.warnOfQueuesWithoutSealingKey(db, logger: logger)
            }
            Task {
                await bound.ready()
                say(bound.listeningLine)
            }
        }
        do {
            try await app.run()
        } catch let error as IOError {
            guard let failure = ListenFailure(error, bound: app.bound, configuration: configuration) else { throw error }
            throw CommandFailure(failure.description)
        }
    }
}

/// A listener that could not bind, named by its configuration key: NIO's error names neither the address nor the key.
struct ListenFailure: CustomStringConvertible {
    let description: String

    init?(_ error: IOError, bound: BoundPorts, configuration: RelayConfiguration) {
        let reason: String
        switch error.errnoCode {
        case EADDRINUSE: reason = "the address is in use (another amane-relayd, or another program, holds the port)"
        case EACCES: reason = "permission denied (a port below 1024 needs CAP_NET_BIND_SERVICE)"
        case EADDRNOTAVAIL: reason = "no interface of this machine has that address"
        default: return nil
        }
        // A listener that came up is not the one that failed; when neither did, either may have.
        var suspects: [String] = []
        if bound.https == nil { suspects.append("\(configuration.listen) (http.listen, --listen)") }
        if bound.ops == nil { suspects.append("\(configuration.opsListen) (ops.listen, --ops-listen)") }
        guard !suspects.isEmpty else { return nil }
        description = "cannot listen on \(suspects.joined(separator: " or ")): \(reason)"
    }
}

/// Writes a line to standard output at once, even into a pipe; a JSON record when the relay logs in JSON.
func say(_ text: String) {
    let jsonLogs = JSONLogHandler.isActive
    FileHandle.standardOutput.write(jsonLogs ? JSONLogHandler.line(level: .notice, label: "amane-relayd", message: text) : Data((text + "\n").utf8))
}
