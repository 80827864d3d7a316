import Foundation
public import Logging
import Synchronization

/// One JSON object per line on standard error: time, level, label, message and metadata.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    let label: String

    public init(label: String) { self.label = label }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let fields = metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }).mapValues { "\($0)" }
        FileHandle.standardError.write(Self.line(level: event.level, label: label, message: "\(event.message)", fields: fields))
    }

    /// One record, newline included.
    static func line(level: Logger.Level, label: String, message: String, fields: [String: String] = [:]) -> Data {
        var object = fields
        object["time"] = Date().formatted(.iso8601)
        object["level"] = level.rawValue
        object["label"] = label
        object["message"] = message
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var line = (try? encoder.encode(object)) ?? Data("{}".utf8)
        line.append(0x0a)
        return line
    }

    /// True once the process logs in JSON: what the daemon prints outside its logger must then be JSON too.
    static var isActive: Bool { active.load(ordering: .relaxed) }
    fileprivate static let active = Atomic<Bool>(false)
}

extension RelayConfiguration {
    /// Bootstraps swift-log once per process with the configured format and level.
    public func bootstrapLogging() -> Logger {
        let level = logLevel
        switch logFormat {
        case .json:
            JSONLogHandler.active.store(true, ordering: .relaxed)
            LoggingSystem.bootstrap { label in
                var handler = JSONLogHandler(label: label)
                handler.logLevel = level
                return handler
            }
        case .text:
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
        }
        return Logger(label: "amane-relayd")
    }
}
