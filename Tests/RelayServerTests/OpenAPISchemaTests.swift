import Foundation
import RelayAPI
@testable import RelayServer
import Testing
import Yams

/// The document's schemas are the API's own types: the same fields, of the JSON types the types decode, required
/// exactly where the types require them; and every reference resolves.
@Suite struct OpenAPISchemaTests {
    static let types: [String: any (Codable & Sendable).Type] = [
        "Problem": Problem.self, "Content": DisclosureContent.self, "DisclosureSubmission": DisclosureSubmission.self,
        "DisclosureReceipt": DisclosureReceipt.self, "FollowupSubmission": FollowupSubmission.self, "FollowupAccepted": FollowupAccepted.self,
        "ReplyFetch": ReplyFetch.self, "ReplyKey": ReplyKey.self, "SealedReply": SealedReply.self, "ReplyList": ReplyList.self, "SealingKeyInfo": SealingKeyInfo.self,
        "CaseView": CaseView.self, "QueueListing": QueueListing.self, "SealedObjectView": SealedObjectView.self, "CaseFile": CaseFile.self,
        "TransitionRequest": TransitionRequest.self, "NoteSubmission": NoteSubmission.self, "ReplySubmission": ReplySubmission.self,
        "AssignRequest": AssignRequest.self, "HoldRequest": HoldRequest.self, "Accepted": Accepted.self, "GrantsStored": GrantsStored.self, "GrantView": GrantView.self,
        "GrantList": GrantList.self, "GrantUpload": GrantUpload.self, "EpochCreation": EpochCreation.self, "EpochView": EpochView.self,
        "MemberView": MemberView.self, "MemberList": MemberList.self, "StatRow": StatRow.self, "Statistics": Statistics.self,
        "AuditEntryView": AuditEntryView.self, "AuditPage": AuditPage.self, "TaxonomyLabel": TaxonomyLabel.self,
        "TaxonomyListing": TaxonomyListing.self, "Identity": Identity.self,
    ]
    /// Always sent by this relay, yet optional in its type, so that a client still reads the answer of any relay, an older one too.
    static let requiredBeyondTheType: Set<String> = ["Problem.code", "GrantsStored.kept", "SealingKeyInfo.narrativeMaxBytes",
                                                                "SealingKeyInfo.contentMaxBytes"]

    struct SchemaError: Error, CustomStringConvertible { let description: String }

    static func schemas() throws -> [String: [String: Any]] {
        let document = try Yams.load(yaml: OpenAPIDocument.yaml) as? [String: Any]
        guard let schemas = (document?["components"] as? [String: Any])?["schemas"] as? [String: [String: Any]] else {
            throw SchemaError(description: "the document has no components.schemas")
        }
        return schemas
    }

    /// A JSON value that fills every field the schema lists.
    static func sample(_ schema: [String: Any], _ schemas: [String: [String: Any]], at place: String) throws -> Any {
        if let reference = schema["$ref"] as? String {
            guard let name = reference.split(separator: "/").last, let target = schemas[String(name)] else {
                throw SchemaError(description: "\(place): \(reference) names no schema")
            }
            return try sample(target, schemas, at: String(name))
        }
        if let choices = schema["oneOf"] as? [[String: Any]], let first = choices.first { return try sample(first, schemas, at: place) }
        switch schema["type"] as? String {
        case "object":
            if let properties = schema["properties"] as? [String: [String: Any]] {
                return try properties.reduce(into: [String: Any]()) { $0[$1.key] = try sample($1.value, schemas, at: "\(place).\($1.key)") }
            }
            guard let values = schema["additionalProperties"] as? [String: Any] else {
                throw SchemaError(description: "\(place): an object schema says what it holds (properties or additionalProperties)")
            }
            return ["key": try sample(values, schemas, at: "\(place)[key]")]
        case "array":
            guard let items = schema["items"] as? [String: Any] else { throw SchemaError(description: "\(place): an array schema says what it holds (items)") }
            return [try sample(items, schemas, at: "\(place)[]")]
        case "string": return "text"
        case "integer": return 1
        case "boolean": return true
        default: throw SchemaError(description: "\(place): no type this test knows: \(schema)")
        }
    }

    /// What in a JSON value its schema does not allow: a field the schema does not name, a required one absent, another
    /// JSON type, a value outside its enum, a date-time that is none.
    static func violations(of value: Any, _ schema: [String: Any], _ schemas: [String: [String: Any]], at place: String) -> [String] {
        if let reference = schema["$ref"] as? String {
            guard let name = reference.split(separator: "/").last, let target = schemas[String(name)] else { return ["\(place): \(reference) names no schema"] }
            return violations(of: value, target, schemas, at: place)
        }
        if let choices = schema["oneOf"] as? [[String: Any]] {
            return choices.contains { violations(of: value, $0, schemas, at: place).isEmpty } ? [] : ["\(place): \(value) is none of its choices"]
        }
        if let allowed = schema["enum"] as? [Any], !allowed.contains(where: { "\($0)" == "\(value)" }) {
            return ["\(place): \(value) is not one of \(allowed)"]
        }
        switch schema["type"] as? String {
        case "object":
            guard let object = value as? [String: Any] else { return ["\(place): \(value) is not an object"] }
            let properties = schema["properties"] as? [String: [String: Any]] ?? [:]
            var found = (schema["required"] as? [String] ?? []).filter { object[$0] == nil }.map { "\(place).\($0): required, absent" }
            for (key, field) in object.sorted(by: { $0.key < $1.key }) {
                guard let fieldSchema = properties[key] ?? schema["additionalProperties"] as? [String: Any] else {
                    found.append("\(place).\(key): a field the document does not name")
                    continue
                }
                found += violations(of: field, fieldSchema, schemas, at: "\(place).\(key)")
            }
            return found
        case "array":
            guard let array = value as? [Any] else { return ["\(place): \(value) is not an array"] }
            let items = schema["items"] as? [String: Any] ?? [:]
            return array.enumerated().flatMap { violations(of: $0.element, items, schemas, at: "\(place)[\($0.offset)]") }
        case "string":
            guard let string = value as? String else { return ["\(place): \(value) is not a string"] }
            guard schema["format"] as? String != "date-time" || Timestamp.parse(string) != nil else { return ["\(place): \(string) is not a date-time"] }
            return []
        case "integer": return isBoolean(value) || Int("\(value)") == nil ? ["\(place): \(value) is not an integer"] : []
        case "boolean": return isBoolean(value) ? [] : ["\(place): \(value) is not a boolean"]
        default: return ["\(place): no type this test knows: \(schema)"]
        }
    }

    /// JSONSerialization gives numbers and booleans alike as NSNumber, which casts to both: only the class tells them apart.
    static func isBoolean(_ value: Any) -> Bool {
        type(of: value) == Bool.self || ObjectIdentifier(type(of: value)) == ObjectIdentifier(type(of: NSNumber(value: true)))
    }

    /// The schema of a route's JSON answer with `status` ("GET /v1/queue"), or nil when the document gives none.
    static func answerSchema(_ route: String, status: Int) throws -> [String: Any]? {
        let parts = route.split(separator: " ").map(String.init)
        let paths = (try Yams.load(yaml: OpenAPIDocument.yaml) as? [String: Any])?["paths"] as? [String: Any]
        let operation = (paths?[parts[1]] as? [String: Any])?[parts[0].lowercased()] as? [String: Any]
        let answer = (operation?["responses"] as? [String: Any])?[String(status)] as? [String: Any]
        return ((answer?["content"] as? [String: Any])?["application/json"] as? [String: Any])?["schema"] as? [String: Any]
    }

    @Test func theValidatorFindsWhatTheDocumentDoesNotAllow() throws {
        let schemas = try Self.schemas()
        let listing: [String: Any] = ["cases": [[
            "id": "x", "queue": "national", "urgency": "high", "category": "c", "language": "ar", "channel": "chat", "state": "in_progress",
            "onHold": false, "updated": true, "receivedAt": "2026-12-01T10:00:00Z", "claimExpiresAt": "2026-12-01T10:15:00Z", "purged": false,
        ]], "next": "abc"]
        let schema = try #require(try Self.answerSchema("GET /v1/queue", status: 200))
        #expect(Self.violations(of: listing, schema, schemas, at: "QueueListing") == [])
        var wrong = (listing["cases"] as! [[String: Any]])[0]
        wrong["urgency"] = "urgent"
        wrong["state"] = "open"
        wrong["claimExpiresAt"] = "in ten minutes"
        wrong["onHold"] = 0
        wrong["mood"] = "calm"
        wrong["id"] = nil
        let parsed = try JSONSerialization.jsonObject(with: JSONSerialization.data(withJSONObject: ["cases": [wrong]]))
        #expect(Self.violations(of: parsed, schema, schemas, at: "L") == [
            "L.cases[0].id: required, absent", "L.cases[0].claimExpiresAt: in ten minutes is not a date-time",
            "L.cases[0].mood: a field the document does not name", "L.cases[0].onHold: 0 is not a boolean",
            "L.cases[0].state: open is not one of [\"new\", \"claimed\", \"in_progress\", \"referred\", \"closed\"]",
            "L.cases[0].urgency: urgent is not one of [\"immediate\", \"high\", \"normal\", \"low\"]",
        ])
    }

    static func decoded<T: Codable>(_ type: T.Type, _ json: Any) -> T? {
        guard let data = try? JSONSerialization.data(withJSONObject: json) else { return nil }
        return try? JSONDecoder().decode(T.self, from: data)
    }

    /// The stored properties' names, which are the JSON field names: no API type renames its coding keys.
    static func fieldNames<T: Codable>(_ type: T.Type, _ json: Any) -> Set<String>? {
        decoded(type, json).map { Set(Mirror(reflecting: $0).children.compactMap(\.label)) }
    }

    @Test func everySchemaIsAnAPITypeAndEveryTypeIsDocumented() throws {
        let schemas = try Self.schemas()
        #expect(Set(schemas.keys) == Set(Self.types.keys), "documented, not typed: \(Set(schemas.keys).subtracting(Self.types.keys)); typed, not documented: \(Set(Self.types.keys).subtracting(schemas.keys))")
        let referenced = Set(OpenAPIDocument.yaml.matches(of: /#\/components\/schemas\/(\w+)/).map { String($0.1) })
        #expect(referenced.subtracting(schemas.keys).isEmpty, "references to no schema: \(referenced.subtracting(schemas.keys))")
        #expect(Set(schemas.keys).subtracting(referenced).isEmpty, "schemas nothing refers to: \(Set(schemas.keys).subtracting(referenced))")
    }

    @Test func everySchemaHasItsTypesFieldsAndRequiresWhatItsTypeRequires() throws {
        let schemas = try Self.schemas()
        var wrong: [String] = []
        for (name, type) in Self.types.sorted(by: { $0.key < $1.key }) {
            guard let schema = schemas[name], let properties = schema["properties"] as? [String: Any] else {
                wrong.append("\(name): no properties")
                continue
            }
            guard let full = try Self.sample(schema, schemas, at: name) as? [String: Any], Self.decoded(type, full) != nil else {
                wrong.append("\(name): a body with every documented field, of its documented type, does not decode")
                continue
            }
            let fields = Self.fieldNames(type, full) ?? []
            if fields != Set(properties.keys) {
                wrong.append("\(name): the type has \(fields.sorted()), the document \(properties.keys.sorted())")
            }
            let required = Set(schema["required"] as? [String] ?? [])
            if !required.isSubset(of: properties.keys) { wrong.append("\(name): requires what it does not list: \(required.subtracting(properties.keys).sorted())") }
            for field in properties.keys.sorted() {
                var without = full
                without[field] = nil
                let typeRequires = Self.decoded(type, without) == nil
                let documented = required.contains(field) && !Self.requiredBeyondTheType.contains("\(name).\(field)")
                if typeRequires != documented {
                    wrong.append("\(name).\(field): the type \(typeRequires ? "requires" : "does not require") it, the document \(documented ? "does" : "does not")")
                }
            }
        }
        #expect(wrong == [], "\(wrong.joined(separator: "\n"))")
    }
}
