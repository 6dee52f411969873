/// One slice as the study view needs it: where it lies and what the model said.
public struct SliceResult: Sendable, Equatable {
    public var sopInstanceUID: String
    /// 1-based; frame 1 of a single-frame instance.
    public var frameNumber: Int
    public var instanceNumber: Int?
    /// Millimetres along the patient axis (see `InstanceHeader.position`).
    public var position: Double?
    /// Six probabilities in label order; nil while queued or when it failed.
    public var probabilities: [Float]?

    public init(sopInstanceUID: String, frameNumber: Int = 1, instanceNumber: Int?, position: Double?, probabilities: [Float]?) {
        self.sopInstanceUID = sopInstanceUID
        self.frameNumber = frameNumber
        self.instanceNumber = instanceNumber
        self.position = position
        self.probabilities = probabilities
    }
}

/// A study's result for one label: the maximum over its slices, the slice that
/// gives it and how many slices reach the threshold.
public struct LabelSummary: Sendable, Equatable {
    public var label: String
    public var threshold: Double
    public var probability: Float?
    public var maxSlice: Int?
    public var slicesAboveThreshold: Int

    public init(label: String, threshold: Double, probability: Float?, maxSlice: Int?, slicesAboveThreshold: Int) {
        self.label = label
        self.threshold = threshold
        self.probability = probability
        self.maxSlice = maxSlice
        self.slicesAboveThreshold = slicesAboveThreshold
    }

    /// nil until a slice has a result.
    public var positive: Bool? { probability.map { Double($0) >= threshold } }
}

public enum StudyAggregate {
    /// Per label: the maximum and its slice (the first in `slices` on ties) and
    /// the count of slices at or above the threshold.
    public static func summarize(_ slices: [SliceResult], labels: [String], thresholds: [Double]) -> [LabelSummary] {
        labels.indices.map { k in
            var summary = LabelSummary(label: labels[k], threshold: thresholds[k], probability: nil, maxSlice: nil, slicesAboveThreshold: 0)
            for (index, slice) in slices.enumerated() {
                guard let p = slice.probabilities?[k] else { continue }
                if summary.probability.map({ p > $0 }) ?? true {
                    summary.probability = p
                    summary.maxSlice = index
                }
                if Double(p) >= thresholds[k] { summary.slicesAboveThreshold += 1 }
            }
            return summary
        }
    }

    /// Slices in anatomical order: by position, then instance number, then UID
    /// and frame number; slices without a position follow those with one.
    public static func ordered(_ slices: [SliceResult]) -> [SliceResult] {
        slices.sorted { a, b in
            switch (a.position, b.position) {
            case let (x?, y?) where x != y: return x < y
            case (.some, nil): return true
            case (nil, .some): return false
            default: break
            }
            switch (a.instanceNumber, b.instanceNumber) {
            case let (x?, y?) where x != y: return x < y
            case (.some, nil): return true
            case (nil, .some): return false
            default: return (a.sopInstanceUID, a.frameNumber) < (b.sopInstanceUID, b.frameNumber)
            }
        }
    }
}

/// Where a study stands. Complete means every received instance has an outcome
/// and none has arrived for `stableAge` seconds; a late instance reopens it.
public enum StudyStatus: String, Sendable {
    case pending
    case partial
    case complete

    public static func of(received: Int, processed: Int, lastReceivedAt: Double, now: Double, stableAge: Double) -> StudyStatus {
        if processed == 0 { return .pending }
        if processed < received || now - lastReceivedAt < stableAge { return .partial }
        return .complete
    }
}
