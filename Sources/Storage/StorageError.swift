/// Why a database operation failed. Messages name the SQLite result and the
/// statement's purpose, never bound values: those can be patient identifiers.
public enum StorageError: Error, Equatable, Sendable {
    case open(path: String, code: Int32, message: String)
    case sqlite(code: Int32, message: String, statement: String)
    case migration(name: String, code: Int32, message: String)
    case newerSchema(found: Int, known: Int)

    public var type: String {
        switch self {
        case .open: "database-open"
        case .sqlite: "database"
        case .migration: "database-migration"
        case .newerSchema: "database-newer-schema"
        }
    }

    public var detail: String {
        switch self {
        case .open(let path, let code, let message): "Cannot open the database at \(path): \(message) (SQLite \(code))."
        case .sqlite(let code, let message, let statement): "SQLite error \(code) in '\(statement)': \(message)."
        case .migration(let name, let code, let message): "Migration '\(name)' failed: \(message) (SQLite \(code))."
        case .newerSchema(let found, let known):
            "The database has schema version \(found); this build knows up to \(known). Use a newer build or another data directory."
        }
    }
}

extension StorageError {
    /// An I/O error (SQLITE_IOERR and its extended codes). In a commit it may
    /// come after the transaction reached the WAL (a failed sync, say), and
    /// the next open of the database replays it.
    public var isIOError: Bool {
        if case .sqlite(let code, _, _) = self { return code & 0xFF == 10 }
        return false
    }
}

extension StorageError: CustomStringConvertible {
    public var description: String { detail }
}
