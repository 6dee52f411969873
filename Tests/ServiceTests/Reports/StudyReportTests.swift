import DICOM
import Foundation
import NeuralNet
@testable import Storage
import Testing

@testable import Service

/// What the structured report says about a study's stored result, before DCMTK builds it.
@Suite struct StudyReportTests {
    static let manifest = try! ModelBundle.readManifest(directory: ServiceHarness.modelDirectory)

    static func record(_ done: Int, failed: Int = 0) -> StudyRecord {
        StudyRecord(studyInstanceUID: "1.2.3", firstReceivedAt: 0, lastReceivedAt: 0, received: done + failed, done: done,
                    failed: failed, skipped: 0, maxima: nil, primarySeriesUID: nil, assessable: nil, notAssessableReason: nil,
                    details: StudyDetails(patientName: "A^B", patientBirthDate: "19700101", studyID: "7"), urgent: false)
    }

    /// Ten slices; slice 3 is the most likely `any` (0.9) and the only `subdural` above threshold.
    static func view(multiFrame: Bool = false, skipAll: Bool = false) -> StudyView {
        let instances = (0..<10).map { k in
            let p: Float = k == 3 ? 0.9 : 0.1
            return InstanceRecord(
                sopInstanceUID: multiFrame ? "1.2.3.9" : "1.2.3.1.\(k)", frameNumber: multiFrame ? k + 1 : 1,
                studyInstanceUID: "1.2.3", seriesInstanceUID: "1.2.3.1", sopClassUID: "1.2.840.10008.5.1.4.1.1.2",
                instanceNumber: k + 1, position: Double(k) * 5, receivedAt: 0, state: skipAll ? .skipped : .done,
                probabilities: skipAll ? nil : [p, 0.01, 0.02, 0.03, 0.04, k == 3 ? 0.7 : 0.2], errorType: nil,
                errorDetail: nil, processedAt: 1_796_000_000 + Double(k), model: nil, skipReason: skipAll ? "not-ct" : nil)
        }
        return StudyView(series: [StudyViewTests.series("1.2.3.1", number: 2)], instances: instances, rules: .default,
                         labels: manifest.labels, thresholds: manifest.thresholds)
    }

    @Test func eachLabelIsPresentOrAbsentAtItsThresholdWithItsKeySlice() throws {
        let report = StudyReport.make(study: Self.record(10), view: Self.view(), manifest: Self.manifest, deviceName: "ICHTRIAGE")
        #expect(report.findings.map(\.trackingIdentifier) == Self.manifest.labels.map { "ICH triage \($0)" })
        #expect(report.findings.map(\.present) == zip([0.9, 0.01, 0.02, 0.03, 0.04, 0.7], Self.manifest.thresholds).map { $0 >= $1 })
        #expect(report.findings[0].probability == "0.900000" && report.findings[0].finding == Code("1386000", "SCT", "Intracranial hemorrhage"))
        #expect(report.findings[0].key == ImageReference(seriesInstanceUID: "1.2.3.1", sopClassUID: "1.2.840.10008.5.1.4.1.1.2",
                                                         sopInstanceUID: "1.2.3.1.3", frame: nil))
        #expect(report.findings[5].key?.sopInstanceUID == "1.2.3.1.3")
        #expect(report.study.patientBirthDate == "19700101" && report.study.studyID == "7")
        #expect(report.evaluation == nil)
        #expect(report.comments.contains { $0.hasPrefix("NOT FOR CLINICAL USE") }, "the default bundle is synthetic-trained")
        #expect((report.contentDate, report.contentTime) == StudyReport.dicomDateTime(1_796_000_009), "the last outcome's time")
    }

    @Test func aMultiFrameKeySliceNamesItsFrame() {
        let report = StudyReport.make(study: Self.record(10), view: Self.view(multiFrame: true), manifest: Self.manifest,
                                      deviceName: "ICHTRIAGE")
        #expect(report.findings[0].key?.sopInstanceUID == "1.2.3.9" && report.findings[0].key?.frame == 4)
    }

    @Test func sameResultSameUIDsAndALaterResultIsANewInstanceOfTheSameSeries() {
        let view = Self.view()
        let a = StudyReport.make(study: Self.record(10), view: view, manifest: Self.manifest, deviceName: "ICHTRIAGE")
        let b = StudyReport.make(study: Self.record(10), view: view, manifest: Self.manifest, deviceName: "ICHTRIAGE")
        let later = StudyReport.make(study: Self.record(11), view: view, manifest: Self.manifest, deviceName: "ICHTRIAGE")
        #expect(a == b)
        #expect(later.seriesInstanceUID == a.seriesInstanceUID && later.sopInstanceUID != a.sopInstanceUID)
        #expect(later.instanceNumber == 11 && a.instanceNumber == 10)
        #expect(Set(a.findings.map(\.trackingUID)).count == 6 && later.findings[0].trackingUID != a.findings[0].trackingUID)
    }

    @Test func aStudyWithoutATriageableSeriesIsIndeterminate() {
        let report = StudyReport.make(study: Self.record(0), view: Self.view(skipAll: true), manifest: Self.manifest,
                                      deviceName: "ICHTRIAGE")
        #expect(report.findings.isEmpty)
        #expect(report.evaluation?.concept == ReportCodes.finding("any") && report.evaluation?.value == ReportCodes.indeterminate)
        #expect(report.comments.contains("Not assessable: no-triageable-series."))
        #expect(report.instanceNumber == 1)
    }

    @Test func theReportEncodesAndReadsBackAsAnSRInTheStudy() throws {
        let report = StudyReport.make(study: Self.record(10), view: Self.view(), manifest: Self.manifest, deviceName: "ICHTRIAGE")
        let bytes = try report.encoded()
        let header = try bytes.withUnsafeBytes { buffer throws(DICOMError) in try DICOMDecoder.header(buffer) }
        #expect(header.studyInstanceUID == "1.2.3" && header.sopInstanceUID == report.sopInstanceUID)
        #expect(header.seriesInstanceUID == report.seriesInstanceUID && header.modality == "SR")
        #expect(header.sopClassUID == "1.2.840.10008.5.1.4.1.1.88.22", "Enhanced SR")
        #expect(header.study.patientName == "A^B" && !header.hasPixelData)
        #expect(try report.encoded() == bytes, "the same report is the same bytes")
    }
}
