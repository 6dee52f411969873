import Testing

@testable import Service

@Suite struct CommitRetryTests {
    @Test func theWaitGrowsToTwoSecondsAndTheLogHearsOfFewFailures() {
        var retry = CommitRetry()
        var delays: [Double] = []
        var logged: [Int] = []
        for attempt in 1...60 {
            let (delay, log) = retry.failed()
            delays.append(delay)
            if log { logged.append(attempt) }
        }
        #expect(abs(delays[0] - 0.1) < 1e-9 && abs(delays[4] - 0.5) < 1e-9)
        #expect(delays[19...].allSatisfy { $0 == 2.0 })
        #expect(zip(delays, delays.dropFirst()).allSatisfy { $0 <= $1 })
        #expect(logged == [1, 20, 40, 60])
        #expect(retry.failures == 60)
    }
}
