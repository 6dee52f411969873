import CSQLite

/// A prepared statement. Values are bound by position (1-based, as in SQLite)
/// and never appear in errors.
public final class Statement {
    private let raw: OpaquePointer
    private unowned let connection: Connection
    private let sql: String

    init(_ raw: OpaquePointer, connection: Connection, sql: String) {
        self.raw = raw
        self.connection = connection
        self.sql = sql
    }

    deinit { sqlite3_finalize(raw) }

    func reset() {
        sqlite3_reset(raw)
        sqlite3_clear_bindings(raw)
    }

    /// Resets the statement and binds `values`, so a statement can be run again and again.
    @discardableResult
    public func bind(_ values: [DatabaseValue]) throws(StorageError) -> Statement {
        reset()
        for (index, value) in values.enumerated() {
            let position = Int32(index + 1)
            let code: Int32 =
                switch value {
                case .null: sqlite3_bind_null(raw, position)
                case .integer(let v): sqlite3_bind_int64(raw, position, v)
                case .real(let v): sqlite3_bind_double(raw, position, v)
                case .text(let v): sqlite3_bind_text(raw, position, v, -1, sqliteTransient)
                case .blob(let v):
                    v.withUnsafeBytes { sqlite3_bind_blob(raw, position, $0.baseAddress, Int32($0.count), sqliteTransient) }
                }
            guard code == SQLITE_OK else { throw connection.error(code, sql) }
        }
        return self
    }

    /// Steps once; true while a row is available.
    public func step() throws(StorageError) -> Bool {
        let code = sqlite3_step(raw)
        switch code {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default: throw connection.error(code, sql)
        }
    }

    /// Runs a statement that returns no rows.
    public func run(_ values: [DatabaseValue] = []) throws(StorageError) {
        try bind(values)
        while try step() {}
    }

    /// All rows, each read by `row`.
    public func rows<T>(_ values: [DatabaseValue] = [], _ row: (Statement) -> T) throws(StorageError) -> [T] {
        try bind(values)
        var result: [T] = []
        while try step() { result.append(row(self)) }
        return result
    }

    /// The first row, if any. The statement is reset before returning: a
    /// statement left on a row keeps its read transaction, and with it an old
    /// snapshot of the database, open.
    public func first<T>(_ values: [DatabaseValue] = [], _ row: (Statement) -> T) throws(StorageError) -> T? {
        try bind(values)
        defer { sqlite3_reset(raw) }
        return try step() ? row(self) : nil
    }

    public func isNull(_ column: Int32) -> Bool { sqlite3_column_type(raw, column) == SQLITE_NULL }
    public func int(_ column: Int32) -> Int { Int(sqlite3_column_int64(raw, column)) }
    public func double(_ column: Int32) -> Double { sqlite3_column_double(raw, column) }
    public func optionalInt(_ column: Int32) -> Int? { isNull(column) ? nil : int(column) }
    public func optionalDouble(_ column: Int32) -> Double? { isNull(column) ? nil : double(column) }
    public func text(_ column: Int32) -> String {
        guard let c = sqlite3_column_text(raw, column) else { return "" }
        return String(cString: c)
    }
    public func optionalText(_ column: Int32) -> String? { isNull(column) ? nil : text(column) }
    public func blob(_ column: Int32) -> [UInt8] {
        let count = Int(sqlite3_column_bytes(raw, column))
        guard count > 0, let p = sqlite3_column_blob(raw, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: p, count: count))
    }
}

/// A value bound to a statement.
public enum DatabaseValue: Sendable, Equatable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])

    public static func int(_ v: Int?) -> DatabaseValue { v.map { .integer(Int64($0)) } ?? .null }
    public static func double(_ v: Double?) -> DatabaseValue { v.map { .real($0) } ?? .null }
    public static func string(_ v: String?) -> DatabaseValue { v.map { .text($0) } ?? .null }
}

private let sqliteTransient = csqlite_transient()
