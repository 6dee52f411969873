import Foundation

/// Readable renderings of the service's study and worklist JSON. The model line is always
/// printed: a reader must never see probabilities without the model's provenance.

func modelLine(_ model: [String: Any]?) -> String {
    guard let model else { return "model: (not given by the server)" }
    let name = model["name"] as? String ?? "?"
    let version = model["version"] as? String ?? "?"
    let architecture = model["architecture"] as? String ?? "?"
    let clinical = model["clinicalUse"] as? Bool ?? false
    let notice = (model["notice"] as? String).flatMap { $0.isEmpty ? nil : $0 }
        ?? (clinical ? "marked fit for clinical use" : "NOT marked fit for clinical use")
    return "model: \(name) \(version) (\(architecture)). Notice: \(notice)"
}

func studyTable(_ study: [String: Any]) -> String {
    let counts = study["counts"] as? [String: Any] ?? [:]
    func count(_ key: String) -> String { (counts[key] as? NSNumber).map { "\($0.intValue)" } ?? "?" }
    var lines = [
        "study:   \(study["studyInstanceUID"] as? String ?? "?")",
        "status:  \(study["status"] as? String ?? "?")   received \(count("received")), processed \(count("processed")), failed \(count("failed")), queued \(count("queued"))",
        "last received: \(study["lastReceivedAt"] as? String ?? "?")",
        "",
    ]
    var rows = [["label", "probability", "threshold", "call", "slices>=thr", "key slice"]]
    for label in study["labels"] as? [[String: Any]] ?? [] {
        let probability = (label["probability"] as? NSNumber).map { String(format: "%.3f", $0.doubleValue) } ?? "-"
        let threshold = (label["threshold"] as? NSNumber).map { String(format: "%.3f", $0.doubleValue) } ?? "-"
        let call: String
        switch label["positive"] {
        case let positive as Bool: call = positive ? "POSITIVE" : "negative"
        default: call = "-"
        }
        let above = (label["slicesAboveThreshold"] as? NSNumber).map { "\($0.intValue)" } ?? "-"
        var slice = "-"
        if let maxSlice = label["maxSlice"] as? [String: Any] {
            let number = (maxSlice["instanceNumber"] as? NSNumber).map { "#\($0.intValue) " } ?? ""
            // A multi-frame instance's slice is one of its frames; a viewer needs both to open it.
            let frame = (maxSlice["frameNumber"] as? NSNumber).flatMap { $0.intValue > 1 ? " frame \($0.intValue)" : nil } ?? ""
            slice = number + (maxSlice["sopInstanceUID"] as? String ?? "?") + frame
        }
        rows.append([label["label"] as? String ?? "?", probability, threshold, call, above, slice])
    }
    lines += alignedRows(rows)
    lines += ["", modelLine(study["model"] as? [String: Any])]
    return lines.joined(separator: "\n")
}

func worklistTable(_ studies: [[String: Any]], model: [String: Any]?) -> String {
    var rows = [["study", "status", "any", "positive labels", "received", "processed", "last received"]]
    for study in studies {
        let counts = study["counts"] as? [String: Any] ?? [:]
        let any = (study["anyProbability"] as? NSNumber).map { String(format: "%.3f", $0.doubleValue) } ?? "-"
        let labels = (study["positiveLabels"] as? [String]) ?? []
        rows.append([
            study["studyInstanceUID"] as? String ?? "?", study["status"] as? String ?? "?", any,
            labels.isEmpty ? "-" : labels.joined(separator: ","),
            (counts["received"] as? NSNumber).map { "\($0.intValue)" } ?? "?",
            (counts["processed"] as? NSNumber).map { "\($0.intValue)" } ?? "?",
            study["lastReceivedAt"] as? String ?? "?",
        ])
    }
    var lines = alignedRows(rows)
    lines.append("\(studies.count) \(studies.count == 1 ? "study" : "studies")")
    lines.append(modelLine(model))
    return lines.joined(separator: "\n")
}

/// Left-aligned columns separated by two spaces, trailing spaces trimmed.
func alignedRows(_ rows: [[String]]) -> [String] {
    let columns = rows.map(\.count).max() ?? 0
    var widths = [Int](repeating: 0, count: columns)
    for row in rows {
        for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) }
    }
    return rows.map { row in
        var line = ""
        for (index, cell) in row.enumerated() {
            line += index == row.count - 1 ? cell : cell.padding(toLength: widths[index] + 2, withPad: " ", startingAt: 0)
        }
        while line.hasSuffix(" ") { line.removeLast() }
        return line
    }
}
