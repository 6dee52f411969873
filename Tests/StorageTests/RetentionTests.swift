import Foundation
import Testing

@testable import Storage

/// Times are seconds; the cutoff in these tests is 1,000 (a study whose last activity is before it is expired).
@Suite struct RetentionTests {
    let p: [Float] = [0.9, 0.1, 0.2, 0.3, 0.4, 0.5]
    let day = 86_400.0

    /// A study of `slices` slices received at `received`, processed at `processed` (nil: left queued) and,
    /// when processed, settled by the notifier.
    func study(_ db: DatabaseQueue, _ uid: String, slices: Int = 2, received: Double, processed: Double?,
               settle: Bool = true) throws {
        let instances = (1...slices).map { instance("\(uid).\($0)", study: uid, at: received) }
        _ = try db.write { try JobQueue.enqueue($0, instances) }
        guard let processed else { return }
        _ = try db.write {
            try JobQueue.complete($0, instances.map { CompletedJob($0.sopInstanceUID, spoolName: $0.spoolName!, .done(probabilities: p)) },
                                  model: "m", at: processed)
        }
        if settle { try db.write { try Outbox.settle($0, study: uid, processed: slices, notifications: []) } }
    }

    func rowCount(_ db: DatabaseQueue, _ table: String, study uid: String) throws -> Int {
        try db.sync { try $0.statement("SELECT count(*) FROM \(table) WHERE study_instance_uid = ?").first([.text(uid)]) { $0.int(0) } ?? 0 }
    }

    func batch(_ db: DatabaseQueue, cutoff: Double = 1_000, maxStudies: Int = 8, maxSlices: Int = 2_000, at now: Double = 5_000)
        throws -> Retention.Batch
    {
        try db.write { try Retention.deleteBatch($0, completedBefore: cutoff, maxStudies: maxStudies, maxSlices: maxSlices, at: now) }
    }

    @Test func anExpiredStudyGoesWithEveryRowOfItsAndIsAudited() throws {
        let (db, _) = try makeDatabase()
        try study(db, "old", slices: 3, received: 100, processed: 110)
        try db.write {
            try Outbox.settle($0, study: "old", processed: 3, notifications: [NewNotification(eventID: "e", url: "http://a", body: [1], createdAt: 110)])
            let id = try Outbox.due($0, at: 110, limit: 1)[0].id
            try Outbox.record($0, id: id, outcome: .delivered, status: 204, error: nil, at: 111)
        }
        try db.write { try AuditLog.record($0, tokenID: 4, action: "read-study", study: "old", at: 120) }

        let deleted = try batch(db)
        #expect(deleted == Retention.Batch(studies: ["old"], slices: 3, spoolFiles: []))
        for table in ["studies", "instances", "series", "notifications"] {
            #expect(try rowCount(db, table, study: "old") == 0, "\(table) still holds the study")
        }
        let audit = try db.sync { try AuditLog.entries($0, study: "old") }
        #expect(audit == [AuditLog.Entry(at: 120, tokenID: 4, action: "read-study", study: "old"),
                          AuditLog.Entry(at: 5_000, tokenID: nil, action: "retention-delete-study", study: "old")],
                "the trail is kept and the deletion added to it, by no token")
    }

    @Test func onlyStudiesWithNothingLeftToHappenBeforeTheCutoffGo() throws {
        let (db, _) = try makeDatabase()
        try study(db, "expired", received: 100, processed: 200)
        try study(db, "young", received: 1_000, processed: 1_001)
        try study(db, "queued", received: 100, processed: nil)
        try study(db, "processed-late", received: 100, processed: 1_000)  // its outcome came at the cutoff
        try study(db, "unsettled", received: 100, processed: 200, settle: false)
        try study(db, "notifying", received: 100, processed: 200, settle: false)
        try db.write {
            try Outbox.settle($0, study: "notifying", processed: 2,
                              notifications: [NewNotification(eventID: "e", url: "http://a", body: [1], createdAt: 200)])
        }
        try study(db, "abandoned", received: 100, processed: 200, settle: false)
        try db.write {
            try Outbox.settle($0, study: "abandoned", processed: 2,
                              notifications: [NewNotification(eventID: "f", url: "http://a", body: [1], createdAt: 200)])
            let id = try Outbox.notifications($0, study: "abandoned")[0].id
            try Outbox.record($0, id: id, outcome: .abandoned, status: 500, error: "x", at: 300)
        }
        // One of two slices queued: a study half done is in progress, however old.
        try study(db, "half", received: 100, processed: nil)
        _ = try db.write { try JobQueue.complete($0, [CompletedJob("half.1", spoolName: "half.1.dcm", .done(probabilities: p))], model: "m", at: 200) }

        #expect(try batch(db).studies.sorted() == ["abandoned", "expired"])
        for kept in ["young", "queued", "processed-late", "unsettled", "notifying", "half"] {
            #expect(try rowCount(db, "studies", study: kept) == 1, "\(kept) was deleted")
        }
        #expect(try db.sync { try JobQueue.queuedCount($0) } == 3, "no queued job was touched")
    }

    /// A late slice reopens a completed study: it ages from that slice on, not from its first completion.
    @Test func aLateSliceMakesACompletedStudyYoungAgain() throws {
        let (db, _) = try makeDatabase()
        try study(db, "grown", received: 100, processed: 110)
        let late = instance("grown.9", study: "grown", at: 1_500)
        _ = try db.write { try JobQueue.enqueue($0, [late]) }
        #expect(try batch(db).studies.isEmpty, "queued")
        _ = try db.write { try JobQueue.complete($0, [CompletedJob(late.sopInstanceUID, spoolName: late.spoolName!, .done(probabilities: p))], model: "m", at: 1_501) }
        try db.write { try Outbox.settle($0, study: "grown", processed: 3, notifications: []) }
        #expect(try batch(db).studies.isEmpty, "completed again after the cutoff")
        #expect(try batch(db, cutoff: 1_502).studies == ["grown"])
    }

    @Test(arguments: [(studies: 20, maxStudies: 8, expected: [8, 8, 4, 0]), (studies: 3, maxStudies: 8, expected: [3, 0])])
    func batchesAreBoundedInStudies(studies: Int, maxStudies: Int, expected: [Int]) throws {
        let (db, _) = try makeDatabase()
        for k in 0..<studies { try study(db, "s\(k)", slices: 1, received: 100 + Double(k), processed: 200) }
        var sizes: [Int] = []
        for _ in expected { sizes.append(try batch(db, maxStudies: maxStudies).studies.count) }
        #expect(sizes == expected)
        #expect(try db.sync { try $0.statement("SELECT count(*) FROM studies").first { $0.int(0) } } == 0)
    }

    @Test func batchesAreBoundedInSlicesAndABigStudyGoesAlone() throws {
        let (db, _) = try makeDatabase()
        try study(db, "a", slices: 3, received: 100, processed: 200)
        try study(db, "b", slices: 3, received: 101, processed: 200)
        try study(db, "big", slices: 12, received: 102, processed: 200)
        try study(db, "c", slices: 3, received: 103, processed: 200)
        let batches = try (0..<4).map { _ in try batch(db, maxSlices: 7) }
        #expect(batches.map(\.studies) == [["a", "b"], ["big"], ["c"], []], "oldest first, at most 7 slices unless one study has more")
        #expect(batches.map(\.slices) == [6, 12, 3, 0])
    }

    @Test func aSecondPassFindsNothingAndAuditsNothing() throws {
        let (db, _) = try makeDatabase()
        try study(db, "old", received: 100, processed: 200)
        #expect(try batch(db).studies == ["old"])
        #expect(try batch(db, at: 6_000) == Retention.Batch())
        #expect(try db.sync { try AuditLog.entries($0, study: "old") }.count == 1)
    }

    /// Completed slices have no spool file; a row that still names one (kept by a build that did not clear
    /// it, or by hand) has it returned so that no byte of the study outlives it.
    @Test func spoolFilesStillNamedAreReturnedOnce() throws {
        let (db, _) = try makeDatabase()
        try study(db, "old", slices: 3, received: 100, processed: 200)
        try db.sync { try $0.execute("UPDATE instances SET spool_name = 'shared.dcm' WHERE study_instance_uid = 'old'") }
        #expect(try batch(db).spoolFiles == ["shared.dcm"])
    }

    /// The pass looks studies up by age in an index and removes notifications by study without a scan.
    @Test func theLookupsUseTheRetentionIndexes() throws {
        let (db, _) = try makeDatabase()
        let plan = try db.sync {
            try $0.statement("EXPLAIN QUERY PLAN " + Retention.expiredSQL).rows([.real(5), .integer(8)]) { $0.text(3) }
        }
        #expect(plan.contains { $0.contains("studies_by_last_received") }, "\(plan)")
        let delete = try db.sync {
            try $0.statement("EXPLAIN QUERY PLAN DELETE FROM notifications WHERE study_instance_uid = 'x'").rows { $0.text(3) }
        }
        #expect(delete.contains { $0.contains("notifications_by_study") }, "\(delete)")
    }
}
