import DICOMTestSupport
import Foundation
import Testing

@testable import Service

/// Upload to result with a fake forward pass: what reaches the model, what a
/// failed pass records, when a study is complete, and what a restart resumes.
@Suite struct PipelineTests {
    @Test func onlyTriagedSlicesReachTheForwardPass() async throws {
        let model = FakeModel()
        let harness = try ServiceHarness(classify: model.classify)
        defer { harness.close() }
        let slices = Slices()
        let axial = (0..<3).map { _ in Slices.uid() }
        var parts = axial.enumerated().map { slices.instance(sop: $1, number: $0 + 1, z: 5 * Double($0)) }
        parts.append(slices.instance(series: Slices.uid(), imageType: "ORIGINAL\\PRIMARY\\LOCALIZER"))
        parts.append(slices.instance(series: Slices.uid(), modality: "MR"))
        #expect(try await harness.stow(parts).status == 200)
        let study = try await harness.study(slices.study)
        #expect(study["status"] as? String == "complete")
        #expect(Set(model.seen) == Set(axial) && model.seen.count == 3)
        #expect(study["primarySeriesInstanceUID"] as? String == slices.series)
        let roles = (study["series"] as? [[String: Any]])?.map { "\($0["role"]!) \($0["reason"] ?? "")" }.sorted()
        #expect(roles == ["primary <null>", "skipped localizer", "skipped not-ct"])
    }

    /// An Enhanced CT object is a series of slices: each frame runs with its own plane, frames split over
    /// batches share the spool file until the last is done, and every resource names the frame.
    @Test func eachFrameOfAnEnhancedCTIsASlice() async throws {
        let model = FakeModel()
        let slices = Slices()
        let sop = Slices.uid()
        model.set(sop, frame: 4, [0.9, 0.1, 0.8, 0.1, 0.1, 0.1])
        model.set(sop, frame: 2, [0.3, 0.7, 0.1, 0.1, 0.1, 0.1])
        let harness = try ServiceHarness(maxBatch: 2, classify: model.classify)
        defer { harness.close() }
        let object = slices.enhanced(sop: sop, frames: 5)
        #expect(try await harness.post(instance: object).status == 202)
        let study = try await harness.study(slices.study)
        #expect(Set(model.seenFrames) == Set((1...5).map { "\(sop)/\($0)" }) && model.seenFrames.count == 5)
        #expect(study["counts"] as? [String: Int] == ["received": 5, "processed": 5, "failed": 0, "skipped": 0, "queued": 0])
        let rows = try #require(study["slices"] as? [[String: Any]])
        #expect(rows.compactMap { $0["frameNumber"] as? Int } == [1, 2, 3, 4, 5])
        #expect(rows.compactMap { $0["position"] as? Double } == [10, 20, 30, 40, 50])
        let labels = try #require(study["labels"] as? [[String: Any]])
        let maxSlice = { (label: String) in labels.first { $0["label"] as? String == label }?["maxSlice"] as? [String: Any] }
        #expect(maxSlice("any")?["frameNumber"] as? Int == 4 && maxSlice("any")?["sopInstanceUID"] as? String == sop)
        #expect(maxSlice("epidural")?["frameNumber"] as? Int == 2)
        let series = try #require((study["series"] as? [[String: Any]])?.first)
        #expect(series["instances"] as? Int == 1 && series["slices"] as? Int == 5 && series["role"] as? String == "primary")
        let instance = try await harness.get("/v1/instances/\(sop)").object()
        #expect(instance["numberOfFrames"] as? Int == 5 && instance["status"] as? String == "done")
        let maxima = try #require(instance["probabilities"] as? [String: Double])
        #expect(abs(maxima["any"]! - 0.9) < 1e-6 && abs(maxima["epidural"]! - 0.7) < 1e-6, "the instance's maxima over its frames")
        let frames = try #require(instance["frames"] as? [[String: Any]])
        #expect(frames.compactMap { $0["frameNumber"] as? Int } == [1, 2, 3, 4, 5])
        #expect(frames.allSatisfy { $0["status"] as? String == "done" })
        #expect(try FileManager.default.contentsOfDirectory(atPath: harness.context.pipeline.spool.directory).isEmpty,
                "the spool file goes with the last frame")
        let again = try await harness.post(instance: object)
        #expect(again.status == 200)
        #expect(try again.object()["status"] as? String == "duplicate")
        #expect((try await harness.study(slices.study)["counts"] as? [String: Int])?["received"] == 5)
    }

    /// A STAT study, and one an operator moved ahead, run before a shorter study that came first.
    @Test(arguments: [true, false])
    func urgentStudiesRunFirst(byHeader: Bool) async throws {
        let harness = try ServiceHarness(maxBatch: 2)
        defer { harness.close() }
        let (short, long) = (Slices(), Slices())
        #expect(try await harness.post(instance: short.instance()).status == 202)
        let parts = (0..<4).map { long.instance(z: 5 * Double($0), priority: byHeader ? "STAT" : nil) }
        #expect(try await harness.stow(parts).status == 200)
        if !byHeader {
            let response = try await harness.request("PUT", "/v1/studies/\(long.study)/priority", token: .admin,
                                                     contentType: "application/json", body: Array(#"{"urgent": true}"#.utf8))
            #expect(response.status == 200)
        }
        let model = FakeModel()
        harness.context.pipeline.start(classify: model.classify)
        _ = try await harness.study(short.study)
        let longSOPs = try #require((try await harness.study(long.study)["slices"] as? [[String: Any]])?
            .compactMap { $0["sopInstanceUID"] as? String })
        #expect(Set(model.seen.prefix(4)) == Set(longSOPs), "the urgent study's four slices first")
        #expect(model.seen.count == 5)
    }

    @Test func aFailedForwardPassFailsItsSlicesAndTheNextBatchRuns() async throws {
        let model = FakeModel()
        model.failNext()
        let harness = try ServiceHarness(classify: model.classify)
        defer { harness.close() }
        let first = Slices()
        #expect(try await harness.post(instance: first.instance()).status == 202)
        let failed = try await harness.study(first.study)
        #expect((failed["counts"] as? [String: Int])?["failed"] == 1)
        let slice = try #require((failed["slices"] as? [[String: Any]])?.first)
        #expect(slice["status"] as? String == "failed")
        #expect((slice["error"] as? [String: Any])?["type"] as? String == "inference-error")
        let second = Slices()
        #expect(try await harness.post(instance: second.instance()).status == 202)
        #expect((try await harness.study(second.study)["counts"] as? [String: Int])?["processed"] == 1)
    }

    /// A study is complete once processed and quiet for the stable age; a late instance reopens it.
    @Test func aLateInstanceReopensACompleteStudy() async throws {
        let model = FakeModel()
        let harness = try ServiceHarness(stableAge: 10, classify: model.classify)
        defer { harness.close() }
        let slices = Slices()
        let processed: ([String: Any]) -> Bool = { ($0["counts"] as? [String: Int])?["queued"] == 0 }
        #expect(try await harness.post(instance: slices.instance(z: 0)).status == 202)
        #expect(try await harness.study(slices.study, until: processed)["status"] as? String == "partial")
        harness.clock.advance(9.9)
        #expect(try await harness.get("/v1/studies/\(slices.study)").object()["status"] as? String == "partial")
        harness.clock.advance(0.1)
        #expect(try await harness.get("/v1/studies/\(slices.study)").object()["status"] as? String == "complete")
        #expect(try await harness.post(instance: slices.instance(z: 5)).status == 202)
        let reopened = try await harness.study(slices.study, until: processed)
        #expect(reopened["status"] as? String == "partial")
        #expect(reopened["counts"] as? NSDictionary == ["received": 2, "processed": 2, "failed": 0, "skipped": 0, "queued": 0])
        harness.clock.advance(10)
        #expect(try await harness.get("/v1/studies/\(slices.study)").object()["status"] as? String == "complete")
    }

    /// Jobs acknowledged before a stop run after the next start; a spool file without a job
    /// (its upload crashed before the commit, so was never acknowledged) is removed.
    @Test func aRestartResumesQueuedJobsAndDropsOrphans() async throws {
        let before = try ServiceHarness()
        let slices = Slices()
        for z in 0..<3 { #expect(try await before.post(instance: slices.instance(z: 5 * Double(z))).status == 202) }
        #expect(before.context.pipeline.depth == 3)
        before.close(keep: true)
        let spool = before.context.configuration.spoolDirectory
        let orphan = spool + "/orphan.dcm"
        #expect(FileManager.default.createFile(atPath: orphan, contents: Data([1, 2, 3])))

        let model = FakeModel()
        let after = try ServiceHarness(directory: before.directory, classify: model.classify)
        defer { after.close() }
        #expect(!FileManager.default.fileExists(atPath: orphan))
        let study = try await after.study(slices.study)
        #expect((study["counts"] as? [String: Int])?["processed"] == 3)
        #expect(model.seen.count == 3)
        #expect(try FileManager.default.contentsOfDirectory(atPath: spool).isEmpty, "processed files are removed")
    }

    @Test func aStudyDeletedWhileQueuedDoesNotComeBack() async throws {
        let harness = try ServiceHarness()
        let slices = Slices()
        #expect(try await harness.post(instance: slices.instance()).status == 202)
        #expect(try await harness.request("DELETE", "/v1/studies/\(slices.study)", token: .admin).status == 204)
        harness.close(keep: true)
        let model = FakeModel()
        let after = try ServiceHarness(directory: harness.directory, classify: model.classify)
        defer { after.close() }
        try await Task.sleep(for: .milliseconds(100))
        #expect(model.seen.isEmpty)
        #expect(try await after.get("/v1/studies/\(slices.study)").problem == "404 study-not-found")
    }
}
