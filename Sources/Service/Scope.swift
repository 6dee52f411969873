/// What a token may do. `admin` includes the other two.
public enum Scope: String, Sendable, CaseIterable {
    /// The PACS side: post instances.
    case ingest
    /// Clinicians and viewers: query studies and instances.
    case read
    /// Operators: everything, including deletion and metrics.
    case admin

    public func allows(_ needed: Scope) -> Bool { self == .admin || self == needed }
}
