import Testing

@testable import Inference

@Suite struct StudyQueueTests {
    /// A long study queued first, then two short ones: (study, count, urgent, arrival).
    static func backlog(_ order: SchedulingPolicy.Order, agingRate: Double = 2) -> StudyQueue<String> {
        var queue = StudyQueue<String>(policy: SchedulingPolicy(order: order, agingRate: agingRate))
        for (study, count, urgent, arrival) in [("long", 40, false, 0.0), ("short", 3, false, 1.0), ("short2", 5, false, 1.5)] {
            for k in 0..<count { queue.append("\(study)-\(k)", study: study, urgent: urgent, arrival: arrival) }
        }
        return queue
    }

    @Test func arrivalOrderIsFirstInFirstOutBySlice() {
        var queue = Self.backlog(.arrival)
        #expect(queue.oldestArrival == 0)
        #expect(queue.take(8, now: 2) == (0..<8).map { "long-\($0)" })
        #expect(queue.count == 40)
    }

    /// The short studies go first, the shortest first, and fill a batch across studies; the long one last.
    @Test func studyOrderServesTheShortestStudyFirst() {
        var queue = Self.backlog(.study)
        #expect(queue.take(4, now: 2) == ["short-0", "short-1", "short-2", "short2-0"])
        #expect(queue.take(8, now: 2) == (1..<5).map { "short2-\($0)" } + (0..<4).map { "long-\($0)" })
        #expect(queue.count == 36)
        #expect(queue.oldestArrival == 0)
        #expect(queue.take(100, now: 2).count == 36)
        #expect(queue.isEmpty && queue.oldestArrival == nil)
    }

    /// Ageing: after (n - 1) / agingRate seconds the long study's score is 1, below a fresh study of 3.
    @Test func aLongStudyIsNotStarvedByNewShortOnes() {
        var queue = StudyQueue<String>(policy: SchedulingPolicy(order: .study, agingRate: 2))
        for k in 0..<40 { queue.append("long-\(k)", study: "long", urgent: false, arrival: 0) }
        for k in 0..<3 { queue.append("fresh-\(k)", study: "fresh", urgent: false, arrival: 19) }
        // At t = 19 the long study scores 40 - 38 = 2 < 3.
        #expect(queue.take(1, now: 19) == ["long-0"])
        var fresh = StudyQueue<String>(policy: SchedulingPolicy(order: .study, agingRate: 2))
        for k in 0..<40 { fresh.append("long-\(k)", study: "long", urgent: false, arrival: 0) }
        for k in 0..<3 { fresh.append("fresh-\(k)", study: "fresh", urgent: false, arrival: 1) }
        // At t = 1 it scores 38: the fresh study goes first.
        #expect(fresh.take(1, now: 1) == ["fresh-0"])
    }

    @Test func anUrgentStudyJumpsAheadWhateverItsSize() {
        var queue = Self.backlog(.study)
        for k in 0..<20 { queue.append("stat-\(k)", study: "stat", urgent: k == 7, arrival: 3) }
        #expect(queue.take(20, now: 3) == (0..<20).map { "stat-\($0)" })
        #expect(queue.take(1, now: 3) == ["short-0"])
    }

    /// Slices of one study keep their arrival order, and a study that drains and returns is queued afresh.
    @Test func aStudyThatReturnsStartsAgainWithItsNewArrival() {
        var queue = StudyQueue<String>(policy: SchedulingPolicy(order: .study))
        queue.append("a-0", study: "a", urgent: true, arrival: 0)
        #expect(queue.take(8, now: 0) == ["a-0"])
        queue.append("b-0", study: "b", urgent: false, arrival: 1)
        queue.append("b-1", study: "b", urgent: false, arrival: 1)
        queue.append("a-1", study: "a", urgent: false, arrival: 5)
        #expect(queue.oldestArrival == 1)
        // "a" is no longer urgent (its jobs say so when they are): "b" has aged 4 s, "a" none.
        #expect(queue.take(8, now: 5) == ["b-0", "b-1", "a-1"])
    }

    @Test func equalStudiesGoOldestFirst() {
        var queue = StudyQueue<String>(policy: SchedulingPolicy(order: .study, agingRate: 1e-9))
        queue.append("late", study: "z", urgent: false, arrival: 2)
        queue.append("early", study: "y", urgent: false, arrival: 1)
        #expect(queue.take(2, now: 2) == ["early", "late"])
    }
}
