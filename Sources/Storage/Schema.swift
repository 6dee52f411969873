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
        // Series and their roles: instances skipped by the series rules (state 3) keep their metadata
        // and no spool file; `max_*` become the primary series' maxima, written by the service's
        // StudyView with `primary_series_uid` and `assessable`. Patient and study fields are PHI.
        Migration(
            "5-series-skipped-study-details",
            """
            ALTER TABLE instances ADD COLUMN skip_reason TEXT;
            CREATE TABLE series (
                study_instance_uid TEXT NOT NULL,
                series_instance_uid TEXT NOT NULL,
                series_number INTEGER,
                modality TEXT,
                original INTEGER,
                kernel_class TEXT,
                slice_thickness REAL,
                first_received_at REAL NOT NULL,
                PRIMARY KEY (study_instance_uid, series_instance_uid)
            );
            INSERT INTO series (study_instance_uid, series_instance_uid, first_received_at)
                SELECT study_instance_uid, series_instance_uid, min(received_at) FROM instances
                GROUP BY study_instance_uid, series_instance_uid;
            ALTER TABLE studies ADD COLUMN skipped INTEGER NOT NULL DEFAULT 0;
            ALTER TABLE studies ADD COLUMN primary_series_uid TEXT;
            ALTER TABLE studies ADD COLUMN assessable INTEGER;
            ALTER TABLE studies ADD COLUMN not_assessable_reason TEXT;
            ALTER TABLE studies ADD COLUMN accession_number TEXT;
            ALTER TABLE studies ADD COLUMN patient_id TEXT;
            ALTER TABLE studies ADD COLUMN patient_name TEXT;
            ALTER TABLE studies ADD COLUMN study_date TEXT;
            ALTER TABLE studies ADD COLUMN study_time TEXT;
            ALTER TABLE studies ADD COLUMN study_description TEXT;
            ALTER TABLE studies ADD COLUMN institution_name TEXT;
            ALTER TABLE studies ADD COLUMN urgent INTEGER NOT NULL DEFAULT 0;
            UPDATE studies SET assessable = 1 WHERE done > 0;
            DROP INDEX studies_unsettled;
            CREATE INDEX studies_unsettled ON studies (last_received_at) WHERE settled < done + failed + skipped;
            """),
        Migration(
            "6-instance-normals",
            """
            ALTER TABLE instances ADD COLUMN normal_x REAL;
            ALTER TABLE instances ADD COLUMN normal_y REAL;
            ALTER TABLE instances ADD COLUMN normal_z REAL;
            """),
        // A slice is an instance's frame: multi-frame objects (Enhanced CT) hold one row per frame, single-frame
        // objects are frame 1. SQLite cannot change a primary key in place, so the table is rebuilt; rowid order
        // (the queue's tie-break) is kept. Frames of one object share its spool file.
        Migration(
            "7-instance-frames",
            """
            CREATE TABLE instances_by_frame (
                sop_instance_uid TEXT NOT NULL,
                frame_number INTEGER NOT NULL DEFAULT 1,
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
                model TEXT,
                skip_reason TEXT,
                normal_x REAL, normal_y REAL, normal_z REAL,
                PRIMARY KEY (sop_instance_uid, frame_number)
            );
            INSERT INTO instances_by_frame (
                sop_instance_uid, study_instance_uid, series_instance_uid, sop_class_uid, instance_number, position,
                received_at, state, spool_name, p_any, p_epidural, p_intraparenchymal, p_intraventricular, p_subarachnoid,
                p_subdural, error_type, error_detail, processed_at, model, skip_reason, normal_x, normal_y, normal_z)
            SELECT sop_instance_uid, study_instance_uid, series_instance_uid, sop_class_uid, instance_number, position,
                received_at, state, spool_name, p_any, p_epidural, p_intraparenchymal, p_intraventricular, p_subarachnoid,
                p_subdural, error_type, error_detail, processed_at, model, skip_reason, normal_x, normal_y, normal_z
            FROM instances ORDER BY rowid;
            DROP TABLE instances;
            ALTER TABLE instances_by_frame RENAME TO instances;
            CREATE INDEX instances_by_study ON instances (study_instance_uid);
            CREATE INDEX instances_queued ON instances (received_at) WHERE state = 0;
            CREATE INDEX instances_spooled ON instances (spool_name) WHERE state = 0;
            """),
        // Token lifecycle: an optional expiry, the last use (to the minute), and which token an audited
        // token operation was about.
        Migration(
            "8-token-lifecycle",
            """
            ALTER TABLE tokens ADD COLUMN expires_at REAL;
            ALTER TABLE tokens ADD COLUMN last_used_at REAL;
            ALTER TABLE audit ADD COLUMN subject_token_id INTEGER;
            """),
        // Retention finds studies by age in an index (oldest first, stopping at the cutoff) and deletes a
        // study's notifications without scanning the outbox.
        Migration(
            "9-retention",
            """
            CREATE INDEX studies_by_last_received ON studies (last_received_at);
            CREATE INDEX notifications_by_study ON notifications (study_instance_uid);
            """),
        // What the service's structured report copies from the original study besides what the API shows.
        Migration(
            "10-report-attributes",
            """
            ALTER TABLE studies ADD COLUMN patient_birth_date TEXT;
            ALTER TABLE studies ADD COLUMN patient_sex TEXT;
            ALTER TABLE studies ADD COLUMN referring_physician_name TEXT;
            ALTER TABLE studies ADD COLUMN study_id TEXT;
            ALTER TABLE studies ADD COLUMN specific_character_set TEXT;
            """),
        // The outbox of result objects for the PACS (ResultsOutbox), beside the webhook one.
        Migration(
            "11-results-outbox",
            """
            CREATE TABLE results (
                id INTEGER PRIMARY KEY,
                study_instance_uid TEXT NOT NULL,
                destination TEXT NOT NULL,
                sop_instance_uid TEXT NOT NULL,
                body BLOB NOT NULL,
                created_at REAL NOT NULL,
                next_attempt_at REAL NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                delivered_at REAL,
                abandoned_at REAL,
                last_status INTEGER,
                last_error TEXT
            );
            CREATE INDEX results_due ON results (next_attempt_at) WHERE delivered_at IS NULL AND abandoned_at IS NULL;
            CREATE INDEX results_by_study ON results (study_instance_uid);
            """),
    ]

    static let probabilityColumns = "p_any, p_epidural, p_intraparenchymal, p_intraventricular, p_subarachnoid, p_subdural"
    static let maximumColumns = "max_any, max_epidural, max_intraparenchymal, max_intraventricular, max_subarachnoid, max_subdural"
    static let labelCount = 6
}
