import DICOM
import Foundation
import NeuralNet
import Storage

/// A study's current result as the TID 1500 structured report the service writes into the study
/// (served at `GET /v1/studies/{uid}/report`). Pure: the same stored result always gives the same
/// object, UIDs and times included, so a resend replaces rather than duplicates.
enum StudyReport {
    static let seriesNumber = 9901
    static let manufacturer = "ich-triage (open source)"

    /// The result version: slices with an outcome. A late slice makes a new instance in the same series.
    static func version(_ study: StudyRecord) -> Int { study.processed }

    static func make(study: StudyRecord, view: StudyView, manifest: Manifest, deviceName: String) -> StructuredReport {
        let modelID = "\(manifest.name)@\(manifest.version)"
        let version = version(study)
        let uid = study.studyInstanceUID
        let primary = view.primary
        let triaged = primary?.instances.filter { $0.state != .skipped } ?? []
        let multiFrame = Set(Dictionary(grouping: triaged, by: \.sopInstanceUID).filter { $0.value.count > 1 }.keys)
        let findings: [StructuredReport.Finding] = primary == nil ? [] : view.labels.compactMap { label in
            guard let probability = label.probability else { return nil }
            let key = label.maxSlice.map { index in
                let record = triaged[index]
                return ImageReference(seriesInstanceUID: record.seriesInstanceUID, sopClassUID: record.sopClassUID,
                                      sopInstanceUID: record.sopInstanceUID,
                                      frame: multiFrame.contains(record.sopInstanceUID) ? record.frameNumber : nil)
            }
            return StructuredReport.Finding(
                trackingIdentifier: "ICH triage \(label.label)",
                trackingUID: DerivedUID.make("ich-triage", "finding", uid, modelID, String(version), label.label),
                finding: ReportCodes.finding(label.label), present: Double(probability) >= label.threshold,
                probability: decimal(probability), key: key)
        }
        var comments = ["AI triage aid (\(modelID)); not a diagnosis. Thresholds: "
            + view.labels.map { "\($0.label) \(decimal(Float($0.threshold)))" }.joined(separator: ", ") + "."]
        if !manifest.provenance.clinicalUse {
            comments.append(manifest.provenance.syntheticData
                ? "NOT FOR CLINICAL USE: this model was trained on synthetic data."
                : "NOT FOR CLINICAL USE: this model is not cleared for clinical use.")
        }
        if let reason = view.notAssessableReason { comments.append("Not assessable: \(reason).") }
        let (date, time) = dicomDateTime(resultTime(view))
        return StructuredReport(
            studyInstanceUID: uid, study: attributes(study.details),
            seriesInstanceUID: DerivedUID.make("ich-triage", "report-series", uid, modelID),
            sopInstanceUID: DerivedUID.make("ich-triage", "report", uid, modelID, String(version)),
            seriesDescription: "AI triage: intracranial hemorrhage", seriesNumber: seriesNumber, instanceNumber: max(version, 1),
            contentDate: date, contentTime: time, manufacturer: manufacturer, softwareVersions: modelID,
            deviceUID: DerivedUID.make("ich-triage", "device", deviceName, modelID), deviceName: deviceName,
            algorithmName: manifest.name, algorithmVersion: manifest.version, procedure: ReportCodes.procedure,
            localScheme: CodingScheme(designator: ReportCodes.localScheme, name: ReportCodes.localSchemeName), findings: findings,
            evaluation: primary == nil ? CodedEvaluation(concept: ReportCodes.finding("any"), value: ReportCodes.indeterminate) : nil,
            comments: comments)
    }

    /// When the result was made: the last slice outcome it includes (0 before any).
    static func resultTime(_ view: StudyView) -> Double {
        view.series.flatMap(\.instances).compactMap(\.processedAt).max() ?? 0
    }

    /// A probability as DS: six decimals, at most 8 characters.
    static func decimal(_ value: Float) -> String { String(format: "%.6f", Double(value)) }

    /// DA and TM in UTC (the report says so in its Timezone Offset From UTC).
    static func dicomDateTime(_ seconds: Double) -> (String, String) {
        var t = time_t(seconds)
        var parts = tm()
        gmtime_r(&t, &parts)
        return (String(format: "%04d%02d%02d", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday),
                String(format: "%02d%02d%02d", parts.tm_hour, parts.tm_min, parts.tm_sec))
    }

    static func attributes(_ d: StudyDetails) -> StudyAttributes {
        StudyAttributes(accessionNumber: d.accessionNumber, patientID: d.patientID, patientName: d.patientName,
                        studyDate: d.studyDate, studyTime: d.studyTime, studyDescription: d.studyDescription,
                        institutionName: d.institutionName, patientBirthDate: d.patientBirthDate, patientSex: d.patientSex,
                        referringPhysicianName: d.referringPhysicianName, studyID: d.studyID,
                        specificCharacterSet: d.specificCharacterSet)
    }
}
