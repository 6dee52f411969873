/// Failed authentications per client address in fixed windows: once an
/// address has `limit` failures in a window, every request of it that needs
/// a token is refused (429, before any token lookup) until the window ends.
/// The table holds at most `capacity` addresses; past that, expired windows
/// are dropped first, then the oldest address that is not blocked.
struct AuthThrottle: Sendable {
    var limit: Int
    var window: Double
    var capacity = 10_000
    private var failures: [String: (start: Double, count: Int)] = [:]

    init(limit: Int, window: Double) {
        self.limit = limit
        self.window = window
    }

    var isEnabled: Bool { limit > 0 }
    var trackedAddresses: Int { failures.count }

    /// Seconds until `address` may try again, or nil when it may now.
    func retryAfter(_ address: String, now: Double) -> Double? {
        guard isEnabled, let entry = failures[address], entry.count >= limit, now < entry.start + window else { return nil }
        return entry.start + window - now
    }

    mutating func recordFailure(_ address: String, now: Double) {
        guard isEnabled else { return }
        if let entry = failures[address], now < entry.start + window {
            failures[address] = (entry.start, entry.count + 1)
            return
        }
        if failures.count >= capacity {
            failures = failures.filter { now < $0.value.start + window }
            // Blocked addresses go last, so spraying new addresses cannot unblock one.
            if failures.count >= capacity,
               let victim = failures.min(by: { (a, b) in
                   let (aBlocked, bBlocked) = (a.value.count >= limit, b.value.count >= limit)
                   return aBlocked != bBlocked ? !aBlocked : a.value.start < b.value.start
               }) {
                failures[victim.key] = nil
            }
        }
        failures[address] = (now, 1)
    }
}
