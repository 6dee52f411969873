import Testing

@testable import Storage

@Suite struct ResultStoreTests {
    /// Studies with these `any` maxima (nil: no result yet), received at the given times.
    func worklistDatabase() throws -> DatabaseQueue {
        let (db, _) = try makeDatabase()
        let studies: [(String, Float?, Double)] = [("1.5", 0.5, 10), ("1.9", 0.9, 20), ("1.1", 0.1, 30), ("1.0", nil, 40), ("1.7", 0.9, 50)]
        for (uid, any, time) in studies {
            _ = try db.write { try JobQueue.enqueue($0, [instance(uid + ".1", study: uid, at: time)]) }
            if let any {
                try db.write {
                    _ = try JobQueue.complete($0, [CompletedJob(uid + ".1", spoolName: uid + ".1.dcm", .done(probabilities: [any, 0, 0, 0, 0, 0]))], model: "m", at: time)
                    try JobQueue.summarize($0, study: uid, StudySummary(maxima: [any, 0, 0, 0, 0, 0], primarySeriesUID: uid + ".1",
                                                                        assessable: true, notAssessableReason: nil))
                }
            }
        }
        return db
    }

    @Test func worklistOrdersByAnyThenUIDWithUnprocessedLast() throws {
        let db = try worklistDatabase()
        let all = try db.sync { try ResultStore.worklist($0, minimumAny: nil, since: nil, after: nil, limit: 10) }
        #expect(all.map(\.studyInstanceUID) == ["1.7", "1.9", "1.5", "1.1", "1.0"])
    }

    @Test func worklistFilters() throws {
        let db = try worklistDatabase()
        let positive = try db.sync { try ResultStore.worklist($0, minimumAny: 0.5, since: nil, after: nil, limit: 10) }
        #expect(positive.map(\.studyInstanceUID) == ["1.7", "1.9", "1.5"])
        let recent = try db.sync { try ResultStore.worklist($0, minimumAny: nil, since: 30, after: nil, limit: 10) }
        #expect(recent.map(\.studyInstanceUID) == ["1.7", "1.1", "1.0"])
        let unassessable = try db.sync { try ResultStore.worklist($0, minimumAny: nil, since: nil, assessable: false, after: nil, limit: 10) }
        #expect(unassessable.map(\.studyInstanceUID) == ["1.0"], "a study not yet summarised counts as not assessable")
        let assessable = try db.sync { try ResultStore.worklist($0, minimumAny: nil, since: nil, assessable: true, after: nil, limit: 10) }
        #expect(assessable.count == 4)
    }

    @Test(arguments: [1, 2, 3, 4])
    func cursorPagingVisitsEveryStudyOnce(pageSize: Int) throws {
        let db = try worklistDatabase()
        var seen: [String] = []
        var cursor: ResultStore.Cursor?
        while true {
            let page = try db.sync { try ResultStore.worklist($0, minimumAny: nil, since: nil, after: cursor, limit: pageSize) }
            seen += page.map(\.studyInstanceUID)
            guard page.count == pageSize, let last = page.last else { break }
            cursor = ResultStore.Cursor(anyMaximum: last.maxima.map { Double($0[0]) } ?? -1, studyInstanceUID: last.studyInstanceUID)
        }
        #expect(seen == ["1.7", "1.9", "1.5", "1.1", "1.0"], "page size \(pageSize)")
    }
}
