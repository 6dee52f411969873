import Foundation
import Logging
import NeuralNet
import Storage
import Synchronization

/// What every handler needs: settings, the two database connections, the
/// pipeline, metrics and the model's public description.
final class ServiceContext: Sendable {
    let configuration: ServiceConfiguration
    let reader: DatabaseQueue
    let writer: DatabaseQueue
    let tokens: TokenCache
    let pipeline: Pipeline
    let metrics: ServiceMetrics
    let logger: Logger
    let manifest: Manifest
    let rules: SeriesRules
    let model: JSONValue
    let clock: WallClock
    private let warmedUp = Mutex(false)
    private let stopping = Mutex(false)
    private let authThrottle: Mutex<AuthThrottle>
    private let dicomListening = Mutex<(@Sendable () -> Bool)?>(nil)

    init(configuration: ServiceConfiguration, reader: DatabaseQueue, writer: DatabaseQueue, pipeline: Pipeline,
         metrics: ServiceMetrics, logger: Logger, manifest: Manifest, rules: SeriesRules, clock: WallClock) {
        self.configuration = configuration
        self.reader = reader
        self.writer = writer
        // Last use is written off the request's path, at most once a minute per token.
        self.tokens = TokenCache(db: reader, wallClock: { clock.now() }, recordUse: { id, time in
            Task { try? await writer.transaction { try TokenStore.recordUse($0, id: id, at: time) } }
        })
        self.pipeline = pipeline
        self.metrics = metrics
        self.logger = logger
        self.manifest = manifest
        self.rules = rules
        self.model = Representation.model(manifest)
        self.clock = clock
        self.authThrottle = Mutex(AuthThrottle(limit: configuration.authFailureLimit, window: configuration.authFailureWindow))
    }

    /// Refuses an address that failed to authenticate too often lately.
    func checkAuthThrottle(_ address: String) throws(Problem) {
        let now = clock.now()
        guard let wait = authThrottle.withLock({ $0.retryAfter(address, now: now) }) else { return }
        throw Problem(429, "too-many-auth-failures", "Too many failed authentications from this address; retry later.",
                      headers: [("Retry-After", String(Int(wait.rounded(.up))))])
    }

    func recordAuthFailure(_ address: String) {
        let now = clock.now()
        let blocked = authThrottle.withLock { throttle in
            throttle.recordFailure(address, now: now)
            return throttle.retryAfter(address, now: now) != nil
        }
        if blocked {
            // The 429s themselves are counted with the other problems, by Routes.check.
            logger.warning("client address refused after repeated failed authentication", metadata: ["address": "\(address)"])
        }
    }

    /// Whether the DICOM listener accepts associations; nil when it is off.
    var dicomServing: (@Sendable () -> Bool)? {
        get { dicomListening.withLock { $0 } }
        set { dicomListening.withLock { $0 = newValue } }
    }

    var modelReady: Bool {
        get { warmedUp.withLock { $0 } }
        set { warmedUp.withLock { $0 = newValue } }
    }

    /// Set when shutdown begins, so long-polls answer with the current state at once.
    var isShuttingDown: Bool {
        get { stopping.withLock { $0 } }
        set { stopping.withLock { $0 = newValue } }
    }

    /// Runs `body` unless shutdown has begun, atomically with `isShuttingDown`: what a late model load
    /// does (start inference, log "model ready") cannot come after "stopped". False if it did not run.
    func unlessShuttingDown(_ body: () -> Void) -> Bool {
        stopping.withLock { stopping in
            if stopping { return false }
            body()
            return true
        }
    }

    /// Records a read of patient results; a failed audit write fails the read.
    func audit(_ principal: Principal, _ action: String, study: String?, instance: String? = nil) async throws(Problem) {
        let time = clock.now()
        do {
            try await writer.transaction {
                try AuditLog.record($0, tokenID: principal.tokenID, action: action, study: study, instance: instance, at: time)
            }
        } catch {
            throw .databaseUnavailable("The audit log cannot be written")
        }
    }

    /// The study's view as stored now.
    func studyView(_ db: Storage.Connection, _ uid: String) throws -> StudyView {
        try StudyView.load(db, study: uid, rules: rules, labels: manifest.labels, thresholds: manifest.thresholds)
    }

    func read<T: Sendable>(_ body: @escaping @Sendable (Storage.Connection) throws -> T) async throws(Problem) -> T {
        do {
            return try await reader.read(body)
        } catch {
            metrics.error("database")
            throw .databaseUnavailable("The database cannot be read")
        }
    }
}
