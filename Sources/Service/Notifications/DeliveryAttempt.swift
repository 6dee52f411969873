import Logging
import Storage
import Synchronization

/// One delivery attempt's outcome, as an outbox records it (webhooks and result objects alike).
struct DeliveryAttempt {
    var outcome: DeliveryOutcome
    /// The peer's answer: an HTTP or DIMSE status; nil when none came.
    var status: Int?
    /// A fixed description, never response bytes.
    var error: String?
}

/// Counts a failure of a delivery or settling loop's database work and logs the first of a run of
/// them and every 60th after it, with the cause, so a lasting fault is logged now and then, not every look.
func recordLoopFailure(_ message: Logger.Message, _ error: any Error, failures: borrowing Atomic<Int>, metrics: ServiceMetrics,
                       logger: Logger) {
    metrics.error("database")
    let count = failures.add(1, ordering: .relaxed).newValue
    if count == 1 || count.isMultiple(of: 60) {
        logger.error(message, metadata: ["error": "\(loggable(error))", "consecutive_failures": "\(count)"])
    }
}
