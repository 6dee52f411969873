import Foundation
import Storage

extension TriageService {
    /// `ich-server backup --to FILE`: a consistent copy of the database while the server runs (it
    /// keeps writing meanwhile). The spool is not in it: see docs/OPERATIONS.md for what a restore
    /// brings back.
    public static func backup(dataDirectory: String, to path: String) throws {
        let database = dataDirectory + "/ich.sqlite"
        // Opening a missing database would create an empty one and back that up.
        guard FileManager.default.fileExists(atPath: database) else {
            throw ServiceError.configuration("there is no database in \(dataDirectory)")
        }
        let source = try Connection(path: database)
        try source.backup(to: path)
    }
}
