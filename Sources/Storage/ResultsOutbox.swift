/// The durable outbox of result objects (the structured report) for the PACS: one row per object and
/// destination, queued in the transaction that settles the study, so a crash can neither lose nor
/// double the queuing; delivery is at least once (a destination that got it and crashed before the
/// row was marked gets it again, with the same SOP Instance UID, which replaces).
public enum ResultsOutbox {
    public static func enqueue(_ db: Connection, _ items: [NewResult]) throws(StorageError) {
        let insert = try db.statement(
            """
            INSERT INTO results (study_instance_uid, destination, sop_instance_uid, body, created_at, next_attempt_at)
            VALUES (?, ?, ?, ?, ?, ?)
            """)
        for item in items {
            try insert.run([.text(item.studyInstanceUID), .text(item.destination), .text(item.sopInstanceUID), .blob(item.body),
                            .real(item.createdAt), .real(item.createdAt)])
        }
    }

    /// Undelivered results whose next attempt is due, oldest first.
    public static func due(_ db: Connection, at now: Double, limit: Int) throws(StorageError) -> [PendingResult] {
        try db.statement(
            """
            SELECT id, study_instance_uid, destination, sop_instance_uid, body, attempts FROM results
            WHERE delivered_at IS NULL AND abandoned_at IS NULL AND next_attempt_at <= ?
            ORDER BY next_attempt_at, id LIMIT ?
            """
        ).rows([.real(now), .integer(Int64(limit))]) {
            PendingResult(id: $0.int(0), studyInstanceUID: $0.text(1), destination: $0.text(2), sopInstanceUID: $0.text(3),
                          body: $0.blob(4), attempts: $0.int(5))
        }
    }

    public static func pendingCount(_ db: Connection) throws(StorageError) -> Int {
        try db.statement("SELECT count(*) FROM results WHERE delivered_at IS NULL AND abandoned_at IS NULL").first { $0.int(0) } ?? 0
    }

    /// Records one attempt: `status` the destination's answer (a DIMSE or HTTP status; nil when none
    /// came), `error` a fixed description.
    public static func record(
        _ db: Connection, id: Int, outcome: DeliveryOutcome, status: Int?, error: String?, at time: Double
    ) throws(StorageError) {
        try Outbox.recordAttempt(db, table: "results", id: id, outcome: outcome, status: status, error: error, at: time)
    }

    public static func results(_ db: Connection, study uid: String) throws(StorageError) -> [ResultState] {
        try db.statement(
            """
            SELECT id, destination, sop_instance_uid, attempts, delivered_at, abandoned_at, last_status FROM results
            WHERE study_instance_uid = ? ORDER BY id
            """
        ).rows([.text(uid)]) {
            ResultState(id: $0.int(0), destination: $0.text(1), sopInstanceUID: $0.text(2), attempts: $0.int(3),
                        deliveredAt: $0.optionalDouble(4), abandonedAt: $0.optionalDouble(5), lastStatus: $0.optionalInt(6))
        }
    }
}

public struct NewResult: Sendable, Equatable {
    public var studyInstanceUID: String
    public var destination: String
    public var sopInstanceUID: String
    public var body: [UInt8]
    public var createdAt: Double

    public init(studyInstanceUID: String, destination: String, sopInstanceUID: String, body: [UInt8], createdAt: Double) {
        self.studyInstanceUID = studyInstanceUID
        self.destination = destination
        self.sopInstanceUID = sopInstanceUID
        self.body = body
        self.createdAt = createdAt
    }
}

/// A result object waiting for (another) delivery attempt.
public struct PendingResult: Sendable, Equatable {
    public var id: Int
    public var studyInstanceUID: String
    public var destination: String
    public var sopInstanceUID: String
    public var body: [UInt8]
    /// Attempts made before this one.
    public var attempts: Int
}

public struct ResultState: Sendable, Equatable {
    public var id: Int
    public var destination: String
    public var sopInstanceUID: String
    public var attempts: Int
    public var deliveredAt: Double?
    public var abandonedAt: Double?
    public var lastStatus: Int?
}
