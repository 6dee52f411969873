import Foundation
import Storage
import Testing

@testable import Service

@Suite struct RetentionSweeperTests {
    static let day = 86_400.0

    /// Posts a two-slice study and returns its UID once it is complete and the notifier has settled it.
    static func completedStudy(_ harness: ServiceHarness) async throws -> String {
        let slices = Slices()
        for z in [0.0, 5.0] { #expect(try await harness.post(instance: slices.instance(z: z)).status == 202) }
        #expect(try await harness.study(slices.study)["status"] as? String == "complete")
        harness.service.notifier.settleCompletedStudies()
        return slices.study
    }

    @Test func aStudyOlderThanTheRetentionGoesAndAYoungerOneStays() async throws {
        let model = FakeModel()
        let harness = try ServiceHarness(configure: { $0.retentionDays = 2 }, classify: model.classify)
        defer { harness.close() }
        let sweeper = try #require(harness.service.retention)
        let old = try await Self.completedStudy(harness)
        harness.clock.advance(1.5 * Self.day)
        let young = try await Self.completedStudy(harness)
        #expect(try sweeper.runPass() == .init(), "nothing is two days old yet")
        harness.clock.advance(0.6 * Self.day)

        #expect(try sweeper.runPass() == .init(studies: 1, slices: 2, batches: 1))
        #expect(try await harness.get("/v1/studies/\(old)").problem == "404 study-not-found")
        #expect(try await harness.get("/v1/studies/\(young)").status == 200)
        let audit = try harness.context.reader.sync { try AuditLog.entries($0, study: old) }
        #expect(audit.filter { $0.action == "retention-delete-study" }.map(\.tokenID) == [nil])
        let metrics = String(decoding: harness.context.metrics.exposition(), as: UTF8.self)
        #expect(metrics.contains(#"ich_retention_deleted_total{kind="studies"} 1"#), "\(metrics)")
        #expect(metrics.contains(#"ich_retention_deleted_total{kind="slices"} 2"#))
        let spool = try FileManager.default.contentsOfDirectory(atPath: harness.context.configuration.spoolDirectory)
        #expect(spool.isEmpty, "\(spool)")
        #expect(try sweeper.runPass() == .init(), "a second pass has nothing to do")
    }

    static func waitUntilGone(_ harness: ServiceHarness, _ uid: String) async throws -> Bool {
        let deadline = Date().addingTimeInterval(10)
        while try await harness.get("/v1/studies/\(uid)").status == 200 {
            if Date() > deadline { return false }
            try await Task.sleep(for: .milliseconds(20))
        }
        return true
    }

    /// Passes run at start and then every period on the sweeper's own queue; after `stop` none runs.
    @Test func passesRunAtStartThenPeriodicallyUntilStopped() async throws {
        let model = FakeModel()
        let harness = try ServiceHarness(configure: { $0.retentionDays = 1 }, classify: model.classify)
        defer { harness.close() }
        let context = harness.context
        let sweeper = RetentionSweeper(days: 1, writer: context.writer, spool: context.pipeline.spool, metrics: context.metrics,
                                       logger: context.logger, clock: harness.clock.wallClock, period: 0.05)
        let first = try await Self.completedStudy(harness)
        harness.clock.advance(2 * Self.day)
        sweeper.start()
        #expect(try await Self.waitUntilGone(harness, first), "the pass at start")
        let second = try await Self.completedStudy(harness)
        harness.clock.advance(2 * Self.day)
        #expect(try await Self.waitUntilGone(harness, second), "a later pass")
        sweeper.stop()
        let third = try await Self.completedStudy(harness)
        harness.clock.advance(2 * Self.day)
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await harness.get("/v1/studies/\(third)").status == 200, "stopped: six periods later it is still there")
    }

    @Test func retentionIsOffUnlessSetAndZeroDaysIsRefused() throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        #expect(harness.service.retention == nil)
        #expect(throws: ServiceError.configuration("retention days must be at least 1")) {
            _ = try ServiceHarness(configure: { $0.retentionDays = 0 })
        }
    }
}
