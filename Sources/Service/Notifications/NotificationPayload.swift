import Inference
import NeuralNet
import Storage

/// The JSON body of a critical-finding notification (openapi.yaml, `Notification`):
/// what a receiver needs to page someone without calling back first.
enum NotificationPayload {
    /// `labels` are the study's summaries; only those called positive go in,
    /// each with the slice that gives its maximum (the key slice to open).
    static func body(
        eventID: String, study: StudyRecord, labels: [LabelSummary], slices: [SliceResult], update: Bool,
        link: String, model: JSONValue, createdAt: Double
    ) -> [UInt8] {
        let positive = labels.filter { $0.positive == true }
        return JSONValue.object([
            ("id", .string(eventID)),
            ("event", .string(update ? "study.positive.updated" : "study.positive")),
            ("createdAt", Representation.time(createdAt)),
            ("studyInstanceUID", .string(study.studyInstanceUID)),
            ("link", .string(link)),
            ("positiveLabels", .array(positive.map { label in
                .object([
                    ("label", .string(label.label)), ("probability", .float(label.probability)),
                    ("threshold", .double(label.threshold)), ("slicesAboveThreshold", .int(label.slicesAboveThreshold)),
                    ("keySlice", label.maxSlice.map { slices[$0] }.map {
                        .object([("sopInstanceUID", .string($0.sopInstanceUID)), ("instanceNumber", .int($0.instanceNumber))])
                    } ?? .null),
                ])
            })),
            ("counts", Representation.counts(study)),
            ("model", model),
        ]).serialized()
    }
}
