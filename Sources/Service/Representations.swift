import Foundation
import Inference
import NeuralNet
import Storage

/// The JSON shapes of openapi.yaml, built from store records.
enum Representation {
    // Value types: one of each serves every thread, instead of a formatter object per call.
    private static let withFraction = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
    private static let withoutFraction = Date.ISO8601FormatStyle()

    static func time(_ seconds: Double) -> JSONValue {
        .string(withFraction.format(Date(timeIntervalSince1970: seconds)))
    }

    /// Parses RFC 3339 with or without fractional seconds.
    static func parseTime(_ text: String) -> Double? {
        ((try? withFraction.parse(text)) ?? (try? withoutFraction.parse(text)))?.timeIntervalSince1970
    }

    static func model(_ manifest: Manifest) -> JSONValue {
        let provenance = manifest.provenance
        let notice: String =
            if provenance.clinicalUse { "" }
            else if provenance.syntheticData {
                "Trained on synthetic data, not on patients; not for clinical use. Provenance: \(provenance.trainedOn)."
            } else { "Not validated for clinical use. Provenance: \(provenance.trainedOn)." }
        return .object([
            ("name", .string(manifest.name)), ("version", .string(manifest.version)),
            ("architecture", .string(manifest.architecture.rawValue)), ("clinicalUse", .bool(provenance.clinicalUse)),
            ("trainedOn", .string(provenance.trainedOn)), ("notice", .string(notice)),
        ])
    }

    static func probabilities(_ p: [Float]?) -> JSONValue {
        guard let p else { return .null }
        return .object(zip(Manifest.labels, p).map { ($0, .float($1)) })
    }

    static func state(_ state: InstanceState) -> String {
        switch state {
        case .queued: "queued"
        case .done: "done"
        case .failed: "failed"
        case .skipped: "skipped"
        }
    }

    static func error(_ record: InstanceRecord) -> JSONValue {
        guard record.state == .failed else { return .null }
        return .object([("type", .string(record.errorType ?? "unknown")), ("detail", .string(record.errorDetail ?? ""))])
    }

    static func counts(_ study: StudyRecord) -> JSONValue {
        .object([
            ("received", .int(study.received)), ("processed", .int(study.processed)),
            ("failed", .int(study.failed)), ("skipped", .int(study.skipped)), ("queued", .int(study.queued)),
        ])
    }

    /// An instance from its frames' rows (one for a single-frame instance): the top level is the whole
    /// object (status queued while any frame is, probabilities the per-label maxima over its frames, the
    /// first failed frame's error when none has a result), `frames` each slice.
    static func instance(_ frames: [InstanceRecord], model: JSONValue) -> JSONValue {
        let first = frames[0]
        let done = frames.compactMap(\.probabilities)
        let maxima = done.isEmpty ? nil : done.dropFirst().reduce(done[0]) { zip($0, $1).map { max($0, $1) } }
        let status: InstanceState =
            if frames.contains(where: { $0.state == .queued }) { .queued }
            else if !done.isEmpty { .done }
            else if frames.contains(where: { $0.state == .failed }) { .failed }
            else { .skipped }
        return .object([
            ("sopInstanceUID", .string(first.sopInstanceUID)), ("studyInstanceUID", .string(first.studyInstanceUID)),
            ("seriesInstanceUID", .string(first.seriesInstanceUID)), ("instanceNumber", .int(first.instanceNumber)),
            ("position", .double(first.position)), ("receivedAt", time(first.receivedAt)),
            ("status", .string(state(status))), ("probabilities", probabilities(maxima)),
            ("error", status == .failed ? error(frames.first { $0.state == .failed }!) : .null),
            ("skipReason", .string(first.skipReason)),
            ("numberOfFrames", .int(frames.count)),
            ("frames", .array(frames.map { frame in
                .object([
                    ("frameNumber", .int(frame.frameNumber)), ("position", .double(frame.position)),
                    ("status", .string(state(frame.state))), ("probabilities", probabilities(frame.probabilities)),
                    ("error", error(frame)),
                ])
            })),
            ("model", model),
        ])
    }

    /// The slice a label's maximum comes from: the instance and, for a multi-frame one, its frame.
    static func slice(_ slice: SliceResult) -> JSONValue {
        .object([("sopInstanceUID", .string(slice.sopInstanceUID)), ("frameNumber", .int(slice.frameNumber)),
                 ("instanceNumber", .int(slice.instanceNumber))])
    }

    /// Where a study stands, from its counts (skipped instances have nothing left to do).
    static func status(_ study: StudyRecord, now: Double, stableAge: Double) -> StudyStatus {
        StudyStatus.of(received: study.received, processed: study.finished, lastReceivedAt: study.lastReceivedAt, now: now,
                       stableAge: stableAge)
    }

    /// The study's identifying attributes; PHI, so only in answers to `read`/`admin` callers.
    static func details(_ study: StudyRecord) -> [(String, JSONValue)] {
        let d = study.details
        return [
            ("accessionNumber", .string(d.accessionNumber)), ("patientID", .string(d.patientID)),
            ("patientName", .string(d.patientName)), ("studyDate", .string(d.studyDate)), ("studyTime", .string(d.studyTime)),
            ("studyDescription", .string(d.studyDescription)), ("institutionName", .string(d.institutionName)),
        ]
    }

    static func labels(_ labels: [LabelSummary], slices: [SliceResult]) -> JSONValue {
        .array(labels.map { label in
            .object([
                ("label", .string(label.label)), ("probability", .float(label.probability)),
                ("threshold", .double(label.threshold)), ("positive", .bool(label.positive)),
                ("slicesAboveThreshold", .int(label.slicesAboveThreshold)),
                ("maxSlice", label.maxSlice.map { slice(slices[$0]) } ?? .null),
            ])
        })
    }

    static func study(_ study: StudyRecord, status: StudyStatus, view: StudyView, model: JSONValue, stableAge: Double) -> JSONValue {
        let primarySlices = view.primary?.slices ?? []
        return .object([
            ("studyInstanceUID", .string(study.studyInstanceUID)),
            ("status", .string(status.rawValue)),
            ("assessable", .bool(view.assessable)),
            ("notAssessableReason", .string(view.notAssessableReason)),
            ("primarySeriesInstanceUID", .string(view.primary?.record.seriesInstanceUID)),
            ("urgent", .bool(study.urgent)),
        ] + details(study) + [
            ("counts", counts(study)),
            ("firstReceivedAt", time(study.firstReceivedAt)), ("lastReceivedAt", time(study.lastReceivedAt)),
            ("stableAfterSeconds", .double(stableAge)),
            ("labels", labels(view.labels, slices: primarySlices)),
            ("warnings", .array(view.warnings.map { .string($0) })),
            ("series", .array(view.series.map { series in
                .object([
                    ("seriesInstanceUID", .string(series.record.seriesInstanceUID)),
                    ("seriesNumber", .int(series.record.details.seriesNumber)),
                    ("modality", .string(series.record.details.modality)),
                    ("instances", .int(Set(series.instances.map(\.sopInstanceUID)).count)),
                    ("slices", .int(series.instances.count)),
                    ("role", .string(series.role.rawValue)),
                    ("reason", .string(series.reason)),
                    ("labels", series.labels.map { labels($0, slices: series.slices) } ?? .null),
                    ("warnings", .array(series.warnings.map { .string($0) })),
                ])
            })),
            ("slices", .array(view.series.flatMap(\.instances).map { record in
                .object([
                    ("sopInstanceUID", .string(record.sopInstanceUID)), ("frameNumber", .int(record.frameNumber)),
                    ("seriesInstanceUID", .string(record.seriesInstanceUID)),
                    ("instanceNumber", .int(record.instanceNumber)), ("position", .double(record.position)),
                    ("status", .string(state(record.state))), ("probabilities", probabilities(record.probabilities)),
                    ("error", error(record)), ("skipReason", .string(record.skipReason)),
                ])
            })),
            ("model", model),
        ])
    }

    static func summary(_ study: StudyRecord, manifest: Manifest, now: Double, stableAge: Double) -> JSONValue {
        let positive = study.maxima.map { Double($0[0]) >= manifest.thresholds[0] }
        let positiveLabels = study.maxima.map { maxima in
            manifest.labels.indices.filter { Double(maxima[$0]) >= manifest.thresholds[$0] }.map { manifest.labels[$0] }
        } ?? []
        return .object([
            ("studyInstanceUID", .string(study.studyInstanceUID)),
            ("status", .string(status(study, now: now, stableAge: stableAge).rawValue)),
            ("assessable", .bool(study.assessable ?? false)), ("notAssessableReason", .string(study.notAssessableReason)),
            ("primarySeriesInstanceUID", .string(study.primarySeriesUID)),
            ("urgent", .bool(study.urgent)),
        ] + details(study) + [
            ("anyProbability", .float(study.maxima?[0])), ("positive", .bool(positive)),
            ("positiveLabels", .array(positiveLabels.map { .string($0) })), ("counts", counts(study)),
            ("firstReceivedAt", time(study.firstReceivedAt)), ("lastReceivedAt", time(study.lastReceivedAt)),
        ])
    }
}
