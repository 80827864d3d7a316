import RelayFormat

/// One entry of the audit trail. It never holds content, receipts or keys: `detail` is JSON of labels and ids.
public struct AuditEntry: Sendable, Codable, Equatable {
    public var seq: Int64
    /// Unix time in seconds, rounded down to the minute.
    public var time: Int64
    public var actor: String
    public var action: String
    public var subject: String
    public var detail: String

    public init(seq: Int64, time: Int64, actor: String, action: String, subject: String, detail: String) {
        self.seq = seq
        self.time = time
        self.actor = actor
        self.action = action
        self.subject = subject
        self.detail = detail
    }

    /// The canonical encoding that is hashed: a domain tag, seq and time as big-endian 64-bit integers,
    /// then each text field as a big-endian 32-bit length and its UTF-8 bytes.
    public var canonicalBytes: [UInt8] {
        var out = Array("amane-audit-v1".utf8)
        out.appendBigEndian(UInt64(bitPattern: seq))
        out.appendBigEndian(UInt64(bitPattern: time))
        for field in [actor, action, subject, detail] {
            let bytes = Array(field.utf8)
            out.appendBigEndian(UInt32(bytes.count))
            out += bytes
        }
        return out
    }
}

/// An entry as stored: with the hash of the entry before it and its own.
public struct ChainedAuditEntry: Sendable, Codable, Equatable {
    public var entry: AuditEntry
    public var prevHash: [UInt8]
    public var hash: [UInt8]

    public init(entry: AuditEntry, prevHash: [UInt8], hash: [UInt8]) {
        self.entry = entry
        self.prevHash = prevHash
        self.hash = hash
    }
}

/// `hash = SHA-256(prev_hash ‖ canonical entry)`, starting from 32 zero bytes.
public enum AuditChain {
    public static let genesis = [UInt8](repeating: 0, count: 32)

    public static func hash(previous: [UInt8], entry: AuditEntry) -> [UInt8] {
        Digest.sha256(previous + entry.canonicalBytes)
    }

    /// Links a new entry after `previous`.
    public static func append(_ entry: AuditEntry, after previous: [UInt8]) -> ChainedAuditEntry {
        ChainedAuditEntry(entry: entry, prevHash: previous, hash: hash(previous: previous, entry: entry))
    }
}

/// Checks a trail entry by entry, so that a long trail needs no memory.
public struct AuditVerifier: Sendable {
    /// Where the trail first breaks, and how.
    public struct Break: Error, Sendable, Equatable, CustomStringConvertible {
        public let seq: Int64
        public let reason: String
        public var description: String { "audit entry \(seq): \(reason)" }
        /// " at entry N", or nothing for a break of the whole trail (seq 0).
        public var place: String { seq == 0 ? "" : " at entry \(seq)" }

        public init(seq: Int64, reason: String) {
            self.seq = seq
            self.reason = reason
        }
    }

    public private(set) var count: Int64 = 0
    public private(set) var head: [UInt8]
    private var nextSeq: Int64

    /// - Parameters: start after a known entry to verify a page; by default from the beginning.
    public init(after head: [UInt8] = AuditChain.genesis, seq: Int64 = 0) {
        self.head = head
        self.nextSeq = seq + 1
    }

    public mutating func check(_ chained: ChainedAuditEntry) throws(Break) {
        guard AuditChain.hash(previous: chained.prevHash, entry: chained.entry) == chained.hash else {
            try checkPlace(chained)
            throw Break(seq: chained.entry.seq, reason: "its contents do not match its hash; it was altered")
        }
        try link(chained)
    }

    /// Checks an entry whose contents were withheld (another queue's) by its place in the chain only: its
    /// contents are checked by whoever may read them.
    public mutating func link(_ chained: ChainedAuditEntry) throws(Break) {
        try checkPlace(chained)
        guard chained.hash.count == 32 else { throw Break(seq: chained.entry.seq, reason: "its hash is missing") }
        head = chained.hash
        nextSeq += 1
        count += 1
    }

    private func checkPlace(_ chained: ChainedAuditEntry) throws(Break) {
        let seq = chained.entry.seq
        guard seq == nextSeq else { throw Break(seq: seq, reason: "expected entry \(nextSeq); entries are missing or reordered") }
        guard chained.prevHash == head else { throw Break(seq: seq, reason: "does not link to the entry before it") }
    }

    /// The last entry checked as `SEQ:HASH`: what `amane audit --verify --expect-head` compares later.
    public var headText: String { "\(count):\(count == 0 ? "" : Digest.hex(head))" }

    /// Verifies a whole trail; returns how many entries it checked.
    public static func verify(_ entries: some Sequence<ChainedAuditEntry>) throws(Break) -> Int64 {
        var verifier = AuditVerifier()
        for entry in entries { try verifier.check(entry) }
        return verifier.count
    }
}

/// A head recorded by an earlier verification (`SEQ:HASH`, as `headText` prints it). A trail cut at its end
/// still links up, so only a head kept elsewhere shows that its last entries are gone or were rewritten.
public struct AuditHead: Sendable, Equatable {
    public let seq: Int64
    public let hash: [UInt8]

    public init?(text: String) {
        let parts = text.split(separator: ":", maxSplits: 1)
        guard parts.count == 2, let seq = Int64(parts[0]), seq >= 1, let hash = Hex.decode(String(parts[1])), hash.count == 32 else { return nil }
        self.seq = seq
        self.hash = hash
    }

    /// Checks one entry of the trail; call `checkReached` after the last.
    public func check(_ chained: ChainedAuditEntry) throws(AuditVerifier.Break) {
        guard chained.entry.seq == seq, chained.hash != hash else { return }
        throw AuditVerifier.Break(seq: seq, reason: "it is not the head recorded earlier: the trail was rewritten from there")
    }

    /// After the whole trail: it must have reached the recorded head.
    public func checkReached(_ verifier: AuditVerifier) throws(AuditVerifier.Break) {
        guard verifier.count < seq else { return }
        throw AuditVerifier.Break(seq: seq, reason: """
            the trail ends before this earlier head: it was cut, unless the head was recorded from a later copy \
            (this one ends at entry \(verifier.count))
            """)
    }
}

extension Array where Element == UInt8 {
    mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.bigEndian) { append(contentsOf: $0) }
    }
}
