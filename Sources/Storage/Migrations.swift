import Foundation

/// Named, ordered schema steps, each applied once in its own transaction and
/// recorded in `schema_migrations`. A database that knows a step this build
/// does not is refused instead of being written by older code.
public struct Migration: Sendable {
    public var name: String
    public var sql: String

    public init(_ name: String, _ sql: String) {
        self.name = name
        self.sql = sql
    }
}

public enum Migrator {
    public static func migrate(_ connection: Connection, _ migrations: [Migration]) throws(StorageError) {
        try connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
        let applied = Set(try connection.statement("SELECT name FROM schema_migrations").rows { $0.text(0) })
        let known = Set(migrations.map(\.name))
        if !applied.isSubset(of: known) {
            throw .newerSchema(found: applied.count, known: migrations.count)
        }
        for migration in migrations where !applied.contains(migration.name) {
            do {
                try connection.transaction {
                    try connection.execute(migration.sql)
                    try connection.statement("INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)")
                        .run([.text(migration.name), .real(Date().timeIntervalSince1970)])
                }
            } catch let StorageError.sqlite(code, message, _) {
                throw .migration(name: migration.name, code: code, message: message)
            } catch {
                throw error as! StorageError
            }
        }
    }
}
