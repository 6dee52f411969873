/// API tokens are kept only as SHA-256 hashes (computed by the caller); the
/// service keeps the active ones in memory, looks them up by hash and compares
/// the stored hash in constant time.
public struct TokenRecord: Sendable, Equatable {
    public var id: Int
    public var hash: [UInt8]
    public var scope: String
    public var name: String
    /// Seconds since 1970 after which the token is refused; nil: it does not expire.
    public var expiresAt: Double?

    public init(id: Int, hash: [UInt8], scope: String, name: String, expiresAt: Double? = nil) {
        self.id = id
        self.hash = hash
        self.scope = scope
        self.name = name
        self.expiresAt = expiresAt
    }
}

/// A token as operators see it: never its secret or hash.
public struct TokenInfo: Sendable, Equatable {
    public var id: Int
    public var name: String
    public var scope: String
    public var createdAt: Double
    public var expiresAt: Double?
    public var revokedAt: Double?
    public var lastUsedAt: Double?

    public init(id: Int, name: String, scope: String, createdAt: Double, expiresAt: Double? = nil, revokedAt: Double? = nil,
                lastUsedAt: Double? = nil) {
        self.id = id
        self.name = name
        self.scope = scope
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.revokedAt = revokedAt
        self.lastUsedAt = lastUsedAt
    }

    public func isActive(at now: Double) -> Bool { revokedAt == nil && (expiresAt.map { $0 > now } ?? true) }

    /// `active`, `revoked` or `expired`, as the API and `token list` show it.
    public func status(at now: Double) -> String { revokedAt != nil ? "revoked" : isActive(at: now) ? "active" : "expired" }
}

public enum TokenStore {
    @discardableResult
    public static func insert(_ db: Connection, hash: [UInt8], scope: String, name: String, at time: Double,
                              expiresAt: Double? = nil) throws(StorageError) -> Int {
        try db.statement("INSERT INTO tokens (hash, scope, name, created_at, expires_at) VALUES (?, ?, ?, ?, ?)")
            .run([.blob(hash), .text(scope), .text(name), .real(time), .double(expiresAt)])
        return Int(db.lastInsertRowID)
    }

    /// Every token neither revoked nor expired at `now`: what the service keeps in memory.
    public static func active(_ db: Connection, at now: Double) throws(StorageError) -> [TokenRecord] {
        try db.statement(
            "SELECT id, hash, scope, name, expires_at FROM tokens WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?) ORDER BY id"
        ).rows([.real(now)]) {
            TokenRecord(id: $0.int(0), hash: $0.blob(1), scope: $0.text(2), name: $0.text(3), expiresAt: $0.optionalDouble(4))
        }
    }

    public static func count(_ db: Connection) throws(StorageError) -> Int {
        try db.statement("SELECT count(*) FROM tokens WHERE revoked_at IS NULL").first { $0.int(0) } ?? 0
    }

    /// Every token ever made, revoked and expired ones included, oldest first.
    public static func list(_ db: Connection) throws(StorageError) -> [TokenInfo] {
        try db.statement("SELECT id, name, scope, created_at, expires_at, revoked_at, last_used_at FROM tokens ORDER BY id").rows {
            TokenInfo(id: $0.int(0), name: $0.text(1), scope: $0.text(2), createdAt: $0.double(3), expiresAt: $0.optionalDouble(4),
                      revokedAt: $0.optionalDouble(5), lastUsedAt: $0.optionalDouble(6))
        }
    }

    public enum Revocation: Sendable, Equatable {
        case revoked
        /// Revoked before: nothing changes (a repeated DELETE is not an error).
        case alreadyRevoked
        case notFound
    }

    public static func revoke(_ db: Connection, id: Int, at time: Double) throws(StorageError) -> Revocation {
        try db.statement("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL").run([.real(time), .int(id)])
        if db.changes == 1 { return .revoked }
        let exists = try db.statement("SELECT 1 FROM tokens WHERE id = ?").first([.int(id)]) { _ in true } ?? false
        return exists ? .alreadyRevoked : .notFound
    }

    /// Records that the token was used at `time` (the service calls it at most once a minute per token).
    public static func recordUse(_ db: Connection, id: Int, at time: Double) throws(StorageError) {
        try db.statement("UPDATE tokens SET last_used_at = max(coalesce(last_used_at, 0), ?) WHERE id = ?").run([.real(time), .int(id)])
    }
}

/// Who read which study, and when.
public enum AuditLog {
    /// `tokenID`: who acted (nil: the command line on the server's host, or the service itself, as for
    /// `Retention.auditAction`); `subjectToken`: the token acted on.
    public static func record(
        _ db: Connection, tokenID: Int?, action: String, study: String?, instance: String? = nil, subjectToken: Int? = nil,
        at time: Double
    ) throws(StorageError) {
        try db.statement(
            "INSERT INTO audit (at, token_id, action, study_instance_uid, sop_instance_uid, subject_token_id) VALUES (?, ?, ?, ?, ?, ?)"
        ).run([.real(time), .int(tokenID), .text(action), .string(study), .string(instance), .int(subjectToken)])
    }

    public struct Entry: Sendable, Equatable {
        public var at: Double
        public var tokenID: Int?
        public var action: String
        public var study: String?
    }

    public static func entries(_ db: Connection, study: String) throws(StorageError) -> [Entry] {
        try db.statement("SELECT at, token_id, action, study_instance_uid FROM audit WHERE study_instance_uid = ? ORDER BY id")
            .rows([.text(study)]) { Entry(at: $0.double(0), tokenID: $0.optionalInt(1), action: $0.text(2), study: $0.optionalText(3)) }
    }
}
