import Dispatch
import Foundation
import Logging
import Storage
import Synchronization

/// `--retention-days`: deletes studies that completed more than that many days ago, at start and
/// `period` seconds after each pass (five minutes in the service), on a queue of its own.
///
/// Uploads share the one writer connection, whose queue serves callers in turn: each batch is a short
/// transaction, and before the next one the sweeper waits at least as long as the batch took, so an
/// upload waits for at most one batch and retention never holds more than about half of the writer's time.
final class RetentionSweeper: Sendable {
    /// Small enough that one batch commits in tens of milliseconds on a slow disk.
    static let maxStudies = 8
    static let maxSlices = 2_000
    static let minimumPause: Double = 0.05

    private let days: Int
    private let period: Double
    private let writer: DatabaseQueue
    private let spool: Spool
    private let metrics: ServiceMetrics
    private let logger: Logger
    private let clock: WallClock
    private let queue = DispatchQueue(label: "ich-retention")
    private let stopped = Atomic<Bool>(false)

    init(days: Int, writer: DatabaseQueue, spool: Spool, metrics: ServiceMetrics, logger: Logger, clock: WallClock,
         period: Double = 300) {
        self.days = days
        self.period = period
        self.writer = writer
        self.spool = spool
        self.metrics = metrics
        self.logger = logger
        self.clock = clock
    }

    func start() {
        logger.info("retention on: studies are deleted after they completed", metadata: ["retention_days": "\(days)"])
        queue.async { [self] in step(PassTotals()) }
    }

    /// Ends the pass in progress after its current batch (waited for) and schedules no other.
    func stop() {
        stopped.store(true, ordering: .relaxed)
        queue.sync {}
    }

    /// Deletes one batch of expired studies, then unlinks their spool files: a crash between the commit
    /// and the unlink leaves files without a job, which the next start's spool recovery removes.
    func deleteBatch() throws -> Retention.Batch {
        let now = clock.now()
        let cutoff = now - Double(days) * 86_400
        let batch = try writer.write {
            try Retention.deleteBatch($0, completedBefore: cutoff, maxStudies: Self.maxStudies, maxSlices: Self.maxSlices, at: now)
        }
        for name in batch.spoolFiles { spool.remove(name) }
        metrics.retentionDeleted(studies: batch.studies.count, slices: batch.slices)
        return batch
    }

    /// One pass at once: batches back to back until none is left, on the caller's thread (the tests' way in).
    @discardableResult
    func runPass() throws -> PassTotals {
        var totals = PassTotals()
        while true {
            let batch = try deleteBatch()
            if batch.studies.isEmpty { return totals }
            totals.add(batch)
        }
    }

    struct PassTotals: Sendable, Equatable {
        var studies = 0
        var slices = 0
        var batches = 0

        mutating func add(_ batch: Retention.Batch) {
            studies += batch.studies.count
            slices += batch.slices
            batches += 1
        }
    }

    private func step(_ totals: PassTotals) {
        guard !stopped.load(ordering: .relaxed) else { return }
        let started = DispatchTime.now()
        do {
            let batch = try deleteBatch()
            guard !batch.studies.isEmpty else { return finish(totals) }
            var next = totals
            next.add(batch)
            let took = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
            queue.asyncAfter(deadline: .now() + max(Self.minimumPause, took)) { [self, next] in step(next) }
        } catch {
            // A locked or failing database: what is left waits for the next pass.
            metrics.error("database")
            logger.error("retention pass failed; retrying at the next pass",
                         metadata: ["error": "\(loggable(error))", "studies_deleted": "\(totals.studies)"])
            schedulePass()
        }
    }

    private func finish(_ totals: PassTotals) {
        if totals.studies > 0 {
            logger.info("retention pass deleted studies",
                        metadata: ["studies": "\(totals.studies)", "slices": "\(totals.slices)", "batches": "\(totals.batches)"])
        }
        schedulePass()
    }

    private func schedulePass() {
        queue.asyncAfter(deadline: .now() + period) { [self] in step(PassTotals()) }
    }
}
