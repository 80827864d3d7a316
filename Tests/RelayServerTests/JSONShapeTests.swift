import Foundation
import RelayAPI
import Testing

/// The pass over a body's raw bytes that runs before any JSON parser, and the strict decoding after it.
@Suite struct JSONShapeTests {
    func check(_ text: String, structure: Int = 1_000, largeFields: Set<String> = ["sealed"]) -> StrictJSON.ShapeFailure? {
        do { try StrictJSON.checkShape(Array(text.utf8), maxStructureBytes: structure, largeFields: largeFields); return nil } catch { return error }
    }

    @Test func wellFormedBodiesPass() {
        #expect(check(#"{"a":"x","b":{"a":"y"},"c":["a","a",{"a":1}],"d":[1,true,null,-2.5e3]}"#) == nil, "a key may recur in another object, strings in arrays are no keys")
        #expect(check(#"[{"a":1},{"a":2}]"#) == nil, "objects in a top-level array each have their own keys")
        #expect(check(#"{"q":"a \"quoted\" \\","r":"\\"}"#) == nil, "escaped quotes and backslashes end no string early")
    }

    @Test func aKeyTwiceInOneObjectIsRefusedHoweverItIsSpelt() {
        #expect(check(#"{"narrative":"A","narrative":"B"}"#) == .invalid("field 'narrative' appears twice in one object"))
        #expect(check(#"{"narrative":"A","narr\u0061tive":"B"}"#) == .invalid("field 'narrative' appears twice in one object"))
        #expect(check("{\"answers\":{\"\u{E9}\":\"1\",\"e\u{301}\":\"2\"}}") != nil, "composed and decomposed é are one Swift key")
        #expect(check(#"{"a":{"b":1,"b":2}}"#) != nil)
    }

    @Test func onlyUTF8WithoutAByteOrderMarkIsTaken() throws {
        let text = #"{"narrative":"x"}"#
        let refusal = StrictJSON.ShapeFailure.invalid("send the body as JSON in UTF-8, without a byte order mark")
        for encoding: String.Encoding in [.utf16LittleEndian, .utf16BigEndian, .utf16, .utf32LittleEndian, .utf32BigEndian, .utf32] {
            let bytes = try #require(text.data(using: encoding))
            #expect(throws: refusal, "\(encoding)") { try StrictJSON.checkShape(Array(bytes), maxStructureBytes: 1_000) }
        }
        #expect(throws: refusal) { try StrictJSON.checkShape([0xEF, 0xBB, 0xBF] + Array(text.utf8), maxStructureBytes: 1_000) }
        #expect(check(text) == nil)
    }

    @Test func brokenAndDeepBodiesAreRefused() {
        #expect(check(#"{"a":"unterminated"#) == .invalid("the body is not valid JSON in UTF-8"))
        #expect(check(#"{"a":"ends in a backslash\"#) == .invalid("the body is not valid JSON in UTF-8"))
        #expect(check(String(repeating: "[", count: 33) + String(repeating: "]", count: 33)) == .invalid("the JSON is nested more than 32 deep"))
        #expect(check(String(repeating: "[", count: 32) + String(repeating: "]", count: 32)) == nil)
    }

    @Test func onlyTopLevelEnvelopeFieldsMayExceedTheStructureLimit() {
        let envelope = String(repeating: "A", count: 50_000)
        #expect(check(#"{"sealed":"\#(envelope)","category":"x"}"#) == nil, "one envelope")
        #expect(check(#"{"sealed":"\#(envelope)","gatewaySealed":"\#(envelope)"}"#, largeFields: ["sealed", "gatewaySealed"]) == nil, "a reply carries two")
        #expect(check(#"{"sealed":"\#(envelope)","gatewaySealed":"\#(envelope)"}"#) == .tooLarge)
        #expect(check(#"{"category":"x","content":{"narrative":"\#(envelope)"}}"#) == .tooLarge, "a plaintext narrative is plain JSON")
        #expect(check(#"{"content":{"sealed":"\#(envelope)"}}"#) == .tooLarge, "only at the top level")
        #expect(check(#"{"\#(envelope)":"sealed"}"#) == .tooLarge, "a key is no envelope")
        #expect(check(#"["\#(envelope)"]"#) == .tooLarge)
        let manyValues = "{" + (0..<200).map { "\"k\($0)\":0" }.joined(separator: ",") + "}"
        #expect(check(manyValues) == .tooLarge, "many small values count in full")
    }

    @Test func aBodyHoldsAtMostAThousandValues() {
        let list = { (count: Int) in #"{"answers":{"a":["# + [String](repeating: "\"\"", count: count).joined(separator: ",") + "]}}" }
        #expect(check(list(997), structure: 10_000) == nil, "two objects and an array around 997 strings: 1,000 values")
        #expect(check(list(998), structure: 10_000) == .invalid("the JSON holds more than 1000 values"))
        #expect(check("[" + [String](repeating: "1", count: 999).joined(separator: ",") + "]", structure: 10_000) == nil)
        #expect(check("[" + [String](repeating: "0", count: 2_000).joined(separator: ",") + "]", structure: 10_000) != nil, "numbers count too")
    }

    @Test func aNarrativeOfOnlyInvisibleCharactersHoldsNoText() {
        func blank(_ narrative: String) -> Bool {
            (try? IntakeCheck.checkNarrative(DisclosureContent(narrative: narrative), maxBytes: 100)) == nil
        }
        for nothing in ["", " \n\t", "\u{00A0}\u{3000}", "\u{200F}\u{200E}", "\u{200B}\u{FEFF}\u{2060}", "\u{00AD}\u{FE0F}", "\u{0007}\u{001B}", "\u{0301}\u{064E}\u{20DD}"] {
            #expect(blank(nothing), "\(nothing.unicodeScalars.map { String($0.value, radix: 16) })")
        }
        for something in ["ok", "\u{200F}نعم", "👍", "\u{200B}1", "نَعَم", "e\u{0301}"] {
            #expect(!blank(something), "\(something)")
        }
    }

    @Test func unknownFieldsAreRefusedEvenWhenNullAndKnownOnesMayBeNull() throws {
        func failure(_ text: String) -> String? {
            do { _ = try StrictJSON.decode(DisclosureSubmission.self, from: Data(text.utf8)); return nil } catch { return error.description }
        }
        #expect(failure("") == "the body is empty: send a JSON object, with a Content-Length or chunked")
        for notAnObject in ["null", "\"text\"", "12", "[]"] {
            #expect(failure(notAnObject) == "the body must be a JSON object", "\(notAnObject)")
        }
        #expect(failure("{") == "the body is not valid JSON in UTF-8")
        let labels = #""urgency":"high","category":"sexual_abuse","language":"fr","channel":"phone""#
        #expect(failure(#"{\#(labels),"content":{"narrative":"x"},"bogus":null}"#) == "unknown field 'bogus'")
        #expect(failure(#"{\#(labels),"content":{"narrative":"x","mood":null}}"#) == "unknown field 'content.mood'")
        #expect(failure(#"{\#(labels),"content":{"narrative":"x","mood":"calm"}}"#) == "unknown field 'content.mood'")
        #expect(failure(#"{\#(labels),"region":null,"sealed":null,"content":{"narrative":"x","answers":null}}"#) == nil, "a known optional field may be null")
        #expect(failure(#"{\#(labels),"content":{"narrative":"x","answers":{"age":["12",null]}}}"#) != nil, "an answer list holds strings only")
        #expect(failure(#"{\#(labels),"content":{"narrative":"x","answers":{"any question":"yes"}}}"#) == nil, "answers' keys are data, not fields")
    }
}
