import Testing

@testable import Storage

@Suite struct TokenStoreTests {
    @Test func activeTokensLeaveOutRevokedOnes() throws {
        let (db, _) = try makeDatabase()
        let hash = [UInt8](repeating: 7, count: 32)
        let id = try db.write { try TokenStore.insert($0, hash: hash, scope: "read", name: "viewer", at: 1) }
        let revoked = try db.write { try TokenStore.insert($0, hash: [UInt8](repeating: 8, count: 32), scope: "admin", name: "old", at: 1) }
        try db.write { try $0.statement("UPDATE tokens SET revoked_at = 2 WHERE id = ?").run([.int(revoked)]) }
        #expect(try db.sync { try TokenStore.active($0) } == [TokenRecord(id: id, hash: hash, scope: "read", name: "viewer")])
        #expect(try db.sync { try TokenStore.count($0) } == 1)
    }

    @Test func auditRecordsWhoReadWhichStudy() throws {
        let (db, _) = try makeDatabase()
        try db.write { try AuditLog.record($0, tokenID: 3, action: "read-study", study: "1.2", at: 10) }
        try db.write { try AuditLog.record($0, tokenID: 4, action: "read-study", study: "1.3", at: 11) }
        #expect(try db.sync { try AuditLog.entries($0, study: "1.2") } == [AuditLog.Entry(at: 10, tokenID: 3, action: "read-study", study: "1.2")])
    }
}
