/// How a batch's results are committed again after a failure: a full disk or a
/// locked database clears when an operator acts, so the pipeline never gives up
/// (until shutdown). The wait grows by 0.1 s per failure up to 2 s; the log
/// hears of the first failure and of every 20th, not of each.
struct CommitRetry: Equatable {
    private(set) var failures = 0

    /// Records a failed attempt: how long to wait before the next one, and whether to log this one.
    mutating func failed() -> (delay: Double, log: Bool) {
        failures += 1
        return (min(2.0, 0.1 * Double(failures)), failures == 1 || failures.isMultiple(of: 20))
    }
}
