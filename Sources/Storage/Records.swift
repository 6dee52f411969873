/// What the store keeps about instances and studies. Times are seconds since
/// 1970 (UTC); probabilities are six values in the RSNA label order.
public enum InstanceState: Int, Sendable {
    case queued = 0
    case done = 1
    case failed = 2
    /// Stored, not triaged: the series rules skipped it (`skipReason`); no spool file, no forward pass.
    case skipped = 3
}

/// What a series' first instance says about the whole series, for ranking the primary one.
public struct SeriesDetails: Sendable, Equatable {
    public var seriesNumber: Int?
    public var modality: String?
    /// ImageType's first value: true for ORIGINAL, false for DERIVED, nil when absent or other.
    public var original: Bool?
    /// `soft`, `sharp` or nil (unknown), from the rules' kernel patterns.
    public var kernelClass: String?
    public var sliceThickness: Double?

    public init(seriesNumber: Int? = nil, modality: String? = nil, original: Bool? = nil, kernelClass: String? = nil,
                sliceThickness: Double? = nil) {
        self.seriesNumber = seriesNumber
        self.modality = modality
        self.original = original
        self.kernelClass = kernelClass
        self.sliceThickness = sliceThickness
    }
}

/// Study attributes a reading station needs to find the study. PHI: never logged.
public struct StudyDetails: Sendable, Equatable {
    public var accessionNumber: String?
    public var patientID: String?
    public var patientName: String?
    public var studyDate: String?
    public var studyTime: String?
    public var studyDescription: String?
    public var institutionName: String?
    public var patientBirthDate: String?
    public var patientSex: String?
    public var referringPhysicianName: String?
    public var studyID: String?
    public var specificCharacterSet: String?

    public init(accessionNumber: String? = nil, patientID: String? = nil, patientName: String? = nil, studyDate: String? = nil,
                studyTime: String? = nil, studyDescription: String? = nil, institutionName: String? = nil,
                patientBirthDate: String? = nil, patientSex: String? = nil, referringPhysicianName: String? = nil,
                studyID: String? = nil, specificCharacterSet: String? = nil) {
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

/// One frame of an instance as it is stored: each is a slice with its own plane.
public struct NewFrame: Sendable, Equatable {
    /// 1-based; a single-frame instance is frame 1.
    public var number: Int
    /// Millimetres along `normal`.
    public var position: Double?
    /// The slice plane's unit normal, along which `position` is measured.
    public var normal: [Double]?

    public init(number: Int, position: Double?, normal: [Double]? = nil) {
        self.number = number
        self.position = position
        self.normal = normal
    }
}

/// An instance as it is acknowledged: header metadata and its frames plus its
/// spool file, or the reason it is skipped (then there is no spool file).
/// Every frame becomes a row; the frames of one object share its spool file.
public struct NewInstance: Sendable, Equatable {
    public var sopInstanceUID: String
    public var studyInstanceUID: String
    public var seriesInstanceUID: String
    public var sopClassUID: String
    public var instanceNumber: Int?
    public var frames: [NewFrame]
    public var spoolName: String?
    public var skipReason: String?
    public var receivedAt: Double
    /// The header asked for priority (STAT): one such instance makes its study urgent.
    public var urgent: Bool
    /// Recorded with the first instance of its series / study; later ones fill only what is still missing.
    public var series: SeriesDetails
    public var study: StudyDetails

    public init(
        sopInstanceUID: String, studyInstanceUID: String, seriesInstanceUID: String, sopClassUID: String,
        instanceNumber: Int?, frames: [NewFrame], spoolName: String?, skipReason: String? = nil, receivedAt: Double,
        urgent: Bool = false, series: SeriesDetails = SeriesDetails(), study: StudyDetails = StudyDetails()
    ) {
        precondition((spoolName == nil) != (skipReason == nil), "an instance is either spooled or skipped")
        precondition(!frames.isEmpty, "an instance has at least one frame")
        self.sopInstanceUID = sopInstanceUID
        self.studyInstanceUID = studyInstanceUID
        self.seriesInstanceUID = seriesInstanceUID
        self.sopClassUID = sopClassUID
        self.instanceNumber = instanceNumber
        self.frames = frames
        self.spoolName = spoolName
        self.skipReason = skipReason
        self.receivedAt = receivedAt
        self.urgent = urgent
        self.series = series
        self.study = study
    }
}

/// One stored slice: an instance's frame (frame 1 of a single-frame instance).
public struct InstanceRecord: Sendable, Equatable {
    public var sopInstanceUID: String
    public var frameNumber: Int = 1
    public var studyInstanceUID: String
    public var seriesInstanceUID: String
    public var sopClassUID: String
    public var instanceNumber: Int?
    public var position: Double?
    public var receivedAt: Double
    public var state: InstanceState
    public var probabilities: [Float]?
    public var errorType: String?
    public var errorDetail: String?
    public var processedAt: Double?
    public var model: String?
    public var skipReason: String?
    public var normal: [Double]? = nil
}

public struct SeriesRecord: Sendable, Equatable {
    public var studyInstanceUID: String
    public var seriesInstanceUID: String
    public var details: SeriesDetails
    public var firstReceivedAt: Double

    public init(studyInstanceUID: String, seriesInstanceUID: String, details: SeriesDetails, firstReceivedAt: Double) {
        self.studyInstanceUID = studyInstanceUID
        self.seriesInstanceUID = seriesInstanceUID
        self.details = details
        self.firstReceivedAt = firstReceivedAt
    }
}

/// What the service's StudyView derived for a study, stored for the worklist and notifications.
public struct StudySummary: Sendable, Equatable {
    /// The primary series' per-label maxima; nil before it has a result.
    public var maxima: [Float]?
    public var primarySeriesUID: String?
    public var assessable: Bool
    public var notAssessableReason: String?

    public init(maxima: [Float]?, primarySeriesUID: String?, assessable: Bool, notAssessableReason: String?) {
        self.maxima = maxima
        self.primarySeriesUID = primarySeriesUID
        self.assessable = assessable
        self.notAssessableReason = notAssessableReason
    }
}

public struct StudyRecord: Sendable, Equatable {
    public var studyInstanceUID: String
    public var firstReceivedAt: Double
    public var lastReceivedAt: Double
    public var received: Int
    public var done: Int
    public var failed: Int
    public var skipped: Int
    /// The primary series' per-label maxima; nil before it has a result.
    public var maxima: [Float]?
    public var primarySeriesUID: String?
    /// nil until the service has summarised the study once.
    public var assessable: Bool?
    public var notAssessableReason: String?
    public var details: StudyDetails
    /// Served ahead of other studies: a STAT/HIGH priority in its headers, or an operator's override.
    public var urgent: Bool

    /// Instances the model gave an outcome (a result or a failure).
    public var processed: Int { done + failed }
    /// Instances with nothing left to do: processed or skipped.
    public var finished: Int { done + failed + skipped }
    public var queued: Int { received - finished }
}

/// A queued slice (an instance's frame) waiting for inference.
public struct Job: Sendable, Equatable {
    public var sopInstanceUID: String
    public var frameNumber: Int
    public var studyInstanceUID: String
    public var spoolName: String
    public var receivedAt: Double
    /// Its study is urgent (see `NewInstance.urgent`).
    public var urgent: Bool

    public init(sopInstanceUID: String, frameNumber: Int = 1, studyInstanceUID: String, spoolName: String, receivedAt: Double,
                urgent: Bool = false) {
        self.sopInstanceUID = sopInstanceUID
        self.frameNumber = frameNumber
        self.studyInstanceUID = studyInstanceUID
        self.spoolName = spoolName
        self.receivedAt = receivedAt
        self.urgent = urgent
    }
}

/// The outcome of one job, committed with the others of its batch.
public enum JobOutcome: Sendable, Equatable {
    case done(probabilities: [Float])
    case failed(type: String, detail: String)
}

/// A job's outcome with what identifies the job: its slice and its spool file (see `JobQueue.complete`).
public struct CompletedJob: Sendable, Equatable {
    public var sopInstanceUID: String
    public var frameNumber: Int
    public var spoolName: String
    public var outcome: JobOutcome

    public init(_ sopInstanceUID: String, frame: Int = 1, spoolName: String, _ outcome: JobOutcome) {
        self.sopInstanceUID = sopInstanceUID
        self.frameNumber = frame
        self.spoolName = spoolName
        self.outcome = outcome
    }

    public init(_ job: Job, _ outcome: JobOutcome) {
        self.init(job.sopInstanceUID, frame: job.frameNumber, spoolName: job.spoolName, outcome)
    }
}
