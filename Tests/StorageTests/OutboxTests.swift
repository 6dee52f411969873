import Foundation
import Testing

@testable import Storage

@Suite struct OutboxTests {
    let p: [Float] = [0.9, 0.1, 0.2, 0.3, 0.4, 0.5]

    func note(_ url: String, at time: Double = 200) -> NewNotification {
        NewNotification(eventID: "e-" + url, url: url, body: Array("{}".utf8), createdAt: time)
    }

    @Test func onlyCompleteQuietStudiesAreUnsettledAndSettlingIsOnce() throws {
        let (db, _) = try makeDatabase()
        _ = try db.write { try JobQueue.enqueue($0, [instance("1.1", at: 100), instance("1.2", at: 100), instance("2.1", study: "2", at: 100)]) }
        _ = try db.write { try JobQueue.complete($0, [CompletedJob("1.1", spoolName: "1.1.dcm", .done(probabilities: p)), CompletedJob("2.1", spoolName: "2.1.dcm", .done(probabilities: p))], model: "m", at: 101) }
        // Study 1.2.3 still has a queued slice; study 2 is done but received its slice after the cutoff.
        #expect(try db.sync { try Outbox.unsettled($0, receivedBefore: 99, limit: 10) }.isEmpty)
        #expect(try db.sync { try Outbox.unsettled($0, receivedBefore: 100, limit: 10) }.map(\.studyInstanceUID) == ["2"])
        try db.write { try Outbox.settle($0, study: "2", processed: 1, notifications: [note("http://a"), note("http://b")]) }
        #expect(try db.sync { try Outbox.unsettled($0, receivedBefore: 100, limit: 10) }.isEmpty)
        #expect(try db.sync { try Outbox.notifiedCount($0, study: "2") } == 1)
        #expect(try db.sync { try Outbox.pendingCount($0) } == 2)

        // A late slice unsettles the study again once it is processed.
        _ = try db.write { try JobQueue.enqueue($0, [instance("2.2", study: "2", at: 150)]) }
        #expect(try db.sync { try Outbox.unsettled($0, receivedBefore: 200, limit: 10) }.isEmpty, "a queued slice keeps it open")
        _ = try db.write { try JobQueue.complete($0, [CompletedJob("2.2", spoolName: "2.2.dcm", .failed(type: "x", detail: "y"))], model: "m", at: 151) }
        let again = try db.sync { try Outbox.unsettled($0, receivedBefore: 200, limit: 10) }
        #expect(again.map(\.studyInstanceUID) == ["2"] && again[0].processed == 2)
    }

    @Test func deliveryAttemptsMoveRowsOutOfTheDueSet() throws {
        let (db, _) = try makeDatabase()
        _ = try db.write { try JobQueue.enqueue($0, [instance("1.1", at: 100)]) }
        try db.write {
            try Outbox.settle($0, study: "1.2.3", processed: 1, notifications: [note("http://a"), note("http://b"), note("http://c")])
        }
        let due = try db.sync { try Outbox.due($0, at: 200, limit: 10) }
        #expect(due.map(\.url) == ["http://a", "http://b", "http://c"] && due.allSatisfy { $0.attempts == 0 })
        #expect(try db.sync { try Outbox.due($0, at: 199, limit: 10) }.isEmpty, "nothing is due before it was created")
        try db.write {
            try Outbox.record($0, id: due[0].id, outcome: .delivered, status: 204, error: nil, at: 201)
            try Outbox.record($0, id: due[1].id, outcome: .retry(at: 260), status: 500, error: "the receiver answered 500", at: 201)
            try Outbox.record($0, id: due[2].id, outcome: .abandoned, status: nil, error: "refused", at: 201)
        }
        #expect(try db.sync { try Outbox.due($0, at: 259, limit: 10) }.isEmpty)
        let retried = try db.sync { try Outbox.due($0, at: 260, limit: 10) }
        #expect(retried.map(\.url) == ["http://b"] && retried[0].attempts == 1)
        #expect(try db.sync { try Outbox.nextDue($0) } == 260)
        #expect(try db.sync { try Outbox.pendingCount($0) } == 1)
        let states = try db.sync { try Outbox.notifications($0, study: "1.2.3") }
        #expect(states.map(\.deliveredAt) == [201, nil, nil] && states.map(\.abandonedAt) == [nil, nil, 201])
        #expect(states.map(\.lastStatus) == [204, 500, nil])
    }

    @Test func deletingAStudyDropsItsNotifications() throws {
        let (db, _) = try makeDatabase()
        _ = try db.write { try JobQueue.enqueue($0, [instance("1.1", at: 100)]) }
        try db.write { try Outbox.settle($0, study: "1.2.3", processed: 1, notifications: [note("http://a")]) }
        _ = try db.write { try JobQueue.deleteStudy($0, "1.2.3") }
        #expect(try db.sync { try Outbox.pendingCount($0) } == 0)
    }

    @Test func upgradingSettlesStudiesThatExistedBefore() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("outbox-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let db = try DatabaseQueue(path: directory + "/old.sqlite", label: "old")
        try db.sync { try Migrator.migrate($0, Array(Schema.migrations.prefix(2))) }
        // Rows as the version-2 code wrote them: one finished instance and its study.
        try db.write {
            try $0.execute("""
                INSERT INTO instances (sop_instance_uid, study_instance_uid, series_instance_uid, sop_class_uid, received_at, state,
                    p_any, processed_at) VALUES ('1.1', '1.2.3', '1.2.3.1', '1.2.840.10008.5.1.4.1.1.2', 100, 1, 0.9, 101);
                INSERT INTO studies (study_instance_uid, first_received_at, last_received_at, received, done, max_any)
                    VALUES ('1.2.3', 100, 100, 1, 1, 0.9);
                """)
        }
        try db.sync { try Migrator.migrate($0, Schema.migrations) }
        #expect(try db.sync { try Outbox.unsettled($0, receivedBefore: 1_000, limit: 10) }.isEmpty,
                "a study finished before notifications existed is not announced on upgrade")
        let study = try #require(try db.sync { try ResultStore.study($0, "1.2.3") })
        #expect(study.assessable == true && study.maxima?[0] == 0.9 && study.skipped == 0)
        #expect(try db.sync { try ResultStore.series($0, study: "1.2.3") }.map(\.seriesInstanceUID) == ["1.2.3.1"],
                "series are made from the instances already stored")
    }
}
