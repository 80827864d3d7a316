/// An RFC 9457 problem: every error the API returns.
public struct Problem: Codable, Sendable, Equatable, Error {
    public var type: String
    public var title: String
    public var status: Int
    public var detail: String?

    public init(status: Int, title: String, detail: String? = nil, type: String? = nil) {
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type ?? "about:blank"
    }
}
