import GRDB
public import RelayCore
import Yams

/// One label of the taxonomy, in the three languages responders and reports use.
public struct TaxonomyEntry: Sendable, Codable, Equatable {
    public var dimension: TaxonomyCodes.Dimension
    public var code: String
    public var position: Int
    public var fr: String
    public var ar: String
    public var en: String
}

/// Reads `seeds/taxonomy.yaml` and keeps the `taxonomy` table up to date with it.
enum TaxonomyFile {
    static let sections: [(String, TaxonomyCodes.Dimension)] = [
        ("categories", .category), ("urgencies", .urgency), ("referrals", .referral), ("outcomes", .outcome),
        ("languages", .language), ("channels", .channel), ("regions", .region),
    ]

    private struct Label: Decodable {
        var code: String
        var fr: String
        var ar: String
        var en: String
    }

    static func parse(_ yaml: String) throws -> [TaxonomyEntry] {
        guard let root = try Yams.load(yaml: yaml) as? [String: Any] else {
            throw StoreError(.invalid, "taxonomy: not a YAML mapping")
        }
        guard root["version"] as? Int == 1 else { throw StoreError(.invalid, "taxonomy: version must be 1") }
        var entries: [TaxonomyEntry] = []
        for (key, dimension) in sections {
            guard let list = root[key] as? [[String: Any]], !list.isEmpty else {
                throw StoreError(.invalid, "taxonomy: missing section '\(key)'")
            }
            var seen: Set<String> = []
            for (position, item) in list.enumerated() {
                guard let code = item["code"] as? String, let fr = item["fr"] as? String, let ar = item["ar"] as? String,
                      let en = item["en"] as? String, !code.isEmpty, item.count == 4 else {
                    throw StoreError(.invalid, "taxonomy: \(key)[\(position)] needs exactly code, fr, ar and en")
                }
                guard seen.insert(code).inserted else { throw StoreError(.invalid, "taxonomy: duplicate \(key) code '\(code)'") }
                entries.append(TaxonomyEntry(dimension: dimension, code: code, position: position, fr: fr, ar: ar, en: en))
            }
        }
        let urgencies = entries.filter { $0.dimension == .urgency }.map(\.code)
        guard urgencies == Urgency.allCases.map(\.rawValue) else {
            throw StoreError(.invalid, "taxonomy: urgencies must be \(Urgency.allCases.map(\.rawValue).joined(separator: ", ")) in that order")
        }
        return entries
    }

    /// Adds the file's codes the table lacks, and takes the file's labels and order for those it has. A code the file
    /// no longer lists stays, after the file's: cases and tombstones carry it. Rows already as the file says are not written.
    static func merge(_ entries: [TaxonomyEntry], into db: Database) throws {
        let statement = try db.makeStatement(sql: """
            INSERT INTO taxonomy (dimension, code, position, labelFr, labelAr, labelEn) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT (dimension, code) DO UPDATE SET position = excluded.position, labelFr = excluded.labelFr,
                    labelAr = excluded.labelAr, labelEn = excluded.labelEn
                WHERE position IS NOT excluded.position OR labelFr IS NOT excluded.labelFr
                    OR labelAr IS NOT excluded.labelAr OR labelEn IS NOT excluded.labelEn
            """)
        for entry in entries {
            try statement.execute(arguments: [entry.dimension.rawValue, entry.code, entry.position, entry.fr, entry.ar, entry.en])
        }
        for (_, dimension) in sections {
            let listed = Set(entries.filter { $0.dimension == dimension }.map(\.code))
            let dropped = try String.fetchAll(db, sql: "SELECT code FROM taxonomy WHERE dimension = ? ORDER BY position, code",
                                              arguments: [dimension.rawValue]).filter { !listed.contains($0) }
            for (offset, code) in dropped.enumerated() {
                try db.execute(sql: "UPDATE taxonomy SET position = ? WHERE dimension = ? AND code = ? AND position IS NOT ?",
                               arguments: [listed.count + offset, dimension.rawValue, code, listed.count + offset])
            }
        }
    }

    static func codes(_ db: Database) throws -> TaxonomyCodes {
        var codes: [TaxonomyCodes.Dimension: Set<String>] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT dimension, code FROM taxonomy") {
            guard let dimension = TaxonomyCodes.Dimension(rawValue: row["dimension"]) else { continue }
            codes[dimension, default: []].insert(row["code"])
        }
        return TaxonomyCodes(codes: codes)
    }
}

extension RelayDatabase {
    /// Every label, ordered by dimension and position, for clients that show them.
    public func taxonomyEntries() async throws -> [TaxonomyEntry] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM taxonomy ORDER BY dimension, position, code").compactMap { row in
                guard let dimension = TaxonomyCodes.Dimension(rawValue: row["dimension"]) else { return nil }
                return TaxonomyEntry(dimension: dimension, code: row["code"], position: row["position"],
                                     fr: row["labelFr"], ar: row["labelAr"], en: row["labelEn"])
            }
        }
    }
}
