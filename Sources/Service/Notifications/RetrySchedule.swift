/// When a failed delivery is tried again: exponential backoff from `base`,
/// capped, never sooner than the receiver's Retry-After, and given up after
/// `maxAttempts` attempts.
public struct RetrySchedule: Sendable, Equatable {
    public var base: Double
    public var cap: Double
    public var maxAttempts: Int

    /// Seconds until the next attempt after `attempts` failed ones, or nil to give up.
    public func delay(afterAttempts attempts: Int, retryAfter: Double? = nil) -> Double? {
        guard attempts < maxAttempts else { return nil }
        let backoff = min(cap, base * Double(1 << min(max(attempts - 1, 0), 30)))
        return min(cap, max(backoff, retryAfter ?? 0))
    }
}
