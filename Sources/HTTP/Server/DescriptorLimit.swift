#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The process's file-descriptor limit and the connection cap it allows. Every
/// connection is a descriptor, and past twice `maxConnections` sockets are
/// closed at the accept, so the cap must leave room under the limit for the
/// database, the spool, body files, the model and libcurl.
public enum DescriptorLimit {
    /// Descriptors kept for everything that is not a connection.
    public static let reserved = 128
    /// The default cap where the limit allows it: a few thousand mostly idle keep-alives cost little memory.
    public static let defaultCap = 4096

    /// Lifts the soft RLIMIT_NOFILE to the hard limit (systemd and Docker give a
    /// soft 1,024 under a hard of hundreds of thousands); returns (before, after).
    public static func raiseSoftLimit() -> (before: Int, after: Int) {
        var limit = rlimit()
        guard getrlimit(resourceNoFile, &limit) == 0 else { return (0, 0) }
        let before = Int(clamping: limit.rlim_cur)
        guard limit.rlim_cur < limit.rlim_max else { return (before, before) }
        var raised = limit
        raised.rlim_cur = limit.rlim_max
        #if canImport(Darwin)
        raised.rlim_cur = min(raised.rlim_cur, rlim_t(OPEN_MAX))  // macOS refuses more than OPEN_MAX
        #endif
        guard setrlimit(resourceNoFile, &raised) == 0 else { return (before, before) }
        return (before, Int(clamping: raised.rlim_cur))
    }

    /// The largest `maxConnections` whose hard close point (twice the cap) still fits under `limit`.
    public static func connectionCap(limit: Int) -> Int {
        max(1, (limit - reserved) / 2)
    }

    #if canImport(Glibc)
    private static let resourceNoFile = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    #else
    private static let resourceNoFile = RLIMIT_NOFILE
    #endif
}
