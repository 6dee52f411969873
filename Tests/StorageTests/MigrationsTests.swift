import Foundation
import Testing

@testable import Storage

@Suite struct MigrationsTests {
    @Test func migratingTwiceIsANoOp() throws {
        let (db, _) = try makeDatabase()
        try db.sync { try Migrator.migrate($0, Schema.migrations) }
        let names = try db.sync { try $0.statement("SELECT name FROM schema_migrations ORDER BY rowid").rows { $0.text(0) } }
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

    /// Step 7 rebuilds `instances` keyed by (SOP Instance UID, frame): rows made before it become frame 1,
    /// keep every value and their queue order.
    @Test func instancesBeforeFramesBecomeFrameOne() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("migrate-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let db = try DatabaseQueue(path: directory + "/test.sqlite", label: "test")
        let step = Schema.migrations.firstIndex { $0.name == "7-instance-frames" }!
        try db.sync { try Migrator.migrate($0, Array(Schema.migrations[..<step])) }
        try db.sync { db in
            for (sop, z) in [("1.9", 5.0), ("1.1", 0.0)] {
                try db.statement(
                    """
                    INSERT INTO instances (sop_instance_uid, study_instance_uid, series_instance_uid, sop_class_uid, position,
                        received_at, spool_name, normal_x, normal_y, normal_z) VALUES (?, '1.2.3', '1.2.3.1', 'c', ?, 100, ?, 0, 0, 1)
                    """
                ).run([.text(sop), .real(z), .text(sop + ".dcm")])
            }
            try db.execute("INSERT INTO studies (study_instance_uid, first_received_at, last_received_at, received) VALUES ('1.2.3', 100, 100, 2)")
        }
        try db.sync { try Migrator.migrate($0, Schema.migrations) }
        let jobs = try db.sync { try JobQueue.queued($0) }
        #expect(jobs.map(\.sopInstanceUID) == ["1.9", "1.1"] && jobs.allSatisfy { $0.frameNumber == 1 }, "rowid order kept")
        let record = try #require(try db.sync { try ResultStore.instance($0, "1.9") }.first)
        #expect(record.position == 5 && record.normal == [0, 0, 1] && record.frameNumber == 1 && record.state == .queued)
        let indexes = try db.sync {
            try $0.statement("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'instances' AND sql IS NOT NULL ORDER BY name")
                .rows { $0.text(0) }
        }
        #expect(indexes == ["instances_by_study", "instances_queued", "instances_spooled"])
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
