public import Foundation

/// Times on the wire: ISO 8601 in UTC, to the second.
public enum Timestamp {
    public static func iso8601(_ unixSeconds: Int64) -> String {
        Date(timeIntervalSince1970: TimeInterval(unixSeconds)).formatted(.iso8601)
    }

    public static func parse(_ text: String) -> Date? {
        try? Date(text, strategy: .iso8601)
    }
}

/// A calendar month in UTC, written YYYY-MM: the unit of the NGOs' reports.
public struct Month: Sendable, Equatable, Comparable, CustomStringConvertible {
    public let year: Int
    public let month: Int

    public init?(_ text: String) {
        guard let match = text.wholeMatch(of: /(\d{4})-(\d{2})/), let year = Int(match.1), let month = Int(match.2),
              (2000...9999).contains(year), (1...12).contains(month) else { return nil }
        self.year = year
        self.month = month
    }

    /// Unix seconds at the month's first instant.
    public var start: Int64 {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return Int64(calendar.date(from: DateComponents(year: year, month: month, day: 1))!.timeIntervalSince1970)
    }

    /// Unix seconds at the first instant of the month after.
    public var end: Int64 { (month == 12 ? Month(year: year + 1, month: 1) : Month(year: year, month: month + 1)).start }

    private init(year: Int, month: Int) {
        self.year = year
        self.month = month
    }

    public var description: String { String(format: "%04d-%02d", year, month) }

    public static func < (lhs: Month, rhs: Month) -> Bool { (lhs.year, lhs.month) < (rhs.year, rhs.month) }
}

public enum Base64 {
    public static func encode(_ bytes: some Collection<UInt8>) -> String { Data(bytes).base64EncodedString() }

    /// Strict: only the canonical, padded encoding.
    public static func decode(_ text: String) -> [UInt8]? {
        guard let data = Data(base64Encoded: text), data.base64EncodedString() == text else { return nil }
        return Array(data)
    }
}

/// JSON decoding that refuses what `JSONDecoder` would silently accept: unknown fields anywhere,
/// and anything that is not a JSON object at the top.
public enum StrictJSON {
    public struct DecodingFailure: Error, Sendable, Equatable, CustomStringConvertible {
        public let description: String
    }

    public static func decode<T: Codable>(_ type: T.Type, from data: Data) throws(DecodingFailure) -> T {
        try decodeCanonical(type, from: data).value
    }

    /// JSON with sorted keys: the same value always gives the same bytes.
    public static func canonical(_ value: some Encodable) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return try encoder.encode(value)
    }

    /// Decodes as `decode` does, and also returns the value re-encoded with sorted keys: the same content
    /// gives the same bytes however the sender laid its JSON out.
    public static func decodeCanonical<T: Codable>(_ type: T.Type, from data: Data) throws(DecodingFailure) -> (value: T, canonical: Data) {
        // HTTP/1.0 without a Content-Length sends none, whatever the client meant to.
        guard !data.isEmpty else { throw DecodingFailure(description: "the body is empty: send a JSON object, with a Content-Length or chunked") }
        let original: Any
        do {
            original = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
        } catch {
            throw DecodingFailure(description: "the body is not valid JSON in UTF-8")
        }
        guard original is [String: Any] else { throw DecodingFailure(description: "the body must be a JSON object") }
        let value: T
        do {
            value = try JSONDecoder().decode(T.self, from: data)
        } catch let DecodingError.keyNotFound(key, context) {
            throw DecodingFailure(description: "missing field '\(path(context.codingPath + [key]))'")
        } catch let DecodingError.typeMismatch(_, context) {
            throw DecodingFailure(description: "field '\(path(context.codingPath))' has the wrong type")
        } catch let DecodingError.valueNotFound(_, context) {
            throw DecodingFailure(description: "field '\(path(context.codingPath))' must not be null")
        } catch let DecodingError.dataCorrupted(context) {
            throw DecodingFailure(description: "field '\(path(context.codingPath))' is not valid")
        } catch {
            throw DecodingFailure(description: "the body does not match the expected shape")
        }
        let canonical: Data
        let reencoded: Any
        do {
            canonical = try Self.canonical(value)
            reencoded = try JSONSerialization.jsonObject(with: canonical, options: [])
        } catch {
            throw DecodingFailure(description: "the body does not match the expected shape")
        }
        // Mirror is slow, and only a null needs it: most bodies hold none.
        if let unknown = firstUnknownField(original, known: reencoded, decoded: containsNull(original) ? value : nil, prefix: "") {
            throw DecodingFailure(description: "unknown field '\(unknown)'")
        }
        return (value, canonical)
    }

    /// Why `checkShape` refused a body.
    public enum ShapeFailure: Error, Sendable, Equatable {
        /// More than the allowed bytes outside the envelope fields.
        case tooLarge
        case invalid(String)
    }

    /// A first pass over the raw bytes, before any parser allocates. It refuses a key that appears twice in
    /// one object (parsers disagree on which value wins), nesting deeper than `maxDepth`, more than `maxValues`
    /// values (a parser's cost grows with their count, not their size), and more than `maxStructureBytes` in all
    /// but the top-level string values of `largeFields`: a sealed envelope's base64 may be large, the rest of a
    /// body never is. It also refuses UTF-16, UTF-32 and a UTF-8 byte order mark (RFC 8259), which Foundation's
    /// parser would take; whether the UTF-8 is valid is left to that parser.
    public static func checkShape(_ bytes: [UInt8], maxStructureBytes: Int, largeFields: Set<String> = [], maxDepth: Int = 32,
                                  maxValues: Int = 1_000) throws(ShapeFailure) {
        // UTF-16 and UTF-32 put a zero byte in the first four of any JSON text, with or without a mark.
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) || bytes.prefix(4).contains(0) {
            throw .invalid("send the body as JSON in UTF-8, without a byte order mark")
        }
        struct Level {
            let isObject: Bool
            var expectsKey: Bool
            var keys: Set<String> = []
            var key: String?
        }
        var levels: [Level] = []
        var largeBytes = 0
        // The body is one value; each container opened and each comma starts another (its first member, or the next one).
        var values = 1
        var index = 0
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "\""):
                let start = index + 1
                var escaped = false
                index = start
                while index < bytes.count, bytes[index] != UInt8(ascii: "\"") {
                    if bytes[index] == UInt8(ascii: "\\") { escaped = true; index += 1 }
                    index += 1
                }
                guard index < bytes.count else { throw .invalid("the body is not valid JSON in UTF-8") }
                guard let last = levels.indices.last, levels[last].isObject else { break }
                if levels[last].expectsKey {
                    // Compared as Swift strings: two spellings of one name (an escape, another Unicode normal form) are one key.
                    let key = escaped ? unescaped(bytes[start..<index]) : String(decoding: bytes[start..<index], as: UTF8.self)
                    guard levels[last].keys.insert(key).inserted else { throw .invalid("field '\(key.prefix(64))' appears twice in one object") }
                    levels[last].expectsKey = false
                    levels[last].key = key
                } else if last == 0, let key = levels[0].key, largeFields.contains(key) {
                    largeBytes += index - start + 2
                }
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                levels.append(Level(isObject: bytes[index] == UInt8(ascii: "{"), expectsKey: true))
                guard levels.count <= maxDepth else { throw .invalid("the JSON is nested more than \(maxDepth) deep") }
                values += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                _ = levels.popLast()
            case UInt8(ascii: ","):
                if let last = levels.indices.last, levels[last].isObject { levels[last].expectsKey = true }
                values += 1
            default:
                break
            }
            index += 1
            guard values <= maxValues else { throw .invalid("the JSON holds more than \(maxValues) values") }
            // What is scanned, less the envelopes so far, only grows towards the final figure: stop as soon as it is too much.
            if index - largeBytes > maxStructureBytes { throw .tooLarge }
        }
    }

    private static func unescaped(_ quotedContent: ArraySlice<UInt8>) -> String {
        let literal = Data([UInt8(ascii: "\"")] + quotedContent + [UInt8(ascii: "\"")])
        let text = try? JSONSerialization.jsonObject(with: literal, options: .fragmentsAllowed) as? String
        return text ?? String(decoding: quotedContent, as: UTF8.self)
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
    }

    /// The first field sent that the type does not have. `known` is the value re-encoded; a null drops out of
    /// it, so a null is checked against the decoded value's own fields (no API type renames its coding keys).
    private static func firstUnknownField(_ sent: Any, known: Any, decoded: Any?, prefix: String) -> String? {
        if let sent = sent as? [String: Any] {
            let known = known as? [String: Any] ?? [:]
            let fields = decoded.flatMap(fields(of:))
            for key in sent.keys.sorted() {
                let name = prefix.isEmpty ? key : "\(prefix).\(key)"
                if sent[key] is NSNull {
                    if let fields, fields[key] == nil { return name }
                    continue
                }
                guard let inner = known[key] else { return name }
                let innerDecoded = decoded.map { fields?[key] ?? (unwrapped($0) as? [String: Any])?[key] ?? () }
                if let found = firstUnknownField(sent[key]!, known: inner, decoded: innerDecoded, prefix: name) { return found }
            }
        } else if let sent = sent as? [Any], let known = known as? [Any] {
            let decodedItems = decoded.map { unwrapped($0) as? [Any] ?? [] }
            for (index, (item, knownItem)) in zip(sent, known).enumerated() {
                let itemDecoded = decodedItems.map { index < $0.count ? $0[index] : () }
                if let found = firstUnknownField(item, known: knownItem, decoded: itemDecoded, prefix: "\(prefix)[\(index)]") { return found }
            }
        }
        return nil
    }

    private static func containsNull(_ json: Any) -> Bool {
        if json is NSNull { return true }
        if let object = json as? [String: Any] { return object.values.contains(where: containsNull) }
        if let array = json as? [Any] { return array.contains(where: containsNull) }
        return false
    }

    /// A decoded struct's stored properties by name; nil for anything else (a dictionary's keys are data).
    private static func fields(of value: Any) -> [String: Any]? {
        let mirror = Mirror(reflecting: unwrapped(value))
        guard mirror.displayStyle == .struct else { return nil }
        return Dictionary(mirror.children.compactMap { child in child.label.map { ($0, child.value) } }, uniquingKeysWith: { first, _ in first })
    }

    private static func unwrapped(_ value: Any) -> Any {
        let mirror = Mirror(reflecting: value)
        guard mirror.displayStyle == .optional else { return value }
        return mirror.children.first.map { unwrapped($0.value) } ?? ()
    }
}
