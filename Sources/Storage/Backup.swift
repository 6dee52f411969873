import CSQLite
import Foundation

extension Connection {
    /// Writes a consistent copy of this database to a new file at `path` (SQLite's online backup
    /// API, one step: in WAL mode the copy reads one snapshot while writers go on), fsynced, and only
    /// then named `path`, so a partial copy never passes for a backup. An existing `path` is refused.
    public func backup(to path: String) throws(StorageError) {
        guard !FileManager.default.fileExists(atPath: path) else {
            throw .open(path: path, code: SQLITE_CANTOPEN, message: "the backup file exists already; name a new one")
        }
        let partial = path + ".partial"
        unlink(partial)
        var target: OpaquePointer?
        let opened = sqlite3_open_v2(partial, &target, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nil)
        guard opened == SQLITE_OK, let target else {
            let message = target.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close_v2(target)
            throw .open(path: partial, code: opened, message: message)
        }
        defer { sqlite3_close_v2(target) }
        guard let backup = sqlite3_backup_init(target, "main", handle, "main") else {
            let failure = StorageError.sqlite(code: sqlite3_errcode(target), message: String(cString: sqlite3_errmsg(target)),
                                              statement: "backup init")
            unlink(partial)
            throw failure
        }
        var code: Int32
        var waits = 0
        repeat {
            code = sqlite3_backup_step(backup, -1)
            if code == SQLITE_BUSY || code == SQLITE_LOCKED {
                waits += 1
                usleep(10_000)
            }
        } while (code == SQLITE_OK || code == SQLITE_BUSY || code == SQLITE_LOCKED) && waits < 1_000
        sqlite3_backup_finish(backup)
        guard code == SQLITE_DONE else {
            unlink(partial)
            throw .sqlite(code: code, message: String(cString: sqlite3_errstr(code)), statement: "backup step")
        }
        // The copy keeps the source's WAL mode; fold it into one self-contained file before it is named.
        let folded = sqlite3_exec(target, "PRAGMA journal_mode=DELETE", nil, nil, nil)
        guard folded == SQLITE_OK, Self.fsync(partial), rename(partial, path) == 0,
              Self.fsync((path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent)
        else {
            unlink(partial)
            throw .sqlite(code: folded == SQLITE_OK ? SQLITE_IOERR : folded, message: "the backup file could not be made durable",
                          statement: "backup finish")
        }
    }

    private static func fsync(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return Foundation.fsync(fd) == 0
    }
}
