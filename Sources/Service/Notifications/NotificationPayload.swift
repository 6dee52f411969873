import Inference
import NeuralNet
import Storage

/// The JSON body of a notification (openapi.yaml, `Notification`): what a
/// receiver needs to page someone, or to tell a radiologist to read a study
/// without help, without calling back first.
enum NotificationPayload {
    enum Event: String {
        case positive = "study.positive"
        case positiveUpdated = "study.positive.updated"
        /// Complete, and no series the model could assess: never a silent negative.
        case notAssessable = "study.not_assessable"
    }

    /// Only labels called positive go in, each with the slice of the primary
    /// series that gives its maximum (the key slice to open).
    static func body(
        eventID: String, event: Event, study: StudyRecord, view: StudyView, link: String, model: JSONValue, createdAt: Double
    ) -> [UInt8] {
        let slices = view.primary?.slices ?? []
        let positive = view.labels.filter { $0.positive == true }
        return JSONValue.object([
            ("id", .string(eventID)),
            ("event", .string(event.rawValue)),
            ("createdAt", Representation.time(createdAt)),
            ("studyInstanceUID", .string(study.studyInstanceUID)),
            ("link", .string(link)),
            ("assessable", .bool(view.assessable)),
            ("notAssessableReason", .string(view.notAssessableReason)),
            ("primarySeriesInstanceUID", .string(view.primary?.record.seriesInstanceUID)),
            ("positiveLabels", .array(positive.map { label in
                .object([
                    ("label", .string(label.label)), ("probability", .float(label.probability)),
                    ("threshold", .double(label.threshold)), ("slicesAboveThreshold", .int(label.slicesAboveThreshold)),
                    ("keySlice", label.maxSlice.map { Representation.slice(slices[$0]) } ?? .null),
                ])
            })),
            ("counts", Representation.counts(study)),
            ("model", model),
        ]).serialized()
    }
}
