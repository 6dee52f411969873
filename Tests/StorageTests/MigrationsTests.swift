import Foundation
import Testing

@testable import Storage

@Suite struct MigrationsTests {
    @Test func migratingTwiceIsANoOp() throws {
        let (db, _) = try makeDatabase()
        try db.sync { try Migrator.migrate($0, Schema.migrations) }
        let names = try db.sync { try $0.statement("SELECT name FROM schema_migrations ORDER BY name").rows { $0.text(0) } }
        #expect(names == Schema.migrations.map(\.name))
    }

    @Test func aDatabaseFromANewerBuildIsRefused() throws {
        let (db, _) = try makeDatabase()
        try db.sync { try Migrator.migrate($0, Schema.migrations + [Migration("99-future", "CREATE TABLE future (x)")]) }
        #expect(throws: StorageError.newerSchema(found: Schema.migrations.count + 1, known: Schema.migrations.count)) {
            try db.sync { try Migrator.migrate($0, Schema.migrations) }
        }
    }

    @Test func aFailingMigrationIsRolledBackAndNamed() throws {
        let (db, _) = try makeDatabase()
        let broken = Migration("3-broken", "CREATE TABLE half (x); CREATE TABLE half (y);")
        do {
            try db.sync { try Migrator.migrate($0, Schema.migrations + [broken]) }
            Issue.record("a broken migration was applied")
        } catch let StorageError.migration(name, _, _) {
            #expect(name == "3-broken")
        }
        let tables = try db.sync { try $0.statement("SELECT name FROM sqlite_master WHERE name = 'half'").rows { $0.text(0) } }
        #expect(tables.isEmpty)
    }

    @Test func errorsDoNotCarryBoundValues() throws {
        let (db, _) = try makeDatabase()
        do {
            try db.sync { try $0.statement("INSERT INTO tokens (hash, scope, name, created_at) VALUES (?, ?, ?, ?)")
                .run([.null, .text("PATIENT^SECRET"), .text("n"), .real(1)]) }
            Issue.record("a NOT NULL violation was accepted")
        } catch let error as StorageError {
            #expect(!error.detail.contains("PATIENT"))
            #expect(error.detail.contains("INSERT INTO tokens"))
        }
    }
}
