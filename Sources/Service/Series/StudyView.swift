import Foundation
import Inference
import Storage

/// The one place that turns a study's stored rows into what it means: each
/// series' role and result, the primary series, the study's labels (the
/// primary series' result), assessability and coverage warnings. The study
/// resource, the worklist's stored summary and the notifications all read it.
struct StudyView: Sendable {
    enum Role: String, Sendable {
        case primary, triaged, skipped
    }

    struct Series: Sendable {
        var record: SeriesRecord
        /// Every instance of the series, in anatomical order.
        var instances: [InstanceRecord]
        var role: Role
        /// Why the series is skipped (a skip reason slug); nil otherwise.
        var reason: String?
        /// The triageable slices, in anatomical order, and the per-label result over them (triaged series only).
        var slices: [SliceResult]
        var labels: [LabelSummary]?
        var warnings: [String]
    }

    var series: [Series]
    var primary: Series? { series.first { $0.role == .primary } }
    var labels: [LabelSummary]
    var assessable: Bool { primary != nil }
    /// Why nothing in the study can be triaged; nil while it is assessable.
    var notAssessableReason: String? { assessable ? nil : "no-triageable-series" }
    var warnings: [String] { primary?.warnings ?? [] }

    var summary: StudySummary {
        let maxima = labels.allSatisfy { $0.probability != nil } ? labels.map { $0.probability! } : nil
        return StudySummary(maxima: maxima, primarySeriesUID: primary?.record.seriesInstanceUID, assessable: assessable,
                            notAssessableReason: notAssessableReason)
    }

    init(series records: [SeriesRecord], instances: [InstanceRecord], rules: SeriesRules, labels names: [String],
         thresholds: [Double]) {
        let bySeries = Dictionary(grouping: instances, by: \.seriesInstanceUID)
        // A series row can be missing for an instance stored before series were recorded; make one.
        var records = records
        for uid in bySeries.keys.sorted() where !records.contains(where: { $0.seriesInstanceUID == uid }) {
            let first = bySeries[uid]!.map(\.receivedAt).min() ?? 0
            records.append(SeriesRecord(studyInstanceUID: bySeries[uid]![0].studyInstanceUID, seriesInstanceUID: uid,
                                        details: SeriesDetails(), firstReceivedAt: first))
        }
        var views: [Series] = records.map { record in
            let members = Self.ordered(bySeries[record.seriesInstanceUID] ?? [])
            let triageable = members.filter { $0.state != .skipped }
            let slices = triageable.map(Self.sliceResult)
            var view = Series(record: record, instances: members, role: .triaged, reason: nil, slices: slices, labels: nil,
                              warnings: [])
            if triageable.isEmpty {
                view.role = .skipped
                view.reason = Self.commonest(members.compactMap(\.skipReason)) ?? "no-instances"
            } else if triageable.count < rules.minimumSlices {
                view.role = .skipped
                view.reason = "too-few-slices"
            } else if triageable.allSatisfy({ $0.state == .failed }) {
                view.role = .skipped
                view.reason = "failed"
            } else {
                view.labels = StudyAggregate.summarize(slices, labels: names, thresholds: thresholds)
                view.warnings = Self.coverageWarnings(slices, minimumSlices: rules.coverageMinimumSlices)
                if Self.mixedOrientation(triageable.compactMap(\.normal)) { view.warnings.append("mixed-orientation") }
            }
            return view
        }
        if let best = views.indices.filter({ views[$0].role == .triaged }).min(by: {
            Self.rank(views[$0], rules) < Self.rank(views[$1], rules)
        }) {
            views[best].role = .primary
        }
        series = views.sorted { a, b in
            switch (a.record.details.seriesNumber, b.record.details.seriesNumber) {
            case let (x?, y?) where x != y: x < y
            case (.some, nil): true
            case (nil, .some): false
            default: a.record.seriesInstanceUID < b.record.seriesInstanceUID
            }
        }
        labels = series.first { $0.role == .primary }?.labels
            ?? names.indices.map { LabelSummary(label: names[$0], threshold: thresholds[$0], probability: nil, maxSlice: nil,
                                                slicesAboveThreshold: 0) }
    }

    /// The primary series is the least of these, in order: original before
    /// derived, soft-tissue kernel before unknown before sharp (bone), slice
    /// thickness nearest the model's, more coverage along the normal, more
    /// slices, then the lower series number and UID.
    struct Rank: Comparable {
        var original: Int
        var kernel: Int
        var thicknessDistance: Double
        var negativeExtent: Double
        var negativeCount: Int
        var seriesNumber: Int
        var uid: String

        static func < (a: Rank, b: Rank) -> Bool {
            (a.original, a.kernel, a.thicknessDistance, a.negativeExtent, a.negativeCount, a.seriesNumber)
                < (b.original, b.kernel, b.thicknessDistance, b.negativeExtent, b.negativeCount, b.seriesNumber)
                || ((a.original, a.kernel, a.thicknessDistance, a.negativeExtent, a.negativeCount, a.seriesNumber)
                    == (b.original, b.kernel, b.thicknessDistance, b.negativeExtent, b.negativeCount, b.seriesNumber)
                    && a.uid < b.uid)
        }
    }

    static func rank(_ series: Series, _ rules: SeriesRules) -> Rank {
        let details = series.record.details
        let positions = series.slices.compactMap(\.position)
        return Rank(
            original: details.original.map { $0 ? 0 : 2 } ?? 1,
            kernel: details.kernelClass == "soft" ? 0 : details.kernelClass == "sharp" ? 2 : 1,
            thicknessDistance: details.sliceThickness.map { abs($0 - rules.preferredSliceThickness) } ?? .infinity,
            negativeExtent: -((positions.max() ?? 0) - (positions.min() ?? 0)),
            negativeCount: -series.slices.count,
            seriesNumber: details.seriesNumber ?? .max,
            uid: series.record.seriesInstanceUID)
    }

    /// Coverage problems of a series' slices: too few, positions missing or repeated, gaps of more than twice the median spacing.
    static func coverageWarnings(_ slices: [SliceResult], minimumSlices: Int) -> [String] {
        var warnings: [String] = []
        if slices.count < minimumSlices { warnings.append("few-slices") }
        let positions = slices.compactMap(\.position)
        if positions.count < slices.count { warnings.append("missing-positions") }
        let spacings = zip(positions.dropFirst(), positions).map { $0 - $1 }
        if spacings.contains(where: { $0 < 0.01 }) { warnings.append("duplicate-positions") }
        let distinct = spacings.filter { $0 >= 0.01 }.sorted()
        if distinct.count >= 2 {
            let median = distinct[distinct.count / 2]
            if distinct.last! > 2 * median + 0.01 { warnings.append("gap") }
        }
        return warnings
    }

    /// Whether the slice planes differ by more than 2 degrees (two stacks with different gantry tilts in one
    /// series, say): positions are then measured along different normals, so their order and the gaps above
    /// mean little. Each slice's probabilities stay valid, so this warns rather than skips.
    static func mixedOrientation(_ normals: [[Double]]) -> Bool {
        guard let first = normals.first else { return false }
        let limit = cos(2 * Double.pi / 180)
        return normals.contains { n in abs(n[0] * first[0] + n[1] * first[1] + n[2] * first[2]) < limit }
    }

    static func sliceResult(_ record: InstanceRecord) -> SliceResult {
        SliceResult(sopInstanceUID: record.sopInstanceUID, frameNumber: record.frameNumber, instanceNumber: record.instanceNumber,
                    position: record.position, probabilities: record.probabilities)
    }

    static func ordered(_ instances: [InstanceRecord]) -> [InstanceRecord] {
        let bySlice = Dictionary(instances.map { (SliceKey($0.sopInstanceUID, $0.frameNumber), $0) }, uniquingKeysWith: { a, _ in a })
        return StudyAggregate.ordered(instances.map(sliceResult)).map { bySlice[SliceKey($0.sopInstanceUID, $0.frameNumber)]! }
    }

    private struct SliceKey: Hashable {
        var sop: String
        var frame: Int
        init(_ sop: String, _ frame: Int) { (self.sop, self.frame) = (sop, frame) }
    }

    /// The most frequent value, ties to the alphabetically first.
    static func commonest(_ values: [String]) -> String? {
        let counts = Dictionary(values.map { ($0, 1) }, uniquingKeysWith: +)
        return counts.max { a, b in a.value < b.value || (a.value == b.value && a.key > b.key) }?.key
    }
}

extension StudyView {
    /// Reads the study's series and instances; call inside the transaction that changed them.
    static func load(_ db: Storage.Connection, study uid: String, rules: SeriesRules, labels: [String], thresholds: [Double])
        throws -> StudyView
    {
        StudyView(series: try ResultStore.series(db, study: uid), instances: try ResultStore.instances(db, study: uid), rules: rules,
                  labels: labels, thresholds: thresholds)
    }
}
