/// What ingest needs to know about any DICOM instance, read without touching
/// its pixels: identity, the attributes the series rules match, where the
/// slice lies, and whether the pixel decoder could turn it into a `CTSlice`.
public struct InstanceHeader: Sendable, Equatable {
    public var studyInstanceUID: String
    public var seriesInstanceUID: String
    public var sopInstanceUID: String
    public var sopClassUID: String?
    public var modality: String?
    public var transferSyntaxUID: String
    public var seriesNumber: Int?
    public var instanceNumber: Int?
    /// ImageType's values, upper-cased (`ORIGINAL`, `PRIMARY`, `AXIAL`...).
    public var imageType: [String]
    /// Each frame's plane, in frame order: one for a single-frame object; a multi-frame one's from its
    /// Plane Position and Plane Orientation functional groups. Every frame is a slice.
    public var frames: [FramePlane]
    public var sliceThickness: Double?
    public var convolutionKernel: String?
    public var seriesDescription: String?
    public var bodyPartExamined: String?
    public var hasPixelData: Bool
    /// Why the pixel decoder would refuse this image (colour,
    /// a transfer syntax without a codec...); nil when it can decode it or
    /// when there are no pixels.
    public var unsupportedImage: DICOMError?
    /// Requested Procedure Priority (0040,1003) is STAT or HIGH: the scheduler serves the study first.
    public var urgent: Bool
    public var study: StudyAttributes

    public init(
        studyInstanceUID: String, seriesInstanceUID: String, sopInstanceUID: String, sopClassUID: String? = nil,
        modality: String? = "CT", transferSyntaxUID: String = "1.2.840.10008.1.2.1", seriesNumber: Int? = nil,
        instanceNumber: Int? = nil, imageType: [String] = [], imagePositionPatient: [Double]? = nil,
        imageOrientationPatient: [Double]? = nil, frames: [FramePlane]? = nil, sliceThickness: Double? = nil, convolutionKernel: String? = nil,
        seriesDescription: String? = nil, bodyPartExamined: String? = nil, hasPixelData: Bool = true,
        unsupportedImage: DICOMError? = nil, urgent: Bool = false, study: StudyAttributes = StudyAttributes()
    ) {
        self.studyInstanceUID = studyInstanceUID
        self.seriesInstanceUID = seriesInstanceUID
        self.sopInstanceUID = sopInstanceUID
        self.sopClassUID = sopClassUID
        self.modality = modality
        self.transferSyntaxUID = transferSyntaxUID
        self.seriesNumber = seriesNumber
        self.instanceNumber = instanceNumber
        self.imageType = imageType
        self.frames = frames ?? [FramePlane(imagePositionPatient: imagePositionPatient, imageOrientationPatient: imageOrientationPatient)]
        precondition(!self.frames.isEmpty, "an image has at least one frame")
        self.sliceThickness = sliceThickness
        self.convolutionKernel = convolutionKernel
        self.seriesDescription = seriesDescription
        self.bodyPartExamined = bodyPartExamined
        self.hasPixelData = hasPixelData
        self.unsupportedImage = unsupportedImage
        self.urgent = urgent
        self.study = study
    }

    /// The first frame's plane: what the series rules judge the object by.
    public var imagePositionPatient: [Double]? { frames[0].imagePositionPatient }
    public var imageOrientationPatient: [Double]? { frames[0].imageOrientationPatient }
    public var sliceNormal: [Double]? { frames[0].sliceNormal }
    public var position: Double? { frames[0].position }
}

/// Where one frame lies in the patient.
public struct FramePlane: Sendable, Equatable {
    public var imagePositionPatient: [Double]?
    public var imageOrientationPatient: [Double]?

    public init(imagePositionPatient: [Double]?, imageOrientationPatient: [Double]?) {
        self.imagePositionPatient = imagePositionPatient
        self.imageOrientationPatient = imageOrientationPatient
    }

    /// The unit normal of the slice plane (row direction x column direction), if the orientation is usable.
    public var sliceNormal: [Double]? {
        guard let o = imageOrientationPatient, o.count == 6 else { return nil }
        let n = [o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]]
        let length = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).squareRoot()
        guard length > 1e-6 else { return nil }
        return n.map { $0 / length }
    }

    /// Millimetres along the slice normal: Image Position (Patient) projected
    /// on it, which orders tilted acquisitions correctly; z alone without an orientation.
    public var position: Double? {
        guard let p = imagePositionPatient, p.count == 3 else { return nil }
        guard let n = sliceNormal else { return p[2] }
        return p[0] * n[0] + p[1] * n[1] + p[2] * n[2]
    }
}

/// The study-level attributes a reading station needs to find a study. They
/// identify a patient: only `read`/`admin` callers see them, never a log line.
public struct StudyAttributes: Sendable, Equatable {
    public var accessionNumber: String?
    public var patientID: String?
    public var patientName: String?
    /// DICOM DA (`YYYYMMDD`) and TM (`HHMMSS.FFFFFF`) as stored.
    public var studyDate: String?
    public var studyTime: String?
    public var studyDescription: String?
    public var institutionName: String?
    /// What the service's own objects in the study (its structured report) copy from the original.
    public var patientBirthDate: String?
    public var patientSex: String?
    public var referringPhysicianName: String?
    public var studyID: String?
    public var specificCharacterSet: String?

    public init(
        accessionNumber: String? = nil, patientID: String? = nil, patientName: String? = nil, studyDate: String? = nil,
        studyTime: String? = nil, studyDescription: String? = nil, institutionName: String? = nil,
        patientBirthDate: String? = nil, patientSex: String? = nil, referringPhysicianName: String? = nil, studyID: String? = nil,
        specificCharacterSet: String? = nil
    ) {
        self.accessionNumber = accessionNumber
        self.patientID = patientID
        self.patientName = patientName
        self.studyDate = studyDate
        self.studyTime = studyTime
        self.studyDescription = studyDescription
        self.institutionName = institutionName
        self.patientBirthDate = patientBirthDate
        self.patientSex = patientSex
        self.referringPhysicianName = referringPhysicianName
        self.studyID = studyID
        self.specificCharacterSet = specificCharacterSet
    }
}
