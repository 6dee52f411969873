/// Read queries behind the study, instance and worklist endpoints.
public enum ResultStore {
    static let instanceColumns = """
        sop_instance_uid, frame_number, study_instance_uid, series_instance_uid, sop_class_uid, instance_number, position,
        received_at, state, \(Schema.probabilityColumns), error_type, error_detail, processed_at, model, skip_reason,
        normal_x, normal_y, normal_z
        """
    static let studyColumns = """
        study_instance_uid, first_received_at, last_received_at, received, done, failed, \(Schema.maximumColumns),
        skipped, primary_series_uid, assessable, not_assessable_reason, accession_number, patient_id, patient_name,
        study_date, study_time, study_description, institution_name, urgent, patient_birth_date, patient_sex,
        referring_physician_name, study_id, specific_character_set
        """

    public static func study(_ db: Connection, _ uid: String) throws(StorageError) -> StudyRecord? {
        try db.statement("SELECT \(studyColumns) FROM studies WHERE study_instance_uid = ?").first([.text(uid)], readStudy)
    }

    /// The study's instances in no particular order (the caller sorts by position).
    public static func instances(_ db: Connection, study uid: String) throws(StorageError) -> [InstanceRecord] {
        try db.statement("SELECT \(instanceColumns) FROM instances WHERE study_instance_uid = ?").rows([.text(uid)], readInstance)
    }

    /// The study's series in order of arrival.
    public static func series(_ db: Connection, study uid: String) throws(StorageError) -> [SeriesRecord] {
        try db.statement(
            """
            SELECT study_instance_uid, series_instance_uid, series_number, modality, original, kernel_class, slice_thickness,
                first_received_at
            FROM series WHERE study_instance_uid = ? ORDER BY first_received_at, series_instance_uid
            """
        ).rows([.text(uid)]) {
            SeriesRecord(
                studyInstanceUID: $0.text(0), seriesInstanceUID: $0.text(1),
                details: SeriesDetails(seriesNumber: $0.optionalInt(2), modality: $0.optionalText(3),
                                       original: $0.optionalInt(4).map { $0 != 0 }, kernelClass: $0.optionalText(5),
                                       sliceThickness: $0.optionalDouble(6)),
                firstReceivedAt: $0.double(7))
        }
    }

    /// An instance's frames in frame order; empty when unknown.
    public static func instance(_ db: Connection, _ sop: String) throws(StorageError) -> [InstanceRecord] {
        try db.statement("SELECT \(instanceColumns) FROM instances WHERE sop_instance_uid = ? ORDER BY frame_number")
            .rows([.text(sop)], readInstance)
    }

    /// Where a worklist page starts: after the study with this `any` maximum
    /// (-1 for none yet) and UID, in worklist order.
    public struct Cursor: Sendable, Equatable {
        public var anyMaximum: Double
        public var studyInstanceUID: String

        public init(anyMaximum: Double, studyInstanceUID: String) {
            self.anyMaximum = anyMaximum
            self.studyInstanceUID = studyInstanceUID
        }
    }

    /// Studies by their `any` maximum, highest first, studies without results
    /// last, ties by UID. `minimumAny` keeps only studies at or above it;
    /// `since` only those that received an instance at or after it;
    /// `assessable` only those that are (true) or are not (false) assessable.
    public static func worklist(
        _ db: Connection, minimumAny: Double?, since: Double?, assessable: Bool? = nil, after cursor: Cursor?, limit: Int
    ) throws(StorageError) -> [StudyRecord] {
        try db.statement(
            """
            SELECT \(studyColumns) FROM studies
            WHERE (?1 IS NULL OR max_any >= ?1) AND (?2 IS NULL OR last_received_at >= ?2)
              AND (?3 IS NULL OR coalesce(max_any, -1) < ?3 OR (coalesce(max_any, -1) = ?3 AND study_instance_uid > ?4))
              AND (?6 IS NULL OR coalesce(assessable, 0) = ?6)
            ORDER BY coalesce(max_any, -1) DESC, study_instance_uid
            LIMIT ?5
            """
        ).rows(
            [.double(minimumAny), .double(since), .double(cursor?.anyMaximum), .string(cursor?.studyInstanceUID),
             .integer(Int64(limit)), .int(assessable.map { $0 ? 1 : 0 })], readStudy)
    }

    static func readStudy(_ row: Statement) -> StudyRecord {
        StudyRecord(
            studyInstanceUID: row.text(0), firstReceivedAt: row.double(1), lastReceivedAt: row.double(2),
            received: row.int(3), done: row.int(4), failed: row.int(5), skipped: row.int(12),
            maxima: row.isNull(6) ? nil : (6..<12).map { Float(row.double(Int32($0))) },
            primarySeriesUID: row.optionalText(13), assessable: row.optionalInt(14).map { $0 != 0 },
            notAssessableReason: row.optionalText(15),
            details: StudyDetails(accessionNumber: row.optionalText(16), patientID: row.optionalText(17),
                                  patientName: row.optionalText(18), studyDate: row.optionalText(19), studyTime: row.optionalText(20),
                                  studyDescription: row.optionalText(21), institutionName: row.optionalText(22),
                                  patientBirthDate: row.optionalText(24), patientSex: row.optionalText(25),
                                  referringPhysicianName: row.optionalText(26), studyID: row.optionalText(27),
                                  specificCharacterSet: row.optionalText(28)),
            urgent: row.int(23) != 0)
    }

    static func readInstance(_ row: Statement) -> InstanceRecord {
        InstanceRecord(
            sopInstanceUID: row.text(0), frameNumber: row.int(1), studyInstanceUID: row.text(2), seriesInstanceUID: row.text(3),
            sopClassUID: row.text(4), instanceNumber: row.optionalInt(5), position: row.optionalDouble(6),
            receivedAt: row.double(7), state: InstanceState(rawValue: row.int(8)) ?? .failed,
            probabilities: row.isNull(9) ? nil : (9..<15).map { Float(row.double(Int32($0))) },
            errorType: row.optionalText(15), errorDetail: row.optionalText(16), processedAt: row.optionalDouble(17),
            model: row.optionalText(18), skipReason: row.optionalText(19),
            normal: row.isNull(20) ? nil : (20..<23).map { row.double(Int32($0)) })
    }
}
