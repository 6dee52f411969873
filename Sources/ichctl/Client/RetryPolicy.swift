import Foundation

/// When to try a request again and how long to wait first: exponential backoff with "equal"
/// jitter (a random wait between half the ceiling and the ceiling, so parallel clients spread
/// out but never retry at once), or the server's Retry-After; both capped at `maxDelay`.
struct RetryPolicy: Sendable {
    /// Tries after the first.
    var retries: Int = 5
    var baseDelay: Double = 0.5
    var maxDelay: Double = 60

    /// 408, 429 and every 5xx except 501 and 505 (which a retry cannot change).
    static func isRetryable(status: Int) -> Bool {
        status == 408 || status == 429 || (500...599).contains(status) && status != 501 && status != 505
    }

    /// Seconds to wait before retry number `attempt` (1-based). `retryAfter` is the
    /// header's value; `unit` a random number in [0, 1) for the jitter.
    func delay(attempt: Int, retryAfter: String?, unit: Double) -> Double {
        if let retryAfter, let seconds = Double(retryAfter.trimmingCharacters(in: .whitespaces)), seconds >= 0 {
            return min(seconds, maxDelay)
        }
        let ceiling = min(maxDelay, baseDelay * Double(1 << min(max(attempt - 1, 0), 20)))
        return ceiling / 2 + ceiling / 2 * unit
    }
}
