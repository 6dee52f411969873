/// The durable queue: a slice row (an instance's frame) in state `queued`
/// with its spool file name is a job. Writes run inside the caller's
/// transaction (`DatabaseQueue.write`), so a batch of uploads or a batch of
/// results commits at once.
public enum JobQueue {
    /// Inserts each new instance, a row per frame, and counts its frames in its
    /// study, recording its series and study details on first sight. Returns,
    /// per instance, false when that SOP Instance UID was already stored (a
    /// frame already stored is not stored twice).
    public static func enqueue(_ db: Connection, _ instances: [NewInstance]) throws(StorageError) -> [Bool] {
        var inserted: [Bool] = []
        inserted.reserveCapacity(instances.count)
        let insertFrame = try db.statement(
            """
            INSERT OR IGNORE INTO instances (sop_instance_uid, frame_number, study_instance_uid, series_instance_uid,
                sop_class_uid, instance_number, position, received_at, state, spool_name, skip_reason, normal_x, normal_y, normal_z)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        for instance in instances {
            let skipped = instance.skipReason != nil
            var frames = 0
            for frame in instance.frames {
                try insertFrame.run([
                    .text(instance.sopInstanceUID), .int(frame.number), .text(instance.studyInstanceUID),
                    .text(instance.seriesInstanceUID), .text(instance.sopClassUID), .int(instance.instanceNumber),
                    .double(frame.position), .real(instance.receivedAt), .int((skipped ? InstanceState.skipped : .queued).rawValue),
                    .string(instance.spoolName), .string(instance.skipReason),
                    .double(frame.normal?[0]), .double(frame.normal?[1]), .double(frame.normal?[2]),
                ])
                frames += db.changes
            }
            inserted.append(frames > 0)
            guard frames > 0 else { continue }
            let d = instance.study
            try db.statement(
                """
                INSERT INTO studies (study_instance_uid, first_received_at, last_received_at, received, skipped, urgent,
                    accession_number, patient_id, patient_name, study_date, study_time, study_description, institution_name,
                    patient_birth_date, patient_sex, referring_physician_name, study_id, specific_character_set)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (study_instance_uid) DO UPDATE SET received = received + excluded.received,
                    skipped = skipped + excluded.skipped,
                    urgent = max(urgent, excluded.urgent),
                    first_received_at = min(first_received_at, excluded.first_received_at),
                    last_received_at = max(last_received_at, excluded.last_received_at),
                    accession_number = coalesce(accession_number, excluded.accession_number),
                    patient_id = coalesce(patient_id, excluded.patient_id),
                    patient_name = coalesce(patient_name, excluded.patient_name),
                    study_date = coalesce(study_date, excluded.study_date), study_time = coalesce(study_time, excluded.study_time),
                    study_description = coalesce(study_description, excluded.study_description),
                    institution_name = coalesce(institution_name, excluded.institution_name),
                    patient_birth_date = coalesce(patient_birth_date, excluded.patient_birth_date),
                    patient_sex = coalesce(patient_sex, excluded.patient_sex),
                    referring_physician_name = coalesce(referring_physician_name, excluded.referring_physician_name),
                    study_id = coalesce(study_id, excluded.study_id),
                    specific_character_set = coalesce(specific_character_set, excluded.specific_character_set)
                """
            ).run([
                .text(instance.studyInstanceUID), .real(instance.receivedAt), .real(instance.receivedAt), .int(frames),
                .int(skipped ? frames : 0),
                .int(instance.urgent ? 1 : 0), .string(d.accessionNumber), .string(d.patientID), .string(d.patientName), .string(d.studyDate),
                .string(d.studyTime), .string(d.studyDescription), .string(d.institutionName),
                .string(d.patientBirthDate), .string(d.patientSex), .string(d.referringPhysicianName), .string(d.studyID),
                .string(d.specificCharacterSet),
            ])
            let series = instance.series
            try db.statement(
                """
                INSERT OR IGNORE INTO series (study_instance_uid, series_instance_uid, series_number, modality, original,
                    kernel_class, slice_thickness, first_received_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """
            ).run([
                .text(instance.studyInstanceUID), .text(instance.seriesInstanceUID), .int(series.seriesNumber),
                .string(series.modality), .int(series.original.map { $0 ? 1 : 0 }), .string(series.kernelClass),
                .double(series.sliceThickness), .real(instance.receivedAt),
            ])
        }
        return inserted
    }

    /// Stores what the service derived for a study (its primary series' maxima, roles, assessability).
    public static func summarize(_ db: Connection, study uid: String, _ summary: StudySummary) throws(StorageError) {
        let maxima: [DatabaseValue] = (0..<Schema.labelCount).map { k in summary.maxima.map { .real(Double($0[k])) } ?? .null }
        try db.statement(
            """
            UPDATE studies SET max_any = ?, max_epidural = ?, max_intraparenchymal = ?, max_intraventricular = ?,
                max_subarachnoid = ?, max_subdural = ?, primary_series_uid = ?, assessable = ?, not_assessable_reason = ?
            WHERE study_instance_uid = ?
            """
        ).run(maxima + [.string(summary.primarySeriesUID), .int(summary.assessable ? 1 : 0), .string(summary.notAssessableReason),
                        .text(uid)])
    }

    /// Jobs still waiting, oldest first, with their study's urgency: what a restart resumes.
    /// An operator's priority for a study: its queued and later jobs are served first (true) or by
    /// size like any other (false; a later STAT instance makes it urgent again). False if no such study.
    public static func prioritize(_ db: Connection, study uid: String, urgent: Bool) throws(StorageError) -> Bool {
        try db.statement("UPDATE studies SET urgent = ? WHERE study_instance_uid = ?").run([.int(urgent ? 1 : 0), .text(uid)])
        return db.changes == 1
    }

    public static func queued(_ db: Connection, limit: Int = .max) throws(StorageError) -> [Job] {
        try db.statement(
            """
            SELECT i.sop_instance_uid, i.frame_number, i.study_instance_uid, i.spool_name, i.received_at, s.urgent
            FROM instances i JOIN studies s USING (study_instance_uid) WHERE i.state = 0
            ORDER BY i.received_at, i.rowid LIMIT ?
            """
        ).rows([.integer(Int64(min(limit, Int(Int64.max))))]) {
            Job(sopInstanceUID: $0.text(0), frameNumber: $0.int(1), studyInstanceUID: $0.text(2), spoolName: $0.text(3),
                receivedAt: $0.double(4), urgent: $0.int(5) != 0)
        }
    }

    public static func queuedCount(_ db: Connection) throws(StorageError) -> Int {
        try db.statement("SELECT count(*) FROM instances WHERE state = 0").first { $0.int(0) } ?? 0
    }

    /// Records outcomes and counts them in their studies (the service then
    /// summarises each study again); returns per outcome whether it was
    /// recorded. A job is known by its slice and its spool file: one that is
    /// no longer queued (its study was deleted meanwhile), or whose instance
    /// was deleted and uploaded again (a new row with a new spool file), is
    /// skipped.
    @discardableResult
    public static func complete(_ db: Connection, _ outcomes: [CompletedJob], model: String, at time: Double)
        throws(StorageError) -> [Bool]
    {
        var recorded: [Bool] = []
        recorded.reserveCapacity(outcomes.count)
        for job in outcomes {
            let key: [DatabaseValue] = [.text(job.sopInstanceUID), .int(job.frameNumber)]
            let study = try db.statement(
                """
                SELECT study_instance_uid FROM instances
                WHERE sop_instance_uid = ? AND frame_number = ? AND state = 0 AND spool_name = ?
                """
            ).first(key + [.text(job.spoolName)]) { $0.text(0) }
            guard let study else {
                recorded.append(false)
                continue
            }
            switch job.outcome {
            case .done(let p):
                precondition(p.count == Schema.labelCount, "six probabilities per slice")
                try db.statement(
                    """
                    UPDATE instances SET state = 1, spool_name = NULL, processed_at = ?, model = ?,
                        p_any = ?, p_epidural = ?, p_intraparenchymal = ?, p_intraventricular = ?, p_subarachnoid = ?, p_subdural = ?
                    WHERE sop_instance_uid = ? AND frame_number = ?
                    """
                ).run([.real(time), .text(model)] + p.map { .real(Double($0)) } + key)
                try db.statement("UPDATE studies SET done = done + 1 WHERE study_instance_uid = ?").run([.text(study)])
            case .failed(let type, let detail):
                try db.statement(
                    """
                    UPDATE instances SET state = 2, spool_name = NULL, processed_at = ?, model = ?, error_type = ?, error_detail = ?
                    WHERE sop_instance_uid = ? AND frame_number = ?
                    """
                ).run([.real(time), .text(model), .text(type), .text(detail)] + key)
                try db.statement("UPDATE studies SET failed = failed + 1 WHERE study_instance_uid = ?").run([.text(study)])
            }
            recorded.append(true)
        }
        return recorded
    }

    /// The spool files among `names` that no queued job needs any more: a multi-frame object's file stays
    /// until its last frame's outcome is recorded.
    public static func releasable(_ db: Connection, spoolFiles names: some Sequence<String>) throws(StorageError) -> [String] {
        let stillQueued = try db.statement("SELECT 1 FROM instances WHERE state = 0 AND spool_name = ? LIMIT 1")
        var free: [String] = []
        for name in Set(names).sorted() {
            if try stillQueued.first([.text(name)], { _ in true }) == nil { free.append(name) }
        }
        return free
    }

    /// Removes a study, its instances and its notifications (the audit trail stays). Returns the
    /// spool files of its still-queued jobs (for the caller to delete), or nil
    /// when the study is unknown.
    public static func deleteStudy(_ db: Connection, _ studyInstanceUID: String) throws(StorageError) -> [String]? {
        let exists = try db.statement("SELECT 1 FROM studies WHERE study_instance_uid = ?")
            .first([.text(studyInstanceUID)]) { _ in true } ?? false
        guard exists else { return nil }
        let spool = try db.statement(
            "SELECT DISTINCT spool_name FROM instances WHERE study_instance_uid = ? AND state = 0 AND spool_name IS NOT NULL"
        ).rows([.text(studyInstanceUID)]) { $0.text(0) }
        try db.statement("DELETE FROM instances WHERE study_instance_uid = ?").run([.text(studyInstanceUID)])
        try db.statement("DELETE FROM studies WHERE study_instance_uid = ?").run([.text(studyInstanceUID)])
        try db.statement("DELETE FROM series WHERE study_instance_uid = ?").run([.text(studyInstanceUID)])
        try db.statement("DELETE FROM notifications WHERE study_instance_uid = ?").run([.text(studyInstanceUID)])
        try db.statement("DELETE FROM results WHERE study_instance_uid = ?").run([.text(studyInstanceUID)])
        return spool
    }
}
