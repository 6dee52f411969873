/// What the store keeps about instances and studies. Times are seconds since
/// 1970 (UTC); probabilities are six values in the RSNA label order.
public enum InstanceState: Int, Sendable {
    case queued = 0
    case done = 1
    case failed = 2
}

/// An instance as it is acknowledged: decoded metadata plus its spool file.
public struct NewInstance: Sendable, Equatable {
    public var sopInstanceUID: String
    public var studyInstanceUID: String
    public var seriesInstanceUID: String
    public var sopClassUID: String
    public var instanceNumber: Int?
    public var position: Double?
    public var spoolName: String
    public var receivedAt: Double

    public init(
        sopInstanceUID: String, studyInstanceUID: String, seriesInstanceUID: String, sopClassUID: String,
        instanceNumber: Int?, position: Double?, spoolName: String, receivedAt: Double
    ) {
        self.sopInstanceUID = sopInstanceUID
        self.studyInstanceUID = studyInstanceUID
        self.seriesInstanceUID = seriesInstanceUID
        self.sopClassUID = sopClassUID
        self.instanceNumber = instanceNumber
        self.position = position
        self.spoolName = spoolName
        self.receivedAt = receivedAt
    }
}

public struct InstanceRecord: Sendable, Equatable {
    public var sopInstanceUID: String
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
}

public struct StudyRecord: Sendable, Equatable {
    public var studyInstanceUID: String
    public var firstReceivedAt: Double
    public var lastReceivedAt: Double
    public var received: Int
    public var done: Int
    public var failed: Int
    /// Per-label maximum over the study's processed slices; nil before the first result.
    public var maxima: [Float]?

    public var processed: Int { done + failed }
    public var queued: Int { received - processed }
}

/// A queued instance waiting for inference.
public struct Job: Sendable, Equatable {
    public var sopInstanceUID: String
    public var spoolName: String
    public var receivedAt: Double

    public init(sopInstanceUID: String, spoolName: String, receivedAt: Double) {
        self.sopInstanceUID = sopInstanceUID
        self.spoolName = spoolName
        self.receivedAt = receivedAt
    }
}

/// The outcome of one job, committed with the others of its batch.
public enum JobOutcome: Sendable, Equatable {
    case done(probabilities: [Float])
    case failed(type: String, detail: String)
}
