/// The service's tables. Append new steps; never edit a released one.
///
/// Probabilities are six columns in the RSNA label order (any, epidural,
/// intraparenchymal, intraventricular, subarachnoid, subdural). `studies`
/// keeps running aggregates so the worklist is one indexed scan.
public enum Schema {
    public static let migrations: [Migration] = [
        Migration(
            "1-instances-studies",
            """
            CREATE TABLE instances (
                sop_instance_uid TEXT PRIMARY KEY,
                study_instance_uid TEXT NOT NULL,
                series_instance_uid TEXT NOT NULL,
                sop_class_uid TEXT NOT NULL,
                instance_number INTEGER,
                position REAL,
                received_at REAL NOT NULL,
                state INTEGER NOT NULL DEFAULT 0,
                spool_name TEXT,
                p_any REAL, p_epidural REAL, p_intraparenchymal REAL,
                p_intraventricular REAL, p_subarachnoid REAL, p_subdural REAL,
                error_type TEXT,
                error_detail TEXT,
                processed_at REAL,
                model TEXT
            );
            CREATE INDEX instances_by_study ON instances (study_instance_uid);
            CREATE INDEX instances_queued ON instances (received_at) WHERE state = 0;
            CREATE TABLE studies (
                study_instance_uid TEXT PRIMARY KEY,
                first_received_at REAL NOT NULL,
                last_received_at REAL NOT NULL,
                received INTEGER NOT NULL DEFAULT 0,
                done INTEGER NOT NULL DEFAULT 0,
                failed INTEGER NOT NULL DEFAULT 0,
                max_any REAL, max_epidural REAL, max_intraparenchymal REAL,
                max_intraventricular REAL, max_subarachnoid REAL, max_subdural REAL
            );
            CREATE INDEX studies_worklist ON studies (coalesce(max_any, -1) DESC, study_instance_uid);
            """),
        Migration(
            "2-tokens-audit",
            """
            CREATE TABLE tokens (
                id INTEGER PRIMARY KEY,
                hash BLOB NOT NULL UNIQUE,
                scope TEXT NOT NULL,
                name TEXT NOT NULL,
                created_at REAL NOT NULL,
                revoked_at REAL
            );
            CREATE TABLE audit (
                id INTEGER PRIMARY KEY,
                at REAL NOT NULL,
                token_id INTEGER,
                action TEXT NOT NULL,
                study_instance_uid TEXT,
                sop_instance_uid TEXT
            );
            CREATE INDEX audit_by_study ON audit (study_instance_uid);
            """),
        Migration(
            "3-notification-outbox",
            """
            ALTER TABLE studies ADD COLUMN settled INTEGER NOT NULL DEFAULT 0;
            ALTER TABLE studies ADD COLUMN notified INTEGER NOT NULL DEFAULT 0;
            UPDATE studies SET settled = done + failed;
            CREATE INDEX studies_unsettled ON studies (last_received_at) WHERE settled < done + failed;
            CREATE TABLE notifications (
                id INTEGER PRIMARY KEY,
                event_id TEXT NOT NULL,
                study_instance_uid TEXT NOT NULL,
                url TEXT NOT NULL,
                body BLOB NOT NULL,
                created_at REAL NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at REAL NOT NULL,
                delivered_at REAL,
                abandoned_at REAL,
                last_status INTEGER,
                last_error TEXT
            );
            CREATE INDEX notifications_due ON notifications (next_attempt_at)
                WHERE delivered_at IS NULL AND abandoned_at IS NULL;
            """),
        Migration(
            "4-readiness-probe",
            """
            CREATE TABLE readiness_probe (id INTEGER PRIMARY KEY CHECK (id = 1), checked_at REAL NOT NULL);
            """),
    ]

    static let probabilityColumns = "p_any, p_epidural, p_intraparenchymal, p_intraventricular, p_subarachnoid, p_subdural"
    static let maximumColumns = "max_any, max_epidural, max_intraparenchymal, max_intraventricular, max_subarachnoid, max_subdural"
    static let labelCount = 6
}
