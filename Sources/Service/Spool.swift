import Foundation

/// Acknowledged uploads awaiting inference, one file each. A file is written
/// and fsynced, then the directory is fsynced, before its job row commits;
/// files are deleted once their result is stored (PHI minimisation).
public struct Spool: Sendable {
    public let directory: String

    public init(directory: String) throws(ServiceError) {
        self.directory = directory
        try makeDirectory(directory)
    }

    public static func newName() -> String { UUID().uuidString.lowercased() + ".dcm" }

    public func path(_ name: String) -> String { directory + "/" + name }

    /// Writes and fsyncs one file; the caller fsyncs the directory once per request (`syncDirectory`).
    public func write(_ bytes: UnsafeRawBufferPointer, name: String) throws(ServiceError) {
        let fd = open(path(name), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .spool("open", errno) }
        defer { close(fd) }
        var offset = 0
        while offset < bytes.count {
            let n = Foundation.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                let code = errno
                unlink(path(name))
                throw .spool("write", code)
            }
            offset += n
        }
        guard fsync(fd) == 0 else {
            let code = errno
            unlink(path(name))
            throw .spool("fsync", code)
        }
    }

    /// Makes new directory entries durable (a file's own fsync does not).
    public func syncDirectory() throws(ServiceError) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .spool("open", errno) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw .spool("fsync", errno) }
    }

    /// The file's bytes; a missing file throws `.spool("open", ENOENT)`, any other failure its own errno.
    public func read(_ name: String) throws(ServiceError) -> Data {
        let fd = open(path(name), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .spool("open", errno) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .spool("fstat", errno) }
        var data = Data(count: Int(info.st_size))
        var offset = 0
        while offset < data.count {
            let n = data.withUnsafeMutableBytes { Foundation.read(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .spool("read", errno)
            }
            if n == 0 { break }
            offset += n
        }
        return data.prefix(offset)
    }

    public func remove(_ name: String) {
        unlink(path(name))
    }

    /// Spool files with no queued job: left by a crash between writing the
    /// file and committing its row (never acknowledged), safe to delete.
    public func removeOrphans(keeping names: Set<String>) -> Int {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        var removed = 0
        for entry in entries where entry.hasSuffix(".dcm") && !names.contains(entry) {
            remove(entry)
            removed += 1
        }
        return removed
    }
}

/// The database holds results, UIDs and the audit trail: owner-only, like the
/// spool. SQLite gives its -wal and -shm files the main file's mode, so the
/// file is created 0600 before SQLite opens it; older files are tightened.
func restrictToOwner(database path: String) throws(ServiceError) {
    let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw .file(path) }
    close(fd)
    for file in [path, path + "-wal", path + "-shm"] where access(file, F_OK) == 0 {
        chmod(file, 0o600)
    }
}

func makeDirectory(_ path: String) throws(ServiceError) {
    do {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    } catch {
        throw .directory(path)
    }
}
