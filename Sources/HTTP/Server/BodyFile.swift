#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A request body being written to disk as it arrives. The name is random and
/// created with O_EXCL, the mode 0600: bodies are patient data.
final class BodyFile {
    let path: String
    private var fd: Int32
    private(set) var count = 0

    init(directory: String) throws(SystemError) {
        var created: (String, Int32)?
        for _ in 0..<8 where created == nil {
            let name = "body-" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
            let candidate = directory + "/" + name
            let fd = open(candidate, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            if fd >= 0 {
                created = (candidate, fd)
            } else if errno != EEXIST {
                throw SystemError(call: "open", errno: errno)
            }
        }
        guard let (path, fd) = created else { throw SystemError(call: "open", errno: EEXIST) }
        self.path = path
        self.fd = fd
    }

    func append(_ bytes: UnsafeRawBufferPointer) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            let result = try syscall("write", blocking: true) {
                write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            }
            if case .processed(let written) = result { offset += written }
        }
        count += bytes.count
    }

    /// Closes the file and hands it over; the server deletes it after the response.
    func finish() -> HTTPBody {
        closeDescriptor()
        return .file(path: path, count: count)
    }

    func discard() {
        closeDescriptor()
        unlink(path)
    }

    private func closeDescriptor() {
        if fd >= 0 {
            close(fd)
            fd = -1
        }
    }

    deinit { closeDescriptor() }
}

/// Where body bytes go: memory up to the limit, then a file.
struct BodySink {
    private(set) var memory: [UInt8] = []
    private(set) var file: BodyFile?
    let memoryLimit: Int
    let directory: String

    init(memoryLimit: Int, directory: String, expectedLength: Int?) throws(SystemError) {
        self.memoryLimit = memoryLimit
        self.directory = directory
        if let expectedLength, expectedLength > memoryLimit {
            file = try BodyFile(directory: directory)
        } else if let expectedLength {
            memory.reserveCapacity(expectedLength)
        }
    }

    var count: Int { file?.count ?? memory.count }

    mutating func append(_ bytes: UnsafeRawBufferPointer) throws(SystemError) {
        if let file {
            try file.append(bytes)
            return
        }
        if memory.count + bytes.count <= memoryLimit {
            memory.append(contentsOf: bytes)
            return
        }
        let file = try BodyFile(directory: directory)
        self.file = file
        let failure = memory.withUnsafeBytes { buffer -> SystemError? in
            do throws(SystemError) { try file.append(buffer) } catch { return error }
            return nil
        }
        if let failure { throw failure }
        memory = []
        try file.append(bytes)
    }

    func finish() -> HTTPBody {
        if let file { return file.finish() }
        return memory.isEmpty ? .empty : .bytes(memory)
    }

    func discard() { file?.discard() }
}
