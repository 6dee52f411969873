/// API tokens are kept only as SHA-256 hashes (computed by the caller); the
/// service keeps the active ones in memory, looks them up by hash and compares
/// the stored hash in constant time.
public struct TokenRecord: Sendable, Equatable {
    public var id: Int
    public var hash: [UInt8]
    public var scope: String
    public var name: String

    public init(id: Int, hash: [UInt8], scope: String, name: String) {
        self.id = id
        self.hash = hash
        self.scope = scope
        self.name = name
    }
}

public enum TokenStore {
    @discardableResult
    public static func insert(_ db: Connection, hash: [UInt8], scope: String, name: String, at time: Double) throws(StorageError) -> Int {
        try db.statement("INSERT INTO tokens (hash, scope, name, created_at) VALUES (?, ?, ?, ?)")
            .run([.blob(hash), .text(scope), .text(name), .real(time)])
        return Int(db.lastInsertRowID)
    }

    /// Every token not revoked: what the service keeps in memory.
    public static func active(_ db: Connection) throws(StorageError) -> [TokenRecord] {
        try db.statement("SELECT id, hash, scope, name FROM tokens WHERE revoked_at IS NULL ORDER BY id")
            .rows { TokenRecord(id: $0.int(0), hash: $0.blob(1), scope: $0.text(2), name: $0.text(3)) }
    }

    public static func count(_ db: Connection) throws(StorageError) -> Int {
        try db.statement("SELECT count(*) FROM tokens WHERE revoked_at IS NULL").first { $0.int(0) } ?? 0
    }
}

/// Who read which study, and when.
public enum AuditLog {
    public static func record(
        _ db: Connection, tokenID: Int?, action: String, study: String?, instance: String? = nil, at time: Double
    ) throws(StorageError) {
        try db.statement(
            "INSERT INTO audit (at, token_id, action, study_instance_uid, sop_instance_uid) VALUES (?, ?, ?, ?, ?)"
        ).run([.real(time), .int(tokenID), .text(action), .string(study), .string(instance)])
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
