import DICOM
import Foundation
import HTTPClient
import Inference
import Logging
import NeuralNet
import Storage
import Synchronization

/// Turns completed positive studies into webhook notifications and delivers
/// them. Two serial queues with their own loops, so a receiver that hangs
/// until the timeout delays other deliveries but never the settling of studies.
/// Delivery is at least once: a crash after the receiver answered and before
/// the row is marked delivered sends it again, with the same `id`.
final class Notifier: Sendable {
    private let writer: DatabaseQueue
    private let configuration: ServiceConfiguration
    private let manifest: Manifest
    private let model: JSONValue
    private let rules: SeriesRules
    private let metrics: ServiceMetrics
    private let logger: Logger
    private let clock: WallClock
    private let settleQueue = DispatchQueue(label: "ich-notifier-settle")
    private let deliveryQueue = DispatchQueue(label: "ich-notifier-delivery")
    private let stopped = Atomic<Bool>(false)
    /// Consecutive failures of each loop, so a lasting database fault is logged now and then, not every look.
    private let settleFailures = Atomic<Int>(0)
    private let deliveryFailures = Atomic<Int>(0)
    /// Delivers result objects to the PACS; the settling here queues them.
    private let results: ResultsSender

    init(writer: DatabaseQueue, configuration: ServiceConfiguration, manifest: Manifest, model: JSONValue, rules: SeriesRules,
         metrics: ServiceMetrics, logger: Logger, clock: WallClock) {
        self.rules = rules
        self.clock = clock
        self.writer = writer
        self.configuration = configuration
        self.manifest = manifest
        self.model = model
        self.metrics = metrics
        self.logger = logger
        results = ResultsSender(writer: writer, configuration: configuration.results, metrics: metrics, logger: logger,
                                clock: clock)
    }

    private var webhooks: WebhookConfiguration { configuration.webhooks }

    func start() {
        // Studies complete `stableAge` after their last slice; look a few times within that.
        let period = min(1.0, max(0.05, configuration.stableAge / 4))
        repeatEvery(period, on: settleQueue) { [self] in settleCompletedStudies() }
        if !webhooks.urls.isEmpty {
            repeatEvery(1, on: deliveryQueue) { [self] in deliverDue() }
        }
        results.start()
    }

    /// Stops both loops and waits for an attempt in flight (at most the webhook timeout).
    func stop() {
        stopped.store(true, ordering: .relaxed)
        settleQueue.sync {}
        deliveryQueue.sync {}
        results.stop()
    }

    private func repeatEvery(_ seconds: Double, on queue: DispatchQueue, _ body: @escaping @Sendable () -> Void) {
        queue.asyncAfter(deadline: .now() + seconds) { [self] in
            guard !stopped.load(ordering: .relaxed) else { return }
            body()
            repeatEvery(seconds, on: queue, body)
        }
    }

    /// Settles every study that completed since the last look; a positive one,
    /// and one with nothing the model could assess, gets a notification per
    /// webhook URL, committed with its settling.
    func settleCompletedStudies() {
        let now = clock.now()
        let cutoff = now - configuration.stableAge
        do {
            // Most looks find nothing: check before taking a write transaction.
            guard try !writer.sync({ try Outbox.unsettled($0, receivedBefore: cutoff, limit: 1) }).isEmpty else {
                settleFailures.store(0, ordering: .relaxed)
                return
            }
            let (queued, objects) = try writer.write { db in
                var queued = 0
                var objects: [NewResult] = []
                for study in try Outbox.unsettled(db, receivedBefore: cutoff, limit: 100) {
                    let view = webhooks.urls.isEmpty && configuration.results.destinations.isEmpty ? nil
                        : try StudyView.load(db, study: study.studyInstanceUID, rules: rules, labels: manifest.labels,
                                             thresholds: manifest.thresholds)
                    let due = try view.map { try self.notifications(db, study, view: $0, now: now) } ?? []
                    let reports = view.map { resultObjects(study, view: $0, now: now) } ?? []
                    try Outbox.settle(db, study: study.studyInstanceUID, processed: study.finished, notifications: due)
                    try ResultsOutbox.enqueue(db, reports)
                    queued += due.count
                    objects += reports
                }
                return (queued, objects)
            }
            settleFailures.store(0, ordering: .relaxed)
            for destination in configuration.results.destinations {
                metrics.results("queued", kind: destination.kind, count: objects.count { $0.destination == destination.description })
            }
            if !objects.isEmpty { results.kick() }
            guard queued > 0 else { return }
            metrics.notifications("queued", count: queued)
            deliveryQueue.async { [self] in if !stopped.load(ordering: .relaxed) { deliverDue() } }
        } catch {
            recordLoopFailure("settling completed studies failed; retrying", error, failures: settleFailures, metrics: metrics,
                              logger: logger)
        }
    }

    /// The study's structured report, once per destination, for every completed study: a negative result
    /// belongs in the PACS as much as a positive one.
    private func resultObjects(_ study: StudyRecord, view: StudyView, now: Double) -> [NewResult] {
        guard !configuration.results.destinations.isEmpty else { return [] }
        let report = StudyReport.make(study: study, view: view, manifest: manifest, deviceName: configuration.aeTitle)
        let bytes: [UInt8]
        do {
            bytes = try report.encoded()
        } catch {
            // A bug of ours; settling (and the webhooks) must not wait on it.
            logger.error("structured report not built; the study's result is not sent", metadata: ["error": "\(error.message)"])
            return []
        }
        return configuration.results.destinations.map {
            NewResult(studyInstanceUID: study.studyInstanceUID, destination: $0.description, sopInstanceUID: report.sopInstanceUID,
                      body: bytes, createdAt: now)
        }
    }

    private func notifications(_ db: Storage.Connection, _ study: StudyRecord, view: StudyView, now: Double) throws
        -> [NewNotification]
    {
        guard !webhooks.urls.isEmpty else { return [] }
        let event: NotificationPayload.Event
        if !view.assessable {
            event = .notAssessable
        } else if let any = view.labels.first?.probability, Double(any) >= manifest.thresholds[0] {
            event = try Outbox.notifiedCount(db, study: study.studyInstanceUID) > 0 ? .positiveUpdated : .positive
        } else {
            return []
        }
        let eventID = UUID().uuidString.lowercased()
        let body = NotificationPayload.body(
            eventID: eventID, event: event, study: study, view: view,
            link: (configuration.publicURL ?? "") + "/v1/studies/" + study.studyInstanceUID, model: model, createdAt: now)
        return webhooks.urls.map { NewNotification(eventID: eventID, url: $0, body: body, createdAt: now) }
    }

    /// Attempts every due notification once, oldest first.
    func deliverDue() {
        do {
            let due = try writer.sync { try Outbox.due($0, at: clock.now(), limit: 50) }
            for notification in due {
                if stopped.load(ordering: .relaxed) { break }
                let attempt = deliver(notification)
                try writer.write {
                    try Outbox.record($0, id: notification.id, outcome: attempt.outcome, status: attempt.status,
                                      error: attempt.error, at: clock.now())
                }
            }
            metrics.notificationsPending.set(Double(try writer.sync { try Outbox.pendingCount($0) }))
            deliveryFailures.store(0, ordering: .relaxed)
        } catch {
            recordLoopFailure("recording webhook deliveries failed; retrying", error, failures: deliveryFailures,
                              metrics: metrics, logger: logger)
        }
    }

    private func deliver(_ notification: PendingNotification) -> DeliveryAttempt {
        let request = CurlRequest(
            method: "POST", url: notification.url,
            headers: [
                ("Content-Type", "application/json"),
                (Signature.header, Signature.value(body: notification.body, secret: webhooks.secret)),
                ("X-ICH-Event-ID", notification.eventID),
            ],
            body: [.bytes(notification.body)], timeout: webhooks.delivery.timeout, connectTimeout: min(10, webhooks.delivery.timeout),
            userAgent: "ich-triage", caBundlePath: webhooks.delivery.caBundlePath)
        let attempts = notification.attempts + 1
        let status: Int?
        let failure: String
        var retryAfter: Double?
        do {
            let response = try Curl.perform(request)
            if (200..<300).contains(response.status) {
                metrics.notifications("delivered", count: 1)
                return DeliveryAttempt(outcome: .delivered, status: response.status, error: nil)
            }
            status = response.status
            failure = "the receiver answered \(response.status)"
            retryAfter = response.header("retry-after").flatMap(Double.init)
        } catch {
            status = nil
            failure = error.description
        }
        let metadata: Logger.Metadata = ["notification": "\(notification.id)", "attempt": "\(attempts)", "error": "\(failure)"]
        guard let delay = webhooks.delivery.retry.delay(afterAttempts: attempts, retryAfter: retryAfter) else {
            metrics.notifications("abandoned", count: 1)
            logger.critical("webhook notification abandoned after its last attempt", metadata: metadata)
            return DeliveryAttempt(outcome: .abandoned, status: status, error: failure)
        }
        metrics.notifications("retry", count: 1)
        logger.warning("webhook delivery failed; will retry", metadata: metadata.merging(["in_seconds": "\(Int(delay))"]) { a, _ in a })
        return DeliveryAttempt(outcome: .retry(at: clock.now() + delay), status: status, error: failure)
    }
}
