import Testing

@testable import Inference

@Suite struct StudyAggregateTests {
    static let labels = ["any", "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"]
    static let thresholds = [0.5, 0.5, 0.5, 0.5, 0.5, 0.3]

    func slice(_ uid: String, _ number: Int?, _ z: Double?, _ p: [Float]?) -> SliceResult {
        SliceResult(sopInstanceUID: uid, instanceNumber: number, position: z, probabilities: p)
    }

    @Test func maximaTheirSlicesAndCountsAboveThreshold() {
        let slices = [
            slice("a", 1, 0, [0.2, 0.1, 0.0, 0.0, 0.0, 0.3]),
            slice("b", 2, 5, [0.7, 0.6, 0.1, 0.0, 0.0, 0.2]),
            slice("c", 3, 10, nil),
            slice("d", 4, 15, [0.9, 0.4, 0.2, 0.0, 0.0, 0.31]),
        ]
        let summary = StudyAggregate.summarize(slices, labels: Self.labels, thresholds: Self.thresholds)
        #expect(summary.map(\.probability) == [0.9, 0.6, 0.2, 0.0, 0.0, 0.31])
        #expect(summary.map(\.maxSlice) == [3, 1, 3, 0, 0, 3], "ties go to the first slice")
        #expect(summary.map(\.slicesAboveThreshold) == [2, 1, 0, 0, 0, 2])
        #expect(summary.map(\.positive) == [true, true, false, false, false, true])
    }

    @Test func noResultsYetMeansNoCall() {
        let summary = StudyAggregate.summarize([slice("a", 1, 0, nil)], labels: Self.labels, thresholds: Self.thresholds)
        #expect(summary.allSatisfy { $0.probability == nil && $0.positive == nil && $0.maxSlice == nil })
    }

    @Test func orderedByPositionThenNumberThenUID() {
        let slices = [slice("e", nil, nil, nil), slice("d", 2, nil, nil), slice("c", 9, 2.5, nil), slice("b", 1, -7.5, nil),
                      slice("a", 3, 2.5, nil), slice("f", nil, 2.5, nil)]
        #expect(StudyAggregate.ordered(slices).map(\.sopInstanceUID) == ["b", "a", "c", "f", "d", "e"])
    }

    /// Frames of one object without positions keep their frame order, not the order they were stored in.
    @Test func framesOfOneObjectWithoutPositionsInFrameOrder() {
        let slices = [3, 1, 2].map { SliceResult(sopInstanceUID: "m", frameNumber: $0, instanceNumber: 1, position: nil, probabilities: nil) }
        #expect(StudyAggregate.ordered(slices).map(\.frameNumber) == [1, 2, 3])
    }

    @Test(arguments: [
        (0, 0, 0.0, 100.0, StudyStatus.pending),
        (5, 2, 0.0, 100.0, .partial),
        (5, 5, 95.0, 100.0, .partial),
        (5, 5, 90.0, 100.0, .complete),
        (5, 5, 80.0, 100.0, .complete),
    ])
    func status(received: Int, processed: Int, last: Double, now: Double, expected: StudyStatus) {
        #expect(StudyStatus.of(received: received, processed: processed, lastReceivedAt: last, now: now, stableAge: 10) == expected)
    }
}
