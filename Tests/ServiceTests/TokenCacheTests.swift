import Foundation
import Storage
import Synchronization
import Testing

@testable import Service

@Suite struct TokenTableTests {
    let viewer = TokenRecord(id: 1, hash: [UInt8](repeating: 1, count: 32), scope: "read", name: "viewer")
    let unknown = [UInt8](repeating: 9, count: 32)

    @Test func anEmptyTableAsksForItsFirstRead() {
        #expect(TokenTable().lookup(viewer.hash, now: 0) == .reload)
    }

    @Test func knownTokensAreAnsweredFromMemoryUntilTheTableIsOld() {
        var table = TokenTable(refresh: 10)
        table.replace([viewer], at: 100)
        #expect(table.lookup(viewer.hash, now: 100) == .found(viewer))
        #expect(table.lookup(viewer.hash, now: 109.9) == .found(viewer))
        #expect(table.lookup(viewer.hash, now: 110) == .reload, "a revocation takes effect within `refresh` seconds")
    }

    @Test func usesAreWrittenAtMostOnceAMinuteAndInvalidateForcesARead() {
        var table = TokenTable(refresh: 1, useInterval: 60)
        let uses = [(1, 100.0), (1, 159.9), (1, 160), (2, 100)].map { table.noteUse($0, now: $1) }
        #expect(uses == [true, false, true, true], "once a minute, per token")
        table.replace([viewer], at: 100)
        table.invalidate()
        #expect(table.lookup(viewer.hash, now: 100) == .reload)
    }

    @Test func anUnknownTokenRereadsTheTable() {
        var table = TokenTable(refresh: 10)
        table.replace([viewer], at: 100)
        #expect(table.lookup(unknown, now: 100) == .reload, "a token created since the last read is found")
        #expect(table.record(unknown) == nil && table.record(viewer.hash) == viewer)
    }
}

@Suite struct TokenCacheTests {
    /// A token created by another connection (as `ich-server token create` does) is found on its first use;
    /// one revoked stops working once the table is older than `refresh`.
    @Test func followsCreationAndRevocation() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tokens-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let writer = try DatabaseQueue(path: directory + "/ich.sqlite", label: "writer")
        try writer.sync { try Migrator.migrate($0, Schema.migrations) }
        let reader = try DatabaseQueue(path: directory + "/ich.sqlite", readOnly: true, label: "reader")
        let now = Mutex(100.0)
        let cache = TokenCache(db: reader, table: TokenTable(refresh: 10), clock: { now.withLock { $0 } })

        let token = Auth.makeToken()
        #expect(try cache.find(Auth.hash(token)) == nil)
        let id = try writer.write { try TokenStore.insert($0, hash: Auth.hash(token), scope: "ingest", name: "pacs", at: 100) }
        now.withLock { $0 = 101 }
        #expect(try cache.find(Auth.hash(token))?.id == id, "found at once, without waiting for the refresh")

        try writer.write { try $0.statement("UPDATE tokens SET revoked_at = 105 WHERE id = ?").run([.int(id)]) }
        now.withLock { $0 = 110 }
        #expect(try cache.find(Auth.hash(token))?.id == id, "the table read at 101 is still fresh")
        now.withLock { $0 = 111 }
        #expect(try cache.find(Auth.hash(token)) == nil)
    }

    /// A token expiring between two reads of the table is refused from its expiry on; uses are reported once a minute.
    @Test func expiryIsExactAndUsesAreReported() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tokens-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let writer = try DatabaseQueue(path: directory + "/ich.sqlite", label: "writer")
        try writer.sync { try Migrator.migrate($0, Schema.migrations) }
        let token = Auth.makeToken()
        let id = try writer.write { try TokenStore.insert($0, hash: Auth.hash(token), scope: "read", name: "r", at: 1000, expiresAt: 1030) }
        let now = Mutex(0.0)
        let wall = Mutex(1000.0)
        let uses = Mutex<[Double]>([])
        let cache = TokenCache(db: writer, table: TokenTable(refresh: 3600), clock: { now.withLock { $0 } },
                               wallClock: { wall.withLock { $0 } }, recordUse: { used, at in
                                   #expect(used == id)
                                   uses.withLock { $0.append(at) }
                               })
        #expect(try cache.find(Auth.hash(token))?.id == id)
        wall.withLock { $0 = 1029 }
        now.withLock { $0 = 59 }
        #expect(try cache.find(Auth.hash(token))?.id == id)
        wall.withLock { $0 = 1030 }
        now.withLock { $0 = 60 }
        #expect(try cache.find(Auth.hash(token)) == nil, "expired, though the table is an hour fresh")
        #expect(uses.withLock { $0 } == [1000], "the use at 59 s is within the minute of the first")
    }
}
