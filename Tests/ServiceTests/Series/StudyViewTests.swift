import Foundation
import Inference
@testable import Storage
import Testing

@testable import Service

/// Roles, the primary series, labels, assessability and warnings from stored rows, as a multi-series study arrives.
@Suite struct StudyViewTests {
    static let labels = ["any", "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"]
    static let thresholds = [Double](repeating: 0.5, count: 6)

    static func series(_ uid: String, number: Int?, original: Bool? = true, kernel: String? = nil, thickness: Double? = 5,
                       modality: String = "CT") -> SeriesRecord {
        SeriesRecord(studyInstanceUID: "9", seriesInstanceUID: uid,
                     details: SeriesDetails(seriesNumber: number, modality: modality, original: original, kernelClass: kernel,
                                            sliceThickness: thickness),
                     firstReceivedAt: 0)
    }

    /// `count` slices of a series at `spacing` mm, each with `any` = p (nil: still queued); `skip` makes them skipped.
    static func slices(_ series: String, count: Int, spacing: Double = 5, p: Float? = 0.1, skip: String? = nil,
                       failed: Bool = false) -> [InstanceRecord] {
        (0..<count).map { k in
            InstanceRecord(
                sopInstanceUID: "\(series).\(k)", studyInstanceUID: "9", seriesInstanceUID: series, sopClassUID: "1.2.840.10008.5.1.4.1.1.2",
                // Instance numbers that run against z, as some scanners write them.
                instanceNumber: count - k, position: Double(k) * spacing, receivedAt: 0,
                state: skip != nil ? .skipped : failed ? .failed : p == nil ? .queued : .done,
                probabilities: skip != nil || failed ? nil : p.map { [$0, 0, 0, 0, 0, 0] }, errorType: failed ? "x" : nil,
                errorDetail: nil, processedAt: nil, model: nil, skipReason: skip)
        }
    }

    func view(_ series: [SeriesRecord], _ instances: [InstanceRecord], rules: SeriesRules = .default) -> StudyView {
        StudyView(series: series, instances: instances, rules: rules, labels: Self.labels, thresholds: Self.thresholds)
    }

    func role(_ view: StudyView, _ uid: String) -> (StudyView.Role, String?) {
        let series = view.series.first { $0.record.seriesInstanceUID == uid }!
        return (series.role, series.reason)
    }

    @Test func aScannerStudyPicksTheSoftTissueFiveMillimetreSeries() {
        let study = view(
            [Self.series("scout", number: 1), Self.series("bone", number: 3, kernel: "sharp"),
             Self.series("soft", number: 2, kernel: "soft"), Self.series("thin", number: 4, kernel: "soft", thickness: 0.625),
             Self.series("sag", number: 5, original: false), Self.series("dose", number: 99, modality: "SR")],
            Self.slices("scout", count: 2, skip: "localizer") + Self.slices("bone", count: 30, p: 0.9)
                + Self.slices("soft", count: 30, p: 0.2) + Self.slices("thin", count: 200, spacing: 0.625, p: 0.3)
                + Self.slices("sag", count: 60, skip: "derived") + Self.slices("dose", count: 1, skip: "not-image"))
        #expect(study.primary?.record.seriesInstanceUID == "soft")
        #expect(role(study, "bone") == (.triaged, nil) && role(study, "thin") == (.triaged, nil))
        #expect(role(study, "scout") == (.skipped, "localizer") && role(study, "sag") == (.skipped, "derived"))
        #expect(role(study, "dose") == (.skipped, "not-image"))
        #expect(study.series.map(\.record.seriesInstanceUID) == ["scout", "soft", "bone", "thin", "sag", "dose"], "by series number")
        #expect(study.labels[0].probability == 0.2, "the study's result is the primary series' result, not the maximum of all")
        #expect(study.series.first { $0.record.seriesInstanceUID == "bone" }?.labels?[0].probability == 0.9)
        #expect(study.assessable && study.notAssessableReason == nil && study.warnings.isEmpty)
        #expect(study.summary == StudySummary(maxima: [0.2, 0, 0, 0, 0, 0], primarySeriesUID: "soft", assessable: true,
                                              notAssessableReason: nil))
        let primary = study.primary!
        #expect(primary.instances.map(\.position) == (0..<30).map { Double($0) * 5 }, "ordered along the normal, not by instance number")
        #expect(primary.labels?[0].maxSlice.map { primary.slices[$0].sopInstanceUID } == "soft.0")
    }

    @Test func onlyScoutsAndReformatsIsNotAssessable() {
        let study = view([Self.series("scout", number: 1), Self.series("cor", number: 5, original: false)],
                         Self.slices("scout", count: 2, skip: "localizer") + Self.slices("cor", count: 40, skip: "derived"))
        #expect(!study.assessable && study.notAssessableReason == "no-triageable-series" && study.primary == nil)
        #expect(study.labels.allSatisfy { $0.probability == nil })
        #expect(study.summary.maxima == nil && !study.summary.assessable)
    }

    @Test func thePrimaryCanChangeWhileTheStudyArrives() {
        let bone = Self.series("bone", number: 3, kernel: "sharp")
        let early = view([bone], Self.slices("bone", count: 30, p: 0.9))
        #expect(early.primary?.record.seriesInstanceUID == "bone" && early.labels[0].probability == 0.9)
        let later = view([bone, Self.series("soft", number: 2, kernel: "soft")],
                         Self.slices("bone", count: 30, p: 0.9) + Self.slices("soft", count: 30, p: nil))
        #expect(later.primary?.record.seriesInstanceUID == "soft")
        #expect(later.labels[0].probability == nil && later.summary.maxima == nil, "no result until the primary series has one")
    }

    @Test(arguments: [
        // original over derived, before anything else
        ([series("a", number: 1, original: false, kernel: "soft"), series("b", number: 2, original: true, kernel: "sharp")], "b"),
        // then thickness nearest 5 mm
        ([series("a", number: 1, thickness: 1.25), series("b", number: 2, thickness: 3)], "b"),
        // unknown kernel between soft and sharp
        ([series("a", number: 1, kernel: "sharp"), series("b", number: 2, kernel: nil)], "b"),
        // all else equal, the lower series number
        ([series("b", number: 2), series("a", number: 7)], "b"),
    ] as [([SeriesRecord], String)])
    func ranking(series: [SeriesRecord], expected: String) {
        let study = view(series, series.flatMap { Self.slices($0.seriesInstanceUID, count: 25) })
        #expect(study.primary?.record.seriesInstanceUID == expected)
    }

    @Test func moreCoverageWins() {
        let study = view([Self.series("short", number: 1), Self.series("long", number: 2)],
                         Self.slices("short", count: 10) + Self.slices("long", count: 32))
        #expect(study.primary?.record.seriesInstanceUID == "long")
    }

    @Test func aSeriesWhoseSlicesAllFailedIsNotPrimary() {
        let study = view([Self.series("a", number: 1), Self.series("b", number: 2, kernel: "sharp")],
                         Self.slices("a", count: 30, failed: true) + Self.slices("b", count: 30, p: 0.7))
        #expect(role(study, "a") == (.skipped, "failed") && study.primary?.record.seriesInstanceUID == "b")
    }

    @Test func tooFewSlicesFollowsTheRules() throws {
        var rules = SeriesRules.default
        rules.minimumSlices = 5
        let study = view([Self.series("a", number: 1)], Self.slices("a", count: 3), rules: rules)
        #expect(role(study, "a") == (.skipped, "too-few-slices") && !study.assessable)
    }

    @Test func coverageWarnings() {
        func warnings(_ positions: [Double?]) -> [String] {
            StudyView.coverageWarnings(positions.enumerated().map {
                SliceResult(sopInstanceUID: "\($0.offset)", instanceNumber: nil, position: $0.element, probabilities: nil)
            }, minimumSlices: 4)
        }
        #expect(warnings([0, 5, 10, 15, 20]) == [])
        #expect(warnings([0, 5, 10]) == ["few-slices"])
        #expect(warnings([0, 5, 10, 25, 30]) == ["gap"])
        #expect(warnings([0, 5, 5, 10, 15]) == ["duplicate-positions"])
        #expect(warnings([0, 5, 10, 15, nil]) == ["missing-positions"])
    }

    @Test func instancesWithoutASeriesRowStillCount() {
        let study = view([], Self.slices("old", count: 3, p: 0.8))
        #expect(study.primary?.record.seriesInstanceUID == "old" && study.labels[0].probability == 0.8)
    }

    /// Two stacks with different gantry tilts in one series: a warning, not a skip (each slice's result stands).
    @Test func slicePlanesThatDifferAreAWarning() {
        func tilted(_ degrees: Double) -> [Double] { [0, -sin(degrees * .pi / 180), cos(degrees * .pi / 180)] }
        func study(_ normals: [[Double]]) -> StudyView {
            var slices = Self.slices("s", count: normals.count)
            for k in slices.indices { slices[k].normal = normals[k] }
            var rules = SeriesRules.default
            rules.coverageMinimumSlices = 1
            return view([Self.series("s", number: 1)], slices, rules: rules)
        }
        #expect(study(Array(repeating: tilted(15), count: 6)).warnings == [], "one tilt throughout is fine")
        #expect(study(Array(repeating: tilted(0), count: 3) + [tilted(1.5)]).warnings == [], "within 2 degrees")
        let mixed = study(Array(repeating: tilted(0), count: 3) + Array(repeating: tilted(12), count: 3))
        #expect(mixed.warnings == ["mixed-orientation"] && mixed.primary != nil)
        #expect(study(Array(repeating: [0, 0, -1], count: 4)).warnings == [], "a reversed normal is the same plane")
    }
}
