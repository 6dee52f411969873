import Foundation

/// Receive buffers shared by every connection. A connection holds one only
/// while it reads, so idle keep-alive sockets pin no buffer; there are never
/// more buffers than connections reading at the same moment.
final class ReceiveBuffers: @unchecked Sendable {
    static let shared = ReceiveBuffers(byteCount: 64 * 1024)

    private let byteCount: Int
    private let lock = NSLock()
    private var free: [UnsafeMutableRawBufferPointer] = []

    init(byteCount: Int) {
        self.byteCount = byteCount
    }

    func withBuffer<R>(_ body: (UnsafeMutableRawBufferPointer) -> R) -> R {
        let buffer = lock.withLock { free.popLast() } ?? .allocate(byteCount: byteCount, alignment: 16)
        defer { lock.withLock { free.append(buffer) } }
        return body(buffer)
    }
}
