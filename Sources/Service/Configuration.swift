import Foundation
import HTTP

/// Everything the service can be told, with the defaults an operator gets
/// without saying anything. `ich-server` fills it from flags and `ICH_*`
/// environment variables.
public struct ServiceConfiguration: Sendable {
    public var http: HTTPServerConfiguration
    /// Holds `ich.sqlite`, `spool/` (acknowledged uploads awaiting inference) and `tmp/` (large request bodies).
    public var dataDirectory: String
    public var modelDirectory: String
    /// Most slices in one forward pass, and how long the first of them may wait for others (seconds).
    public var maxBatch: Int = 8
    public var maxDelay: Double = 0.010
    /// Threads for OpenBLAS and the kernels; defaults to the cores present.
    public var threads: Int = ProcessInfo.processInfo.activeProcessorCount
    /// Seconds without a new instance before a fully processed study is complete.
    public var stableAge: Double = 10
    /// Queued slices above which /readyz reports not ready (load balancers send work elsewhere)...
    public var queueHighWater: Int = 2_000
    /// ...and above which ingest answers 503 with Retry-After.
    public var queueHardLimit: Int = 10_000
    /// Longest `?wait=` a study query may ask for (seconds).
    public var maxWait: Double = 120
    /// How long shutdown waits for in-flight requests (seconds).
    public var shutdownGrace: Double = 30

    public init(http: HTTPServerConfiguration, dataDirectory: String, modelDirectory: String) {
        self.http = http
        self.dataDirectory = dataDirectory
        self.modelDirectory = modelDirectory
    }

    public var databasePath: String { dataDirectory + "/ich.sqlite" }
    public var spoolDirectory: String { dataDirectory + "/spool" }
    public var bodyDirectory: String { dataDirectory + "/tmp" }
}
