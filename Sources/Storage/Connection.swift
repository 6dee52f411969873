import CSQLite

/// One SQLite connection. Not thread-safe by itself: `DatabaseQueue` gives
/// each connection one serial queue, as GRDB does.
public final class Connection {
    let handle: OpaquePointer
    private var statements: [String: Statement] = [:]

    /// Durability comes from WAL with `synchronous=FULL`: a commit returns only
    /// after the log is fsynced, which is what acknowledging an upload promises.
    public init(path: String, readOnly: Bool = false) throws(StorageError) {
        var db: OpaquePointer?
        let flags = (readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) | SQLITE_OPEN_NOMUTEX
        let code = sqlite3_open_v2(path, &db, flags, nil)
        guard code == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close_v2(db)
            throw .open(path: path, code: code, message: message)
        }
        handle = db
        sqlite3_extended_result_codes(db, 1)
        sqlite3_busy_timeout(db, 5_000)
        if !readOnly {
            try execute("PRAGMA journal_mode=WAL")
        }
        try execute("PRAGMA synchronous=FULL")
        try execute("PRAGMA foreign_keys=ON")
    }

    deinit {
        statements.removeAll()
        sqlite3_close_v2(handle)
    }

    /// Runs SQL without parameters (schema, pragmas). Several statements are allowed.
    public func execute(_ sql: String) throws(StorageError) {
        let code = sqlite3_exec(handle, sql, nil, nil, nil)
        guard code == SQLITE_OK else { throw error(code, sql) }
    }

    /// A prepared statement, cached by its SQL text, reset and unbound for reuse.
    public func statement(_ sql: String) throws(StorageError) -> Statement {
        if let cached = statements[sql] {
            cached.reset()
            return cached
        }
        var raw: OpaquePointer?
        let code = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &raw, nil)
        guard code == SQLITE_OK, let raw else { throw error(code, sql) }
        let statement = Statement(raw, connection: self, sql: sql)
        statements[sql] = statement
        return statement
    }

    /// Runs `body` in one transaction: commits if it returns, rolls back if it throws.
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    public var changes: Int { Int(sqlite3_changes(handle)) }
    public var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }

    func error(_ code: Int32, _ sql: String) -> StorageError {
        .sqlite(code: code, message: String(cString: sqlite3_errmsg(handle)), statement: Self.summary(sql))
    }

    /// The statement's first words, enough to say which query failed without its values.
    static func summary(_ sql: String) -> String {
        let words = sql.split(whereSeparator: \.isWhitespace).prefix(4)
        return words.joined(separator: " ")
    }
}
