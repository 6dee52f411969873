import Foundation
import Testing

@testable import Storage

/// A fresh migrated database in a temporary directory.
func makeDatabase() throws -> (DatabaseQueue, String) {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("storage-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let db = try DatabaseQueue(path: directory + "/test.sqlite", label: "test")
    try db.sync { try Migrator.migrate($0, Schema.migrations) }
    return (db, directory)
}

func instance(_ sop: String, study: String = "1.2.3", number: Int? = nil, z: Double? = nil, at time: Double = 100) -> NewInstance {
    NewInstance(sopInstanceUID: sop, studyInstanceUID: study, seriesInstanceUID: study + ".1", sopClassUID: "1.2.840.10008.5.1.4.1.1.2",
                instanceNumber: number, frames: [NewFrame(number: 1, position: z)], spoolName: sop + ".dcm", receivedAt: time)
}

@Suite struct JobQueueTests {
    @Test func enqueueStoresEachSOPInstanceOnce() throws {
        let (db, _) = try makeDatabase()
        let first = try db.write { try JobQueue.enqueue($0, [instance("1.1"), instance("1.2"), instance("1.1")]) }
        #expect(first == [true, true, false])
        let again = try db.write { try JobQueue.enqueue($0, [instance("1.2", at: 200)]) }
        #expect(again == [false])
        let study = try #require(try db.sync { try ResultStore.study($0, "1.2.3") })
        #expect(study.received == 2)
        #expect(study.lastReceivedAt == 100, "a duplicate does not count as a new arrival")
        #expect(try db.sync { try JobQueue.queued($0) }.map(\.sopInstanceUID) == ["1.1", "1.2"])
    }

    @Test func completeRecordsResultsAndSummaryStoresMaxima() throws {
        let (db, _) = try makeDatabase()
        _ = try db.write { try JobQueue.enqueue($0, [instance("1.1", z: 5), instance("1.2", z: 0), instance("1.3")]) }
        let p1: [Float] = [0.9, 0.1, 0.2, 0.3, 0.4, 0.5]
        let p2: [Float] = [0.2, 0.6, 0.1, 0.1, 0.1, 0.1]
        let recorded = try db.write {
            try JobQueue.complete($0, [CompletedJob("1.1", spoolName: "1.1.dcm", .done(probabilities: p1)), CompletedJob("1.2", spoolName: "1.2.dcm", .done(probabilities: p2)),
                                       CompletedJob("1.3", spoolName: "1.3.dcm", .failed(type: "not-dicom", detail: "x"))], model: "m@1", at: 150)
        }
        #expect(recorded == [true, true, true])
        let study = try #require(try db.sync { try ResultStore.study($0, "1.2.3") })
        #expect(study.done == 2 && study.failed == 1 && study.queued == 0)
        #expect(study.maxima == nil && study.assessable == nil, "completion counts; the service's summary sets the rest")
        let summary = StudySummary(maxima: [0.9, 0.6, 0.2, 0.3, 0.4, 0.5], primarySeriesUID: "1.2.3.1", assessable: true,
                                   notAssessableReason: nil)
        try db.write { try JobQueue.summarize($0, study: "1.2.3", summary) }
        let summarized = try #require(try db.sync { try ResultStore.study($0, "1.2.3") })
        #expect(summarized.maxima == summary.maxima && summarized.primarySeriesUID == "1.2.3.1" && summarized.assessable == true)
        let record = try #require(try db.sync { try ResultStore.instance($0, "1.1") }.first)
        #expect(record.state == .done && record.probabilities == p1 && record.model == "m@1" && record.position == 5)
        let failed = try #require(try db.sync { try ResultStore.instance($0, "1.3") }.first)
        #expect(failed.state == .failed && failed.errorType == "not-dicom" && failed.probabilities == nil)
        #expect(try db.sync { try JobQueue.queuedCount($0) } == 0)
        // A second outcome for a finished job is ignored, so a retried batch cannot double-count.
        #expect(try db.write { try JobQueue.complete($0, [CompletedJob("1.1", spoolName: "1.1.dcm", .done(probabilities: p2))], model: "m@1", at: 160) } == [false])
        #expect(try db.sync { try ResultStore.study($0, "1.2.3") }?.done == 2)
    }

    @Test func skippedInstancesKeepMetadataWithoutAJob() throws {
        let (db, _) = try makeDatabase()
        let scout = NewInstance(
            sopInstanceUID: "1.9", studyInstanceUID: "1.2.3", seriesInstanceUID: "1.2.3.9", sopClassUID: "1.2.840.10008.5.1.4.1.1.2",
            instanceNumber: 1, frames: [NewFrame(number: 1, position: nil)], spoolName: nil, skipReason: "localizer", receivedAt: 100,
            series: SeriesDetails(seriesNumber: 9, modality: "CT", original: true),
            study: StudyDetails(accessionNumber: "A1", patientName: "Doe^J"))
        var slice = instance("1.1")
        slice.study = StudyDetails(accessionNumber: "other", patientID: "P1")
        #expect(try db.write { try JobQueue.enqueue($0, [scout, slice]) } == [true, true])
        #expect(try db.sync { try JobQueue.queued($0) }.map(\.sopInstanceUID) == ["1.1"])
        let study = try #require(try db.sync { try ResultStore.study($0, "1.2.3") })
        #expect(study.received == 2 && study.skipped == 1 && study.queued == 1 && study.finished == 1)
        #expect(study.details == StudyDetails(accessionNumber: "A1", patientID: "P1", patientName: "Doe^J"),
                "the first value of each attribute is kept, missing ones filled later")
        let record = try #require(try db.sync { try ResultStore.instance($0, "1.9") }.first)
        #expect(record.state == .skipped && record.skipReason == "localizer")
        let series = try db.sync { try ResultStore.series($0, study: "1.2.3") }
        #expect(series.map(\.seriesInstanceUID) == ["1.2.3.1", "1.2.3.9"] || series.map(\.seriesInstanceUID) == ["1.2.3.9", "1.2.3.1"])
        #expect(series.first { $0.seriesInstanceUID == "1.2.3.9" }?.details == SeriesDetails(seriesNumber: 9, modality: "CT", original: true))
    }

    @Test func deleteStudyReturnsQueuedSpoolFilesAndForgetsTheStudy() throws {
        let (db, _) = try makeDatabase()
        _ = try db.write { try JobQueue.enqueue($0, [instance("1.1"), instance("1.2"), instance("2.1", study: "9.9")]) }
        try db.write { _ = try JobQueue.complete($0, [CompletedJob("1.1", spoolName: "1.1.dcm", .done(probabilities: [Float](repeating: 0.1, count: 6)))], model: "m", at: 1) }
        let files = try db.write { try JobQueue.deleteStudy($0, "1.2.3") }
        #expect(files == ["1.2.dcm"])
        #expect(try db.sync { try ResultStore.study($0, "1.2.3") } == nil)
        #expect(try db.sync { try ResultStore.instances($0, study: "1.2.3") }.isEmpty)
        #expect(try db.write { try JobQueue.deleteStudy($0, "1.2.3") } == nil)
        #expect(try db.sync { try JobQueue.queued($0) }.map(\.sopInstanceUID) == ["2.1"])
        // The batch that was running when the study was deleted finds nothing to update.
        #expect(try db.write { try JobQueue.complete($0, [CompletedJob("1.2", spoolName: "1.2.dcm", .failed(type: "t", detail: "d"))], model: "m", at: 2) } == [false])
    }

    /// A study deleted while its jobs wait, then uploaded again: the old jobs'
    /// outcomes must not land on the new rows (their spool files differ).
    @Test func aDeletedJobsOutcomeDoesNotLandOnItsReupload() throws {
        let (db, _) = try makeDatabase()
        _ = try db.write { try JobQueue.enqueue($0, [instance("1.1")]) }
        _ = try db.write { try JobQueue.deleteStudy($0, "1.2.3") }
        var again = instance("1.1")
        again.spoolName = "1.1-again.dcm"
        #expect(try db.write { try JobQueue.enqueue($0, [again]) } == [true])
        let stale = try db.write {
            try JobQueue.complete($0, [CompletedJob("1.1", spoolName: "1.1.dcm", .failed(type: "spool-missing", detail: "gone"))], model: "m", at: 2)
        }
        #expect(stale == [false])
        #expect(try db.sync { try ResultStore.instance($0, "1.1") }.first?.state == .queued)
        let p: [Float] = [0.7, 0.1, 0.1, 0.1, 0.1, 0.1]
        #expect(try db.write { try JobQueue.complete($0, [CompletedJob("1.1", spoolName: "1.1-again.dcm", .done(probabilities: p))], model: "m", at: 3) } == [true])
        #expect(try db.sync { try ResultStore.instance($0, "1.1") }.first?.probabilities == p)
    }

    /// A multi-frame object is a row per frame sharing one spool file, which no queued frame may lose.
    @Test func framesAreSlicesThatShareTheirSpoolFile() throws {
        let (db, _) = try makeDatabase()
        var enhanced = instance("1.5")
        enhanced.frames = (1...3).map { NewFrame(number: $0, position: 10 * Double($0), normal: [0, 0, 1]) }
        #expect(try db.write { try JobQueue.enqueue($0, [enhanced, instance("1.6")]) } == [true, true])
        #expect(try db.write { try JobQueue.enqueue($0, [enhanced]) } == [false], "an object is stored once")
        let jobs = try db.sync { try JobQueue.queued($0) }
        #expect(jobs.map { "\($0.sopInstanceUID)/\($0.frameNumber)" } == ["1.5/1", "1.5/2", "1.5/3", "1.6/1"])
        #expect(try db.sync { try ResultStore.study($0, "1.2.3") }?.received == 4, "counts count slices")
        let p: [Float] = [0.5, 0, 0, 0, 0, 0]
        let released = try db.write { db in
            _ = try JobQueue.complete(db, [CompletedJob("1.5", frame: 2, spoolName: "1.5.dcm", .done(probabilities: p)),
                                           CompletedJob("1.6", spoolName: "1.6.dcm", .done(probabilities: p))], model: "m", at: 2)
            return try JobQueue.releasable(db, spoolFiles: ["1.5.dcm", "1.6.dcm"])
        }
        #expect(released == ["1.6.dcm"], "frames 1 and 3 still need 1.5.dcm")
        let frames = try db.sync { try ResultStore.instance($0, "1.5") }
        #expect(frames.map(\.frameNumber) == [1, 2, 3] && frames.map(\.position) == [10, 20, 30])
        #expect(frames.map(\.state) == [.queued, .done, .queued] && frames[1].probabilities == p)
        #expect(try db.write { try JobQueue.deleteStudy($0, "1.2.3") } == ["1.5.dcm"], "each spool file once")
    }

    @Test func rolledBackTransactionLeavesNothing() throws {
        struct Abort: Error {}
        let (db, _) = try makeDatabase()
        #expect(throws: Abort.self) {
            try db.write { connection in
                _ = try JobQueue.enqueue(connection, [instance("1.1")])
                throw Abort()
            }
        }
        #expect(try db.sync { try ResultStore.study($0, "1.2.3") } == nil)
        #expect(try db.sync { try JobQueue.queuedCount($0) } == 0)
    }

    /// One STAT instance makes its study urgent, for its queued jobs too, and a restart resumes them as urgent.
    @Test func urgencyBelongsToTheStudyAndIsResumed() throws {
        let (db, _) = try makeDatabase()
        var stat = instance("2.2", study: "2")
        stat.urgent = true
        _ = try db.write { try JobQueue.enqueue($0, [instance("1.1", study: "1"), instance("2.1", study: "2"), stat]) }
        let queued = try db.sync { try JobQueue.queued($0) }
        #expect(queued.map { "\($0.sopInstanceUID):\($0.urgent)" } == ["1.1:false", "2.1:true", "2.2:true"])
    }

    @Test func committedJobsSurviveReopening() throws {
        let (db, directory) = try makeDatabase()
        _ = try db.write { try JobQueue.enqueue($0, [instance("1.1"), instance("1.2")]) }
        let reopened = try DatabaseQueue(path: directory + "/test.sqlite", label: "reopened")
        try reopened.sync { try Migrator.migrate($0, Schema.migrations) }
        #expect(try reopened.sync { try JobQueue.queued($0) }.map(\.spoolName) == ["1.1.dcm", "1.2.dcm"])
    }
}

@Suite struct ReaderSnapshotTests {
    /// A reader that looked something up must still see later commits (a
    /// statement left on its row would pin the reader to an old snapshot).
    @Test func readerSeesCommitsAfterAnEarlierLookup() throws {
        let (writer, directory) = try makeDatabase()
        let reader = try DatabaseQueue(path: directory + "/test.sqlite", readOnly: true, label: "reader")
        _ = try writer.write { try JobQueue.enqueue($0, [instance("1.1")]) }
        #expect(try reader.sync { try ResultStore.instance($0, "1.1") }.first != nil)
        _ = try writer.write { try JobQueue.enqueue($0, [instance("1.2")]) }
        #expect(try reader.sync { try ResultStore.study($0, "1.2.3") }?.received == 2)
    }
}
