import Foundation
import HTTP
import Inference

/// How queued slices are ordered into batches (`SchedulingPolicy`): by study (the default) or by arrival.
public typealias SchedulingOrder = SchedulingPolicy.Order

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
    /// Shortest study first with ageing (urgent studies ahead), or first in, first out by slice.
    public var scheduling: SchedulingOrder = .study
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
    /// Seconds from SIGTERM to the exit, whatever is in progress: requests get all but the last two
    /// (`shutdownGrace`), a model load is abandoned, a batch or a webhook attempt finishes or is left
    /// to the next start (acknowledged work is durable); `ich-server` exits when it runs out.
    public var shutdownTimeout: Double = 10
    /// How long shutdown waits for in-flight requests.
    public var shutdownGrace: Double { max(0, shutdownTimeout - 2) }
    /// Where clients reach this service (`https://ich.example.org`), for absolute
    /// links in notifications; without it links are paths.
    public var publicURL: String?
    /// Failed authentications from one address within `authFailureWindow`
    /// seconds after which it gets 429 until the window ends (0: no limit,
    /// e.g. behind a proxy, where every client has the proxy's address).
    public var authFailureLimit: Int = 20
    public var authFailureWindow: Double = 60
    public var webhooks = WebhookConfiguration()
    /// A series rules file (`docs/SERIES_RULES.md`) replacing the built-in rules for non-contrast head CT.
    public var seriesRulesPath: String?
    /// Days after its completion (its last slice's arrival or outcome, whichever is later) at which a
    /// study is deleted with its slices, series and notifications, audited; nil keeps studies forever.
    public var retentionDays: Int?
    /// The DICOM C-STORE listener; nil: off.
    public var dicom: DICOMNodeConfiguration?
    /// Where result objects (the structured report) are stored; none: nowhere, `GET .../report` only.
    public var results = ResultsConfiguration()

    public init(http: HTTPServerConfiguration, dataDirectory: String, modelDirectory: String) {
        self.http = http
        self.dataDirectory = dataDirectory
        self.modelDirectory = modelDirectory
    }

    /// The AE title the service is known by: the node's, else the one it calls destinations with.
    public var aeTitle: String { dicom?.aeTitle ?? results.callingAETitle }

    public var databasePath: String { dataDirectory + "/ich.sqlite" }
    public var spoolDirectory: String { dataDirectory + "/spool" }
    public var bodyDirectory: String { dataDirectory + "/tmp" }
}

/// How outgoing deliveries (webhook notifications, result objects) are attempted.
public struct DeliveryPolicy: Sendable {
    /// Whole-attempt limit (seconds).
    public var timeout: Double
    /// The first retry waits `retryBase` seconds, each later one twice as long, up to `retryCap`.
    public var retryBase: Double = 5
    public var retryCap: Double = 3_600
    /// Attempts before an item is abandoned (logged, counted, kept in the database).
    public var maxAttempts: Int = 30
    /// PEM bundle of the CAs that verify https:// peers (a hospital's private CA); nil: the system's store.
    public var caBundlePath: String?

    public init(timeout: Double) { self.timeout = timeout }

    public var retry: RetrySchedule { RetrySchedule(base: retryBase, cap: retryCap, maxAttempts: maxAttempts) }

    /// Why this policy cannot be used, if it cannot; `what` names its deliveries ("webhook").
    public func problem(_ what: String) -> String? {
        if let caBundlePath, !FileManager.default.isReadableFile(atPath: caBundlePath) {
            return "the \(what) CA bundle cannot be read"
        }
        guard timeout > 0, retryBase > 0, retryCap >= retryBase, maxAttempts >= 1 else {
            return "\(what) timeout and retry delays must be positive and max attempts at least 1"
        }
        return nil
    }
}

/// Critical-finding notifications: a signed JSON POST to each URL when a study
/// completes positive for `any`.
public struct WebhookConfiguration: Sendable {
    public var urls: [String] = []
    /// HMAC-SHA256 key for the `X-ICH-Signature` header; required when `urls` is not empty.
    public var secret: [UInt8] = []
    public var delivery = DeliveryPolicy(timeout: 10)

    public init() {}

    /// Why this configuration cannot be used, if it cannot.
    public func problem() -> String? {
        for url in urls {
            let lower = url.lowercased()
            guard lower.hasPrefix("http://") || lower.hasPrefix("https://"), url.count > 8,
                  !url.contains(where: { $0.isWhitespace })
            else { return "a webhook URL must be an http:// or https:// URL without spaces" }
        }
        if !urls.isEmpty && secret.count < 16 { return "webhooks need a secret of at least 16 bytes (ICH_WEBHOOK_SECRET)" }
        return delivery.problem("webhook")
    }
}
