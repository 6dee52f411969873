import Testing

@testable import Service

@Suite struct AuthThrottleTests {
    @Test func anAddressIsRefusedAfterTheLimitUntilItsWindowEnds() {
        var throttle = AuthThrottle(limit: 3, window: 60)
        for k in 0..<2 { throttle.recordFailure("10.0.0.1", now: 100 + Double(k)) }
        #expect(throttle.retryAfter("10.0.0.1", now: 102) == nil, "below the limit")
        throttle.recordFailure("10.0.0.1", now: 110)
        #expect(throttle.retryAfter("10.0.0.1", now: 110) == 50, "the window started at the first failure")
        #expect(throttle.retryAfter("10.0.0.2", now: 110) == nil, "other addresses are not affected")
        #expect(throttle.retryAfter("10.0.0.1", now: 160) == nil, "the window is over")
        throttle.recordFailure("10.0.0.1", now: 161)
        #expect(throttle.retryAfter("10.0.0.1", now: 161) == nil, "a new window counts from one")
    }

    @Test func failuresSpreadOverWindowsNeverBlock() {
        var throttle = AuthThrottle(limit: 2, window: 10)
        for k in 0..<10 {
            throttle.recordFailure("a", now: Double(k) * 10)
            #expect(throttle.retryAfter("a", now: Double(k) * 10) == nil)
        }
    }

    @Test func zeroDisablesIt() {
        var throttle = AuthThrottle(limit: 0, window: 60)
        for _ in 0..<100 { throttle.recordFailure("a", now: 1) }
        #expect(throttle.retryAfter("a", now: 1) == nil && throttle.trackedAddresses == 0)
    }

    @Test func theTableStaysBoundedAndKeepsBlockedAddresses() {
        var throttle = AuthThrottle(limit: 2, window: 60)
        throttle.capacity = 100
        throttle.recordFailure("attacker", now: 0)
        throttle.recordFailure("attacker", now: 0)
        for k in 0..<1_000 { throttle.recordFailure("10.1.\(k)", now: 1 + Double(k) / 1_000) }
        #expect(throttle.trackedAddresses <= 100)
        throttle.recordFailure("late", now: 50)
        #expect(throttle.trackedAddresses <= 100)
        #expect(throttle.retryAfter("attacker", now: 30) == 30, "new addresses do not push a blocked one out")
    }
}
