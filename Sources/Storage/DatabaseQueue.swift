import Dispatch

/// One connection owned by one serial queue, so callers on any thread get
/// serialised access without locks of their own. The service opens two:
/// a writer and a read-only reader, which WAL lets run side by side.
public final class DatabaseQueue: @unchecked Sendable {
    // @unchecked: `connection` is only touched on `queue`.
    private let connection: Connection
    private let queue: DispatchQueue

    public init(path: String, readOnly: Bool = false, label: String) throws(StorageError) {
        connection = try Connection(path: path, readOnly: readOnly)
        queue = DispatchQueue(label: "ich.database.\(label)")
    }

    /// Runs `body` on the connection's queue. Blocks the caller for the length
    /// of the statement(s), which are all indexed lookups or short writes.
    public func sync<T>(_ body: (Connection) throws -> T) throws -> T {
        try queue.sync { try body(connection) }
    }

    /// Runs `body` in one transaction on the connection's queue.
    public func write<T>(_ body: (Connection) throws -> T) throws -> T {
        try queue.sync { try connection.transaction { try body(connection) } }
    }

    /// `sync` for async callers: the task waits without holding one of Swift
    /// concurrency's few threads, so a locked database (up to the busy timeout)
    /// cannot starve requests that need no database, such as `/healthz`.
    public func read<T: Sendable>(_ body: @escaping @Sendable (Connection) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try body(self.connection) }) }
        }
    }

    /// `write` for async callers (see `read`).
    public func transaction<T: Sendable>(_ body: @escaping @Sendable (Connection) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try self.connection.transaction { try body(self.connection) } }) }
        }
    }
}
