import Foundation
import Testing

@testable import Storage

@Suite struct BackupTests {
    /// The copy is a self-contained database holding what was committed, taken while another
    /// connection keeps writing; an existing file is never overwritten.
    @Test func aBackupTakenDuringWritesRestoresWhatWasCommitted() async throws {
        let (db, directory) = try makeDatabase()
        _ = try db.write { try JobQueue.enqueue($0, (0..<200).map { instance("1.\($0)") }) }
        let writer = Task.detached {
            for k in 0..<200 { _ = try db.write { try JobQueue.enqueue($0, [instance("2.\(k)", study: "2.2")]) } }
        }
        let source = try Connection(path: directory + "/test.sqlite")
        try source.backup(to: directory + "/copy.sqlite")
        try await writer.value
        #expect(!FileManager.default.fileExists(atPath: directory + "/copy.sqlite-wal"), "one file, no log beside it")
        #expect(!FileManager.default.fileExists(atPath: directory + "/copy.sqlite.partial"))
        let restored = try DatabaseQueue(path: directory + "/copy.sqlite", label: "restored")
        try restored.sync { try Migrator.migrate($0, Schema.migrations) }
        #expect(try restored.sync { try ResultStore.study($0, "1.2.3") }?.received == 200, "everything committed before it")
        let later = try restored.sync { try ResultStore.study($0, "2.2") }?.received ?? 0
        #expect((0...200).contains(later), "a consistent snapshot of the concurrent writes")
        #expect(try restored.sync { try ResultStore.instances($0, study: "2.2") }.count == later, "counts match rows")
        #expect(throws: StorageError.self) { try source.backup(to: directory + "/copy.sqlite") }
    }
}
