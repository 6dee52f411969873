import DICOM
import Foundation

/// Which instances the model sees, decided from the header alone, and the
/// settings that rank a study's series and judge the primary one's coverage.
/// Rules run in order; the first whose condition holds decides. An instance
/// no rule matches is skipped as `no-rule`. The default rules
/// (`SeriesRules.defaultJSON`, also `docs/series-rules.json`) are for
/// non-contrast head CT; `--series-rules FILE` replaces them.
struct SeriesRules: Sendable {
    var name: String
    var rules: [Rule]
    /// Largest angle between the slice normal and the patient's head-foot axis that is still axial (tilted gantries are).
    var axialToleranceDegrees: Double = 20
    /// A series with fewer triageable slices is skipped as `too-few-slices`.
    var minimumSlices: Int = 1
    /// The primary series with fewer slices gets a `few-slices` warning.
    var coverageMinimumSlices: Int = 20
    /// The slice thickness the model was trained on (RSNA 2019: 5 mm); the primary series is the nearest.
    var preferredSliceThickness: Double = 5
    /// ConvolutionKernel patterns: soft-tissue kernels rank before unknown ones, sharp (bone) kernels after.
    var softKernels: Pattern?
    var sharpKernels: Pattern?

    struct Rule: Sendable {
        var name: String
        var when: Condition
        /// nil: triage; otherwise the skip reason's slug.
        var skip: String?
    }

    indirect enum Condition: Sendable {
        case all([Condition])
        case any([Condition])
        case not(Condition)
        case modality([String])
        case sopClass([String])
        /// Holds when ImageType carries any of these values.
        case imageType([String])
        case orientation([Orientation])
        case sliceThickness(min: Double?, max: Double?)
        case convolutionKernel(Pattern)
        case seriesDescription(Pattern)
        case bodyPartExamined(Pattern)
        case hasPixelData(Bool)
        /// Whether the pixel decoder can read the image (single-frame greyscale, a supported transfer syntax).
        case decodable(Bool)
    }

    enum Orientation: String, Sendable, CaseIterable {
        case axial, coronal, sagittal, oblique, unknown
    }

    enum Decision: Sendable, Equatable {
        case triage
        case skip(reason: String)
    }

    func decide(_ header: InstanceHeader) -> Decision {
        for rule in rules where holds(rule.when, header) {
            return rule.skip.map { .skip(reason: $0) } ?? .triage
        }
        return .skip(reason: "no-rule")
    }

    func orientation(_ header: InstanceHeader) -> Orientation {
        guard let n = header.sliceNormal else { return .unknown }
        let limit = cos(axialToleranceDegrees * .pi / 180)
        if abs(n[2]) >= limit { return .axial }
        if abs(n[1]) >= limit { return .coronal }
        if abs(n[0]) >= limit { return .sagittal }
        return .oblique
    }

    /// `soft`, `sharp` or nil, for ranking series.
    func kernelClass(_ kernel: String?) -> String? {
        guard let kernel else { return nil }
        if sharpKernels?.matches(kernel) ?? false { return "sharp" }
        if softKernels?.matches(kernel) ?? false { return "soft" }
        return nil
    }

    private func holds(_ condition: Condition, _ h: InstanceHeader) -> Bool {
        switch condition {
        case .all(let conditions): conditions.allSatisfy { holds($0, h) }
        case .any(let conditions): conditions.contains { holds($0, h) }
        case .not(let inner): !holds(inner, h)
        case .modality(let values): h.modality.map { values.contains($0.uppercased()) } ?? false
        case .sopClass(let values): h.sopClassUID.map(values.contains) ?? false
        case .imageType(let values): h.imageType.contains(where: values.contains)
        case .orientation(let values): values.contains(orientation(h))
        case .sliceThickness(let low, let high):
            h.sliceThickness.map { t in (low.map { t >= $0 } ?? true) && (high.map { t <= $0 } ?? true) } ?? false
        case .convolutionKernel(let pattern): h.convolutionKernel.map(pattern.matches) ?? false
        case .seriesDescription(let pattern): h.seriesDescription.map(pattern.matches) ?? false
        case .bodyPartExamined(let pattern): h.bodyPartExamined.map(pattern.matches) ?? false
        case .hasPixelData(let value): h.hasPixelData == value
        case .decodable(let value): (h.hasPixelData && h.unsupportedImage == nil) == value
        }
    }
}

/// A case-insensitive regular expression searched anywhere in a value.
struct Pattern: @unchecked Sendable {
    // @unchecked: a compiled Regex is immutable and only read after it is built.
    let source: String
    private let regex: Regex<AnyRegexOutput>

    init(_ source: String) throws {
        self.source = source
        regex = try Regex(source).ignoresCase()
    }

    func matches(_ value: String) -> Bool { (try? regex.firstMatch(in: value)) != nil }
}
