import CDCMTK

/// A coded concept: code value, coding scheme designator and code meaning.
public struct Code: Sendable, Equatable {
    public var value: String
    public var scheme: String
    public var meaning: String

    public init(_ value: String, _ scheme: String, _ meaning: String) {
        self.value = value
        self.scheme = scheme
        self.meaning = meaning
    }
}

/// A coded question and its coded answer (a qualitative evaluation).
public struct CodedEvaluation: Sendable, Equatable {
    public var concept: Code
    public var value: Code

    public init(concept: Code, value: Code) {
        self.concept = concept
        self.value = value
    }
}

/// A private coding scheme ("99..."), declared in the object.
public struct CodingScheme: Sendable, Equatable {
    public var designator: String
    public var name: String

    public init(designator: String, name: String) {
        self.designator = designator
        self.name = name
    }
}

/// An image the report points at; `frame` nil for a single-frame image.
public struct ImageReference: Sendable, Equatable {
    public var seriesInstanceUID: String
    public var sopClassUID: String
    public var sopInstanceUID: String
    public var frame: Int?

    public init(seriesInstanceUID: String, sopClassUID: String, sopInstanceUID: String, frame: Int?) {
        self.seriesInstanceUID = seriesInstanceUID
        self.sopClassUID = sopClassUID
        self.sopInstanceUID = sopInstanceUID
        self.frame = frame
    }
}

/// A triage result as a TID 1500 Measurement Report: one measurement group per label (the label as
/// finding, present or absent as qualitative evaluation, the probability as a measurement from the
/// label's key image, by the report's algorithm), in a new series of the original study. `encoded()`
/// builds it with DCMTK's dcmsr; this type only carries what goes in.
public struct StructuredReport: Sendable, Equatable {
    public struct Finding: Sendable, Equatable {
        public var trackingIdentifier: String
        public var trackingUID: String
        public var finding: Code
        public var present: Bool
        /// A decimal string (DS, at most 16 characters).
        public var probability: String
        public var key: ImageReference?

        public init(trackingIdentifier: String, trackingUID: String, finding: Code, present: Bool, probability: String,
                    key: ImageReference?) {
            self.trackingIdentifier = trackingIdentifier
            self.trackingUID = trackingUID
            self.finding = finding
            self.present = present
            self.probability = probability
            self.key = key
        }
    }

    /// The original study's attributes, copied as they were received.
    public var studyInstanceUID: String
    public var study: StudyAttributes
    public var seriesInstanceUID: String
    public var sopInstanceUID: String
    public var seriesDescription: String
    public var seriesNumber: Int
    public var instanceNumber: Int
    /// DA and TM of when the result was made.
    public var contentDate: String
    public var contentTime: String
    public var manufacturer: String
    public var softwareVersions: String
    public var deviceUID: String
    public var deviceName: String
    public var algorithmName: String
    public var algorithmVersion: String
    public var procedure: Code
    /// A private coding scheme the codes use: designator and name.
    public var localScheme: CodingScheme?
    public var findings: [Finding]
    /// A study-level qualitative evaluation (concept, value), such as "not assessable".
    public var evaluation: CodedEvaluation?
    public var comments: [String]

    public init(studyInstanceUID: String, study: StudyAttributes, seriesInstanceUID: String, sopInstanceUID: String,
                seriesDescription: String, seriesNumber: Int, instanceNumber: Int, contentDate: String, contentTime: String,
                manufacturer: String, softwareVersions: String, deviceUID: String, deviceName: String, algorithmName: String,
                algorithmVersion: String, procedure: Code, localScheme: CodingScheme?, findings: [Finding],
                evaluation: CodedEvaluation?,
                comments: [String]) {
        self.studyInstanceUID = studyInstanceUID
        self.study = study
        self.seriesInstanceUID = seriesInstanceUID
        self.sopInstanceUID = sopInstanceUID
        self.seriesDescription = seriesDescription
        self.seriesNumber = seriesNumber
        self.instanceNumber = instanceNumber
        self.contentDate = contentDate
        self.contentTime = contentTime
        self.manufacturer = manufacturer
        self.softwareVersions = softwareVersions
        self.deviceUID = deviceUID
        self.deviceName = deviceName
        self.algorithmName = algorithmName
        self.algorithmVersion = algorithmVersion
        self.procedure = procedure
        self.localScheme = localScheme
        self.findings = findings
        self.evaluation = evaluation
        self.comments = comments
    }

    /// The report as a Part-10 file (explicit VR little endian).
    public func encoded() throws(ReportError) -> [UInt8] {
        let strings = CStrings()
        defer { strings.free() }
        func code(_ c: Code?) -> cdcmtk_code {
            cdcmtk_code(value: strings(c?.value), scheme: strings(c?.scheme), meaning: strings(c?.meaning))
        }
        let keys = UnsafeMutablePointer<cdcmtk_image_reference>.allocate(capacity: max(findings.count, 1))
        defer { keys.deallocate() }
        var cFindings: [cdcmtk_report_finding] = []
        for (index, f) in findings.enumerated() {
            var key: UnsafePointer<cdcmtk_image_reference>? = nil
            if let k = f.key {
                (keys + index).initialize(to: cdcmtk_image_reference(
                    series_instance_uid: strings(k.seriesInstanceUID), sop_class_uid: strings(k.sopClassUID),
                    sop_instance_uid: strings(k.sopInstanceUID), frame: Int32(k.frame ?? 0)))
                key = UnsafePointer(keys + index)
            }
            cFindings.append(cdcmtk_report_finding(
                tracking_identifier: strings(f.trackingIdentifier), tracking_uid: strings(f.trackingUID), finding: code(f.finding),
                present: f.present ? 1 : 0, probability: strings(f.probability), key: key))
        }
        var lines: [UnsafePointer<CChar>?] = comments.map { strings($0) }
        lines.append(nil)
        let s = study
        var bytes: UnsafeMutablePointer<UInt8>? = nil
        var length = 0
        var error = [CChar](repeating: 0, count: 256)
        let status = lines.withUnsafeBufferPointer { commentList in
            var report = cdcmtk_report(
                study_instance_uid: strings(studyInstanceUID), study_date: strings(s.studyDate), study_time: strings(s.studyTime),
                study_id: strings(s.studyID), accession_number: strings(s.accessionNumber),
                referring_physician_name: strings(s.referringPhysicianName), study_description: strings(s.studyDescription),
                patient_name: strings(s.patientName), patient_id: strings(s.patientID),
                patient_birth_date: strings(s.patientBirthDate), patient_sex: strings(s.patientSex),
                specific_character_set: strings(s.specificCharacterSet),
                series_instance_uid: strings(seriesInstanceUID), sop_instance_uid: strings(sopInstanceUID),
                series_description: strings(seriesDescription), series_number: Int32(seriesNumber),
                instance_number: Int32(instanceNumber), content_date: strings(contentDate), content_time: strings(contentTime),
                manufacturer: strings(manufacturer), software_versions: strings(softwareVersions), device_uid: strings(deviceUID),
                device_name: strings(deviceName), algorithm_name: strings(algorithmName),
                algorithm_version: strings(algorithmVersion), procedure: code(procedure),
                evaluation_concept: code(evaluation?.concept), evaluation_value: code(evaluation?.value),
                local_scheme: strings(localScheme?.designator), local_scheme_name: strings(localScheme?.name),
                comments: commentList.baseAddress)
            return cdcmtk_report_write(&report, cFindings, cFindings.count, &bytes, &length, &error, error.count)
        }
        defer { cdcmtk_buffer_free(bytes) }
        switch status {
        case CDCMTK_OK: return Array(UnsafeBufferPointer(start: bytes, count: length))
        case CDCMTK_BAD_VALUE: throw .refused(text(error))
        case CDCMTK_OUT_OF_MEMORY: throw .outOfMemory
        default: throw .internalError
        }
    }
}

/// Why DCMTK would not build a report: a value of ours it rejects (a bug, not bad input).
public enum ReportError: Error, Equatable, Sendable {
    case refused(String)
    case outOfMemory
    case internalError

    public var message: String {
        switch self {
        case .refused(let what): "DCMTK refused the structured report: \(what)."
        case .outOfMemory: "Out of memory while building the structured report."
        case .internalError: "DCMTK failed while building the structured report."
        }
    }
}

/// C copies of Swift strings that live until `free()`, for a C call that takes many of them.
private final class CStrings {
    private var copies: [UnsafeMutablePointer<CChar>] = []

    func callAsFunction(_ text: String?) -> UnsafePointer<CChar>? {
        guard let text else { return nil }
        let characters = text.utf8CString
        let copy = UnsafeMutablePointer<CChar>.allocate(capacity: characters.count)
        characters.withUnsafeBufferPointer { copy.initialize(from: $0.baseAddress!, count: characters.count) }
        copies.append(copy)
        return UnsafePointer(copy)
    }

    func free() {
        for copy in copies { copy.deallocate() }
    }
}
