/// The durable queue: an instance row in state `queued` with its spool file
/// name is a job. Writes run inside the caller's transaction
/// (`DatabaseQueue.write`), so a batch of uploads or a batch of results
/// commits at once.
public enum JobQueue {
    /// Inserts each new instance and counts it in its study. Returns, per
    /// instance, false when that SOP Instance UID was already stored.
    public static func enqueue(_ db: Connection, _ instances: [NewInstance]) throws(StorageError) -> [Bool] {
        var inserted: [Bool] = []
        inserted.reserveCapacity(instances.count)
        let insertInstance = try db.statement(
            """
            INSERT OR IGNORE INTO instances (sop_instance_uid, study_instance_uid, series_instance_uid, sop_class_uid,
                instance_number, position, received_at, state, spool_name)
            VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)
            """)
        for instance in instances {
            try insertInstance.run([
                .text(instance.sopInstanceUID), .text(instance.studyInstanceUID), .text(instance.seriesInstanceUID),
                .text(instance.sopClassUID), .int(instance.instanceNumber), .double(instance.position),
                .real(instance.receivedAt), .text(instance.spoolName),
            ])
            let isNew = db.changes == 1
            inserted.append(isNew)
            guard isNew else { continue }
            try db.statement(
                """
                INSERT INTO studies (study_instance_uid, first_received_at, last_received_at, received) VALUES (?, ?, ?, 1)
                ON CONFLICT (study_instance_uid) DO UPDATE SET received = received + 1,
                    first_received_at = min(first_received_at, excluded.first_received_at),
                    last_received_at = max(last_received_at, excluded.last_received_at)
                """
            ).run([.text(instance.studyInstanceUID), .real(instance.receivedAt), .real(instance.receivedAt)])
        }
        return inserted
    }

    /// Jobs still waiting, oldest first: what a restart resumes.
    public static func queued(_ db: Connection, limit: Int = .max) throws(StorageError) -> [Job] {
        try db.statement(
            "SELECT sop_instance_uid, spool_name, received_at FROM instances WHERE state = 0 ORDER BY received_at, rowid LIMIT ?"
        ).rows([.integer(Int64(min(limit, Int(Int64.max))))]) {
            Job(sopInstanceUID: $0.text(0), spoolName: $0.text(1), receivedAt: $0.double(2))
        }
    }

    public static func queuedCount(_ db: Connection) throws(StorageError) -> Int {
        try db.statement("SELECT count(*) FROM instances WHERE state = 0").first { $0.int(0) } ?? 0
    }

    /// Records outcomes and folds them into their studies; returns per outcome
    /// whether it was recorded. A job is known by its instance and its spool
    /// file: one that is no longer queued (its study was deleted meanwhile),
    /// or whose instance was deleted and uploaded again (a new row with a new
    /// spool file), is skipped.
    @discardableResult
    public static func complete(
        _ db: Connection, _ outcomes: [(sopInstanceUID: String, spoolName: String, outcome: JobOutcome)], model: String,
        at time: Double
    ) throws(StorageError) -> [Bool] {
        var recorded: [Bool] = []
        recorded.reserveCapacity(outcomes.count)
        for (sop, spoolName, outcome) in outcomes {
            let study = try db.statement(
                "SELECT study_instance_uid FROM instances WHERE sop_instance_uid = ? AND state = 0 AND spool_name = ?"
            ).first([.text(sop), .text(spoolName)]) { $0.text(0) }
            guard let study else {
                recorded.append(false)
                continue
            }
            switch outcome {
            case .done(let p):
                precondition(p.count == Schema.labelCount, "six probabilities per slice")
                try db.statement(
                    """
                    UPDATE instances SET state = 1, spool_name = NULL, processed_at = ?, model = ?,
                        p_any = ?, p_epidural = ?, p_intraparenchymal = ?, p_intraventricular = ?, p_subarachnoid = ?, p_subdural = ?
                    WHERE sop_instance_uid = ?
                    """
                ).run([.real(time), .text(model)] + p.map { .real(Double($0)) } + [.text(sop)])
                try db.statement(
                    """
                    UPDATE studies SET done = done + 1,
                        max_any = max(coalesce(max_any, -1), ?), max_epidural = max(coalesce(max_epidural, -1), ?),
                        max_intraparenchymal = max(coalesce(max_intraparenchymal, -1), ?),
                        max_intraventricular = max(coalesce(max_intraventricular, -1), ?),
                        max_subarachnoid = max(coalesce(max_subarachnoid, -1), ?), max_subdural = max(coalesce(max_subdural, -1), ?)
                    WHERE study_instance_uid = ?
                    """
                ).run(p.map { .real(Double($0)) } + [.text(study)])
            case .failed(let type, let detail):
                try db.statement(
                    """
                    UPDATE instances SET state = 2, spool_name = NULL, processed_at = ?, model = ?, error_type = ?, error_detail = ?
                    WHERE sop_instance_uid = ?
                    """
                ).run([.real(time), .text(model), .text(type), .text(detail), .text(sop)])
                try db.statement("UPDATE studies SET failed = failed + 1 WHERE study_instance_uid = ?").run([.text(study)])
            }
            recorded.append(true)
        }
        return recorded
    }

    /// Removes a study, its instances and its notifications (the audit trail stays). Returns the
    /// spool files of its still-queued jobs (for the caller to delete), or nil
    /// when the study is unknown.
    public static func deleteStudy(_ db: Connection, _ studyInstanceUID: String) throws(StorageError) -> [String]? {
        let exists = try db.statement("SELECT 1 FROM studies WHERE study_instance_uid = ?")
            .first([.text(studyInstanceUID)]) { _ in true } ?? false
        guard exists else { return nil }
        let spool = try db.statement(
            "SELECT spool_name FROM instances WHERE study_instance_uid = ? AND state = 0 AND spool_name IS NOT NULL"
        ).rows([.text(studyInstanceUID)]) { $0.text(0) }
        try db.statement("DELETE FROM instances WHERE study_instance_uid = ?").run([.text(studyInstanceUID)])
        try db.statement("DELETE FROM studies WHERE study_instance_uid = ?").run([.text(studyInstanceUID)])
        try db.statement("DELETE FROM notifications WHERE study_instance_uid = ?").run([.text(studyInstanceUID)])
        return spool
    }
}
