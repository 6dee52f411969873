/// The one row `/readyz` rewrites to learn that the database commits.
public enum ReadinessProbe {
    public static func write(_ db: Connection, at time: Double) throws(StorageError) {
        try db.statement("INSERT OR REPLACE INTO readiness_probe (id, checked_at) VALUES (1, ?)").run([.real(time)])
    }
}
