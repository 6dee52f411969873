#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A failed system call, named so a log line says which one.
public struct SystemError: Error, Sendable, Equatable, CustomStringConvertible {
    public var call: String
    public var errno: Int32

    public init(call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    public var description: String { "\(call) failed: \(String(cString: strerror(errno))) (errno \(errno))" }
}

enum IOResult<T> {
    case processed(T)
    case wouldBlock
}

/// Every socket call goes through here: EINTR is retried, EAGAIN on a
/// non-blocking call is "would block" rather than an error, and anything else
/// throws naming the call (the swift-nio `syscall(blocking:where:_:)` habit).
@discardableResult
func syscall<T: FixedWidthInteger>(_ name: String, blocking: Bool = false, _ body: () -> T) throws(SystemError) -> IOResult<T> {
    while true {
        let result = body()
        if result >= 0 { return .processed(result) }
        let error = errno
        switch error {
        case EINTR: continue
        case EAGAIN where !blocking, EWOULDBLOCK where !blocking: return .wouldBlock
        default: throw SystemError(call: name, errno: error)
        }
    }
}

#if canImport(Glibc)
let sendFlags = Int32(MSG_NOSIGNAL)
#else
let sendFlags: Int32 = 0
#endif
