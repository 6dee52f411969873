/// Studies whose completion is still to be acted on, and the durable outbox of
/// webhook notifications.
///
/// A study is *settled* at a processed count when the notifier has looked at it
/// complete with that many slices processed; new slices unsettle it again, so
/// a study that grows after a notification is looked at (and, if positive,
/// notified) once more. Settling and enqueueing commit in one transaction: a
/// crash between them cannot lose or double a notification.
public enum Outbox {
    /// Complete studies (every received slice processed or skipped, none received since
    /// `receivedBefore`) with slices processed since they were last settled.
    public static func unsettled(_ db: Connection, receivedBefore cutoff: Double, limit: Int) throws(StorageError) -> [StudyRecord] {
        try db.statement(
            """
            SELECT \(ResultStore.studyColumns) FROM studies
            WHERE settled < done + failed + skipped AND done + failed + skipped = received AND last_received_at <= ?
            ORDER BY last_received_at LIMIT ?
            """
        ).rows([.real(cutoff), .integer(Int64(limit))], ResultStore.readStudy)
    }

    /// How many notifications the study has had (0: none yet).
    public static func notifiedCount(_ db: Connection, study uid: String) throws(StorageError) -> Int {
        try db.statement("SELECT notified FROM studies WHERE study_instance_uid = ?").first([.text(uid)]) { $0.int(0) } ?? 0
    }

    /// Marks the study settled at `processed`; with `notifications`, queues them
    /// and counts one more notification of the study.
    public static func settle(
        _ db: Connection, study uid: String, processed: Int, notifications: [NewNotification]
    ) throws(StorageError) {
        try db.statement("UPDATE studies SET settled = ?, notified = notified + ? WHERE study_instance_uid = ?")
            .run([.int(processed), .int(notifications.isEmpty ? 0 : 1), .text(uid)])
        let insert = try db.statement(
            """
            INSERT INTO notifications (event_id, study_instance_uid, url, body, created_at, next_attempt_at)
            VALUES (?, ?, ?, ?, ?, ?)
            """)
        for notification in notifications {
            try insert.run([
                .text(notification.eventID), .text(uid), .text(notification.url), .blob(notification.body),
                .real(notification.createdAt), .real(notification.createdAt),
            ])
        }
    }

    /// Undelivered notifications whose next attempt is due, oldest first.
    public static func due(_ db: Connection, at now: Double, limit: Int) throws(StorageError) -> [PendingNotification] {
        try db.statement(
            """
            SELECT id, event_id, study_instance_uid, url, body, attempts FROM notifications
            WHERE delivered_at IS NULL AND abandoned_at IS NULL AND next_attempt_at <= ?
            ORDER BY next_attempt_at, id LIMIT ?
            """
        ).rows([.real(now), .integer(Int64(limit))]) {
            PendingNotification(id: $0.int(0), eventID: $0.text(1), studyInstanceUID: $0.text(2), url: $0.text(3), body: $0.blob(4),
                         attempts: $0.int(5))
        }
    }

    /// When the earliest undelivered notification is due, if any.
    public static func nextDue(_ db: Connection) throws(StorageError) -> Double? {
        try db.statement("SELECT min(next_attempt_at) FROM notifications WHERE delivered_at IS NULL AND abandoned_at IS NULL")
            .first { $0.optionalDouble(0) } ?? nil
    }

    public static func pendingCount(_ db: Connection) throws(StorageError) -> Int {
        try db.statement("SELECT count(*) FROM notifications WHERE delivered_at IS NULL AND abandoned_at IS NULL")
            .first { $0.int(0) } ?? 0
    }

    /// Records one attempt. `status` is the receiver's HTTP status (nil when no
    /// response came); `error` a fixed description, never response bytes.
    public static func record(
        _ db: Connection, id: Int, outcome: DeliveryOutcome, status: Int?, error: String?, at time: Double
    ) throws(StorageError) {
        try recordAttempt(db, table: "notifications", id: id, outcome: outcome, status: status, error: error, at: time)
    }

    /// One delivery attempt on a row of an outbox table (`notifications` or `results`, same columns).
    static func recordAttempt(
        _ db: Connection, table: StaticString, id: Int, outcome: DeliveryOutcome, status: Int?, error: String?, at time: Double
    ) throws(StorageError) {
        let (delivered, abandoned, next): (Double?, Double?, Double?) =
            switch outcome {
            case .delivered: (time, nil, nil)
            case .retry(let at): (nil, nil, at)
            case .abandoned: (nil, time, nil)
            }
        try db.statement(
            """
            UPDATE \(table) SET attempts = attempts + 1, delivered_at = ?, abandoned_at = ?,
                next_attempt_at = coalesce(?, next_attempt_at), last_status = ?, last_error = ?
            WHERE id = ?
            """
        ).run([.double(delivered), .double(abandoned), .double(next), .int(status), .string(error), .int(id)])
    }

    public static func notifications(_ db: Connection, study uid: String) throws(StorageError) -> [NotificationState] {
        try db.statement(
            """
            SELECT id, event_id, url, attempts, delivered_at, abandoned_at, last_status FROM notifications
            WHERE study_instance_uid = ? ORDER BY id
            """
        ).rows([.text(uid)]) {
            NotificationState(id: $0.int(0), eventID: $0.text(1), url: $0.text(2), attempts: $0.int(3),
                              deliveredAt: $0.optionalDouble(4), abandonedAt: $0.optionalDouble(5), lastStatus: $0.optionalInt(6))
        }
    }
}

public struct NewNotification: Sendable, Equatable {
    public var eventID: String
    public var url: String
    public var body: [UInt8]
    public var createdAt: Double

    public init(eventID: String, url: String, body: [UInt8], createdAt: Double) {
        self.eventID = eventID
        self.url = url
        self.body = body
        self.createdAt = createdAt
    }
}

/// A notification waiting for (another) delivery attempt.
public struct PendingNotification: Sendable, Equatable {
    public var id: Int
    public var eventID: String
    public var studyInstanceUID: String
    public var url: String
    public var body: [UInt8]
    /// Attempts made before this one.
    public var attempts: Int
}

public enum DeliveryOutcome: Sendable, Equatable {
    case delivered
    case retry(at: Double)
    case abandoned
}

public struct NotificationState: Sendable, Equatable {
    public var id: Int
    public var eventID: String
    public var url: String
    public var attempts: Int
    public var deliveredAt: Double?
    public var abandonedAt: Double?
    public var lastStatus: Int?
}
