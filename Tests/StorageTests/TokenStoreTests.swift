import Testing

@testable import Storage

@Suite struct TokenStoreTests {
    @Test func activeTokensLeaveOutRevokedOnes() throws {
        let (db, _) = try makeDatabase()
        let hash = [UInt8](repeating: 7, count: 32)
        let id = try db.write { try TokenStore.insert($0, hash: hash, scope: "read", name: "viewer", at: 1) }
        let revoked = try db.write { try TokenStore.insert($0, hash: [UInt8](repeating: 8, count: 32), scope: "admin", name: "old", at: 1) }
        try db.write { try $0.statement("UPDATE tokens SET revoked_at = 2 WHERE id = ?").run([.int(revoked)]) }
        #expect(try db.sync { try TokenStore.active($0, at: 3) } == [TokenRecord(id: id, hash: hash, scope: "read", name: "viewer")])
        #expect(try db.sync { try TokenStore.count($0) } == 1)
    }

    @Test func expiredTokensAreNotActiveAndEveryTokenIsListed() throws {
        let (db, _) = try makeDatabase()
        let id = try db.write { try TokenStore.insert($0, hash: [UInt8](repeating: 1, count: 32), scope: "ingest", name: "pacs", at: 10, expiresAt: 100) }
        #expect(try db.sync { try TokenStore.active($0, at: 99.9) }.map(\.expiresAt) == [100])
        #expect(try db.sync { try TokenStore.active($0, at: 100) }.isEmpty, "expired at its expiry time")
        try db.write { try TokenStore.recordUse($0, id: id, at: 50) }
        try db.write { try TokenStore.recordUse($0, id: id, at: 40) }
        let listed = try db.sync { try TokenStore.list($0) }
        #expect(listed == [TokenInfo(id: id, name: "pacs", scope: "ingest", createdAt: 10, expiresAt: 100, lastUsedAt: 50)],
                "last use never goes back")
        #expect(listed[0].isActive(at: 99) && !listed[0].isActive(at: 100))
    }

    @Test func revokingSaysWhatItDid() throws {
        let (db, _) = try makeDatabase()
        let id = try db.write { try TokenStore.insert($0, hash: [UInt8](repeating: 2, count: 32), scope: "read", name: "r", at: 1) }
        #expect(try db.write { try TokenStore.revoke($0, id: id, at: 5) } == .revoked)
        #expect(try db.write { try TokenStore.revoke($0, id: id, at: 6) } == .alreadyRevoked)
        #expect(try db.write { try TokenStore.revoke($0, id: id + 1, at: 6) } == .notFound)
        #expect(try db.sync { try TokenStore.list($0) }.first { $0.id == id }?.revokedAt == 5, "the first revocation's time stays")
    }

    @Test func auditRecordsWhoReadWhichStudy() throws {
        let (db, _) = try makeDatabase()
        try db.write { try AuditLog.record($0, tokenID: 3, action: "read-study", study: "1.2", at: 10) }
        try db.write { try AuditLog.record($0, tokenID: 4, action: "read-study", study: "1.3", at: 11) }
        #expect(try db.sync { try AuditLog.entries($0, study: "1.2") } == [AuditLog.Entry(at: 10, tokenID: 3, action: "read-study", study: "1.2")])
    }
}
