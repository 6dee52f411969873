import Testing

@testable import Storage

@Suite struct ResultsOutboxTests {
    @Test func queuedResultsAreDueUntilDeliveredOrAbandoned() throws {
        let (db, _) = try makeDatabase()
        try db.sync { try Migrator.migrate($0, Schema.migrations) }
        try db.write {
            try ResultsOutbox.enqueue($0, ["dicom://A@h:104", "http://h/x"].map {
                NewResult(studyInstanceUID: "1.2", destination: $0, sopInstanceUID: "1.2.9", body: [1, 2, 3], createdAt: 10)
            })
        }
        var due = try db.sync { try ResultsOutbox.due($0, at: 10, limit: 10) }
        #expect(due.map(\.destination) == ["dicom://A@h:104", "http://h/x"] && due[0].body == [1, 2, 3] && due[0].attempts == 0)
        try db.write {
            try ResultsOutbox.record($0, id: due[0].id, outcome: .delivered, status: 0, error: nil, at: 11)
            try ResultsOutbox.record($0, id: due[1].id, outcome: .retry(at: 20), status: 503, error: "the server answered 503", at: 11)
        }
        #expect(try db.sync { try ResultsOutbox.due($0, at: 19, limit: 10) }.isEmpty, "not before its retry time")
        due = try db.sync { try ResultsOutbox.due($0, at: 20, limit: 10) }
        #expect(due.map(\.attempts) == [1])
        try db.write { try ResultsOutbox.record($0, id: due[0].id, outcome: .abandoned, status: nil, error: "x", at: 21) }
        #expect(try db.sync { try ResultsOutbox.pendingCount($0) } == 0)
        let states = try db.sync { try ResultsOutbox.results($0, study: "1.2") }
        #expect(states.map(\.deliveredAt) == [11, nil] && states.map(\.abandonedAt) == [nil, 21] && states[1].attempts == 2)
    }
}
