import DICOM
import Foundation
import HTTPClient
import Logging
import Storage
import Synchronization

/// Delivers queued result objects to their destinations: C-STORE to a DICOM node, STOW-RS to a
/// DICOMweb server. Its own serial queue, so a PACS that hangs until the timeout delays neither the
/// settling of studies nor webhooks. At least once; the objects' stable UIDs make a repeat a replace.
final class ResultsSender: Sendable {
    private let writer: DatabaseQueue
    private let configuration: ResultsConfiguration
    private let metrics: ServiceMetrics
    private let logger: Logger
    private let clock: WallClock
    private let queue = DispatchQueue(label: "ich-results-delivery")
    private let stopped = Atomic<Bool>(false)
    private let failures = Atomic<Int>(0)

    init(writer: DatabaseQueue, configuration: ResultsConfiguration, metrics: ServiceMetrics, logger: Logger, clock: WallClock) {
        self.writer = writer
        self.configuration = configuration
        self.metrics = metrics
        self.logger = logger
        self.clock = clock
    }

    func start() {
        guard !configuration.destinations.isEmpty else { return }
        repeatEvery(1)
    }

    /// Asks for a delivery pass now (after new results were queued).
    func kick() {
        queue.async { [self] in if !stopped.load(ordering: .relaxed) { deliverDue() } }
    }

    /// Stops the loop and waits for an attempt in flight (at most the timeout).
    func stop() {
        stopped.store(true, ordering: .relaxed)
        queue.sync {}
    }

    private func repeatEvery(_ seconds: Double) {
        queue.asyncAfter(deadline: .now() + seconds) { [self] in
            guard !stopped.load(ordering: .relaxed) else { return }
            deliverDue()
            repeatEvery(seconds)
        }
    }

    /// Attempts every due result once, oldest first.
    func deliverDue() {
        do {
            let due = try writer.sync { try ResultsOutbox.due($0, at: clock.now(), limit: 20) }
            for item in due {
                if stopped.load(ordering: .relaxed) { break }
                let attempt = deliver(item)
                try writer.write {
                    try ResultsOutbox.record($0, id: item.id, outcome: attempt.outcome, status: attempt.status,
                                             error: attempt.error, at: clock.now())
                }
            }
            metrics.resultsPending.set(Double(try writer.sync { try ResultsOutbox.pendingCount($0) }))
            failures.store(0, ordering: .relaxed)
        } catch {
            recordLoopFailure("recording result deliveries failed; retrying", error, failures: failures, metrics: metrics,
                              logger: logger)
        }
    }

    private func deliver(_ item: PendingResult) -> DeliveryAttempt {
        guard let destination = ResultsDestination(item.destination) else {
            // Only a destination removed from the configuration text could be unreadable; nothing to retry.
            return DeliveryAttempt(outcome: .abandoned, status: nil, error: "the destination is not a results destination")
        }
        let attempts = item.attempts + 1
        var status: Int?
        var failure: String
        var retryAfter: Double?
        switch destination {
        case .dicom(let title, let host, let port):
            do {
                let answer = try DICOMSender.store(item.body, host: host, port: port, calledAETitle: title,
                                                   callingAETitle: configuration.callingAETitle, timeout: Int(configuration.delivery.timeout.rounded(.up)))
                status = Int(answer)
                // Success, or a warning (0x0001, 0xBxxx: stored, with a remark).
                if answer == DIMSEStatus.success || answer == 0x0001 || answer & 0xF000 == 0xB000 {
                    return delivered(destination, status: status)
                }
                failure = "the node answered status " + String(format: "%04X", answer)
            } catch {
                failure = error.description
            }
        case .dicomweb(let url):
            let boundary = "ich-triage-" + item.sopInstanceUID
            let head = Array("--\(boundary)\r\nContent-Type: application/dicom\r\n\r\n".utf8)
            let tail = Array("\r\n--\(boundary)--\r\n".utf8)
            var headers = [("Content-Type", "multipart/related; type=\"application/dicom\"; boundary=\(boundary)"),
                           ("Accept", "application/dicom+json")]
            if let token = configuration.token { headers.append(("Authorization", "Bearer \(token)")) }
            let request = CurlRequest(method: "POST", url: url + "/studies", headers: headers,
                                      body: [.bytes(head), .bytes(item.body), .bytes(tail)], timeout: configuration.delivery.timeout,
                                      connectTimeout: min(10, configuration.delivery.timeout), userAgent: "ich-triage",
                                      caBundlePath: configuration.delivery.caBundlePath)
            do {
                let response = try Curl.perform(request)
                status = response.status
                if (200..<300).contains(response.status) { return delivered(destination, status: status) }
                failure = "the server answered \(response.status)"
                retryAfter = response.header("retry-after").flatMap(Double.init)
            } catch {
                failure = error.description
            }
        }
        let metadata: Logger.Metadata = ["result": "\(item.id)", "destination": "\(destination)", "attempt": "\(attempts)",
                                         "error": "\(failure)"]
        guard let delay = configuration.delivery.retry.delay(afterAttempts: attempts, retryAfter: retryAfter) else {
            metrics.results("abandoned", kind: destination.kind)
            logger.critical("result object abandoned after its last attempt", metadata: metadata)
            return DeliveryAttempt(outcome: .abandoned, status: status, error: failure)
        }
        metrics.results("retry", kind: destination.kind)
        logger.warning("result delivery failed; will retry", metadata: metadata.merging(["in_seconds": "\(Int(delay))"]) { a, _ in a })
        return DeliveryAttempt(outcome: .retry(at: clock.now() + delay), status: status, error: failure)
    }

    private func delivered(_ destination: ResultsDestination, status: Int?) -> DeliveryAttempt {
        metrics.results("delivered", kind: destination.kind)
        return DeliveryAttempt(outcome: .delivered, status: status, error: nil)
    }
}
