import Testing

@testable import Inference

@Suite struct BatchPolicyTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var queued: Int
        var oldest: Double?
        var now: Double
        var expected: BatchPolicy.Decision
        var testDescription: String { "queued \(queued), oldest \(String(describing: oldest)), now \(now)" }
    }

    static let policy = BatchPolicy(maxBatch: 8, maxDelay: 0.010)

    @Test(arguments: [
        Case(queued: 0, oldest: nil, now: 5, expected: .idle),
        Case(queued: 1, oldest: 5, now: 5, expected: .wait(until: 5.010)),
        Case(queued: 3, oldest: 5, now: 5.009, expected: .wait(until: 5.010)),
        Case(queued: 3, oldest: 5, now: 5.010, expected: .run(count: 3)),
        Case(queued: 8, oldest: 5, now: 5, expected: .run(count: 8)),
        Case(queued: 20, oldest: 5, now: 5, expected: .run(count: 8)),
        Case(queued: 20, oldest: 1, now: 9, expected: .run(count: 8)),
    ])
    func decides(_ c: Case) {
        #expect(Self.policy.decide(queued: c.queued, oldestArrival: c.oldest, now: c.now) == c.expected)
    }

    @Test func zeroDelayRunsAtOnce() {
        #expect(BatchPolicy(maxBatch: 4, maxDelay: 0).decide(queued: 1, oldestArrival: 2, now: 2) == .run(count: 1))
    }
}
