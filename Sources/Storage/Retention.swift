/// Ageing out: studies whose last activity (the later of their last slice's arrival and their last
/// slice's outcome) is older than a cutoff are deleted, a few per transaction, each with an audit row.
///
/// A study is only ever deleted when nothing can still happen to it: every slice has an outcome or was
/// skipped, the notifier has settled it (it looked at it complete) and none of its notifications is
/// still waiting for delivery. A late slice makes the study young again (it moves `last_received_at`),
/// so a study that grew after completion ages from its newest slice.
public enum Retention {
    /// The audit action of a study deleted by retention; `token_id` is NULL (the service itself).
    public static let auditAction = "retention-delete-study"

    /// What one batch deleted, and the spool files to unlink once it has committed.
    public struct Batch: Sendable, Equatable {
        public var studies: [String] = []
        public var slices = 0
        public var spoolFiles: [String] = []

        public init(studies: [String] = [], slices: Int = 0, spoolFiles: [String] = []) {
            self.studies = studies
            self.slices = slices
            self.spoolFiles = spoolFiles
        }
    }

    /// Studies past the cutoff (?1), oldest first, with their slice counts, at most ?2 of them. The age
    /// index gives them in order and the scan stops after the limit.
    static let expiredSQL = """
        SELECT s.study_instance_uid, s.received FROM studies s
        WHERE s.last_received_at < ?1 AND s.done + s.failed + s.skipped = s.received
          AND s.settled >= s.done + s.failed + s.skipped
          AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.study_instance_uid = s.study_instance_uid
                          AND (i.state = 0 OR i.processed_at >= ?1))
          AND NOT EXISTS (SELECT 1 FROM notifications n WHERE n.study_instance_uid = s.study_instance_uid
                          AND n.delivered_at IS NULL AND n.abandoned_at IS NULL)
        ORDER BY s.last_received_at LIMIT ?2
        """

    public static func expired(_ db: Connection, before cutoff: Double, limit: Int) throws(StorageError) -> [(uid: String, slices: Int)] {
        try db.statement(expiredSQL).rows([.real(cutoff), .integer(Int64(limit))]) { (uid: $0.text(0), slices: $0.int(1)) }
    }

    /// Deletes, in the caller's transaction, up to `maxStudies` expired studies holding together at
    /// most `maxSlices` slices (a single larger study is deleted alone), each with its slices, series
    /// and notifications, and audits each deletion at `now`. The audit trail itself is kept.
    public static func deleteBatch(
        _ db: Connection, completedBefore cutoff: Double, maxStudies: Int, maxSlices: Int, at now: Double
    ) throws(StorageError) -> Batch {
        var batch = Batch()
        for study in try expired(db, before: cutoff, limit: maxStudies) {
            if !batch.studies.isEmpty && batch.slices + study.slices > maxSlices { break }
            // A completed study normally has no spool file left (each is unlinked once its result is
            // stored); any name still recorded is returned so that nothing of the study outlives it.
            let spool = try db.statement(
                "SELECT DISTINCT spool_name FROM instances WHERE study_instance_uid = ? AND spool_name IS NOT NULL"
            ).rows([.text(study.uid)]) { $0.text(0) }
            guard try JobQueue.deleteStudy(db, study.uid) != nil else { continue }
            try AuditLog.record(db, tokenID: nil, action: auditAction, study: study.uid, at: now)
            batch.studies.append(study.uid)
            batch.slices += study.slices
            batch.spoolFiles += spool
        }
        return batch
    }
}
