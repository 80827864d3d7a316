import Foundation
import RelayCore
import Testing

@Suite struct AuditChainTests {
    static func chain(_ count: Int) -> [ChainedAuditEntry] {
        var head = AuditChain.genesis
        return (1...count).map { seq in
            let entry = AuditEntry(seq: Int64(seq), time: 1_700_000_040 + Int64(seq) * 60, actor: "resp-\(seq % 3)",
                                   action: "claim", subject: "case-\(seq)", detail: #"{"state":"claimed"}"#)
            let chained = AuditChain.append(entry, after: head)
            head = chained.hash
            return chained
        }
    }

    /// Pinned against an independent implementation (Python's hashlib) of the documented encoding.
    @Test func canonicalHashMatchesTheSpecification() {
        let entry = AuditEntry(seq: 1, time: 1_700_000_040, actor: "alice", action: "claim",
                               subject: "01937f5e-3c2a-7b1d-9e4f-a1b2c3d4e5f6", detail: #"{"state":"claimed"}"#)
        let hex = AuditChain.hash(previous: AuditChain.genesis, entry: entry).map { String(format: "%02x", $0) }.joined()
        #expect(hex == "99863d0b5c0c651887c1c349a2ceabefccbcdef42d9dc363bcc6bdab97e245c6")
    }

    @Test func anEarlierHeadShowsACutOrARewrite() throws {
        func verify(_ trail: [ChainedAuditEntry], expecting head: AuditHead) throws(AuditVerifier.Break) {
            var verifier = AuditVerifier()
            for entry in trail {
                try verifier.check(entry)
                try head.check(entry)
            }
            try head.checkReached(verifier)
        }
        let trail = Self.chain(10)
        var verifier = AuditVerifier()
        for entry in trail.prefix(7) { try verifier.check(entry) }
        let head = try #require(AuditHead(text: verifier.headText))
        #expect(head.seq == 7)
        try verify(trail, expecting: head)
        let cut = #expect(throws: AuditVerifier.Break.self) { try verify(Array(trail.prefix(6)), expecting: head) }
        #expect(cut?.seq == 7 && cut?.reason == "the trail ends before this earlier head: it was cut, unless the head was recorded from a later copy (this one ends at entry 6)")
        // Rewritten from entry 5 on: the new trail links up, yet entry 7 is not the head kept earlier.
        var rewritten = Array(trail.prefix(4))
        for seq in 5...10 {
            let entry = AuditEntry(seq: Int64(seq), time: 0, actor: "intruder", action: "claim", subject: "case-\(seq)", detail: "{}")
            rewritten.append(AuditChain.append(entry, after: rewritten.last!.hash))
        }
        #expect(try AuditVerifier.verify(rewritten) == 10)
        #expect(throws: AuditVerifier.Break(seq: 7, reason: "it is not the head recorded earlier: the trail was rewritten from there")) { try verify(rewritten, expecting: head) }
        for text in ["0:" + String(repeating: "0", count: 64), "7", "7:abcd", "x:" + String(repeating: "0", count: 64)] {
            #expect(AuditHead(text: text) == nil, "\(text)")
        }
    }

    @Test func anIntactChainVerifies() throws {
        #expect(try AuditVerifier.verify(Self.chain(25)) == 25)
    }

    @Test func anAlteredEntryIsNamed() {
        var entries = Self.chain(10)
        entries[4].entry.detail = #"{"state":"closed"}"#
        #expect(throws: AuditVerifier.Break(seq: 5, reason: "its contents do not match its hash; it was altered")) {
            try AuditVerifier.verify(entries)
        }
    }

    @Test func aRemovedOrReorderedEntryIsNamed() {
        var removed = Self.chain(10)
        removed.remove(at: 6)
        #expect(throws: AuditVerifier.Break.self) { try AuditVerifier.verify(removed) }
        do { _ = try AuditVerifier.verify(removed) } catch { #expect(error.seq == 8) }

        var swapped = Self.chain(10)
        swapped.swapAt(2, 3)
        do { _ = try AuditVerifier.verify(swapped); Issue.record("verified a reordered chain") } catch { #expect(error.seq == 4) }
    }

    @Test func aRehashedForgeryBreaksTheNextLink() {
        var entries = Self.chain(6)
        entries[2].entry.actor = "someone-else"
        entries[2].hash = AuditChain.hash(previous: entries[2].prevHash, entry: entries[2].entry)
        do { _ = try AuditVerifier.verify(entries); Issue.record("verified a forged chain") } catch { #expect(error.seq == 4) }
    }

    @Test func fieldBoundariesCannotBeShifted() {
        let a = AuditEntry(seq: 1, time: 0, actor: "ab", action: "c", subject: "", detail: "")
        let b = AuditEntry(seq: 1, time: 0, actor: "a", action: "bc", subject: "", detail: "")
        #expect(a.canonicalBytes != b.canonicalBytes)
    }
}

@Suite struct UUIDv7Tests {
    @Test func idsAreVersion7AndSortByTime() {
        let earlier = UUID.v7(now: Date(timeIntervalSince1970: 1_700_000_000))
        let later = UUID.v7(now: Date(timeIntervalSince1970: 1_700_000_060))
        #expect(earlier.isMinuteVersion7 && later.isMinuteVersion7)
        #expect(earlier.uuidString.lowercased() < later.uuidString.lowercased())
        // Only the minute: 1,700,000,000 s is 28,333,333 minutes and 20 s; 28,333,333 × 60,000 ms is 0x018bcfe519e0.
        #expect(earlier.uuidString.lowercased().replacingOccurrences(of: "-", with: "").hasPrefix("018bcfe519e0"))
        var precise = earlier.uuid
        precise.5 |= 1
        #expect(UUID(uuid: precise).isVersion7 && !UUID(uuid: precise).isMinuteVersion7)
        #expect(!UUID(uuidString: "01937f5e-3c2a-4b1d-9e4f-a1b2c3d4e5f6")!.isVersion7)
    }

    @Test func timesAreRoundedToTheMinute() {
        #expect(Date(timeIntervalSince1970: 1_700_000_059.9).unixMinute == 1_700_000_040)
    }
}
