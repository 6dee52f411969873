/// When to run a batch: as soon as `maxBatch` items wait, or when the oldest
/// has waited `maxDelay` seconds. Pure, with time passed in, so it is tested
/// without clocks or threads.
public struct BatchPolicy: Sendable, Equatable {
    public var maxBatch: Int
    public var maxDelay: Double

    public init(maxBatch: Int = 8, maxDelay: Double = 0.010) {
        precondition(maxBatch >= 1 && maxDelay >= 0, "maxBatch >= 1 and maxDelay >= 0")
        self.maxBatch = maxBatch
        self.maxDelay = maxDelay
    }

    public enum Decision: Sendable, Equatable {
        case idle
        case run(count: Int)
        case wait(until: Double)
    }

    public func decide(queued: Int, oldestArrival: Double?, now: Double) -> Decision {
        guard queued > 0, let oldestArrival else { return .idle }
        if queued >= maxBatch { return .run(count: maxBatch) }
        let deadline = oldestArrival + maxDelay
        return now >= deadline ? .run(count: queued) : .wait(until: deadline)
    }
}
