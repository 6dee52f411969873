import Glibc

/// Whether the data directory can take uploads: its file system has at least
/// 64 MiB free (5% of its size on a smaller one) and a one-byte write to a
/// probe file in `tmp/` (the request bodies' directory) succeeds; the file
/// is synced and removed again. An ext4 that turned read-only after an I/O
/// error does not say so in statvfs's flags, and a disk that fails on
/// write-back fails only the sync: only a synced write tells.
enum StorageProbe {
    static func acceptsWrites(_ directory: String) -> Bool {
        var stats = statvfs()
        guard statvfs(directory, &stats) == 0, stats.f_flag & UInt(ST_RDONLY) == 0 else { return false }
        let blockSize = UInt64(stats.f_frsize)
        guard UInt64(stats.f_bavail) * blockSize >= min(64 << 20, UInt64(stats.f_blocks) * blockSize / 20) else { return false }
        let path = directory + "/tmp/.write-probe"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return false }
        defer {
            close(fd)
            unlink(path)
        }
        var byte: UInt8 = 0
        return write(fd, &byte, 1) == 1 && fdatasync(fd) == 0
    }
}
