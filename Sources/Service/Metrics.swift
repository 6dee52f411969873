import Foundation
import Prometheus

/// The service's Prometheus metrics. Requests are labelled by route template,
/// never by raw path (which would carry study UIDs and grow without bound).
public final class ServiceMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()

    private static let latencyBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2_500), .seconds(5), .seconds(10), .seconds(30),
    ]

    let queueDepth: Gauge
    let batchSize: ValueHistogram
    let inferenceDuration: DurationHistogram
    let ready: Gauge
    let notificationsPending: Gauge
    let resultsPending: Gauge
    let dicomAssociationsOpen: Gauge

    public init() {
        queueDepth = registry.makeGauge(descriptor: Self.name("queue", "depth", "Slices acknowledged and waiting for inference."))
        batchSize = registry.makeValueHistogram(
            descriptor: Self.name("batch", "size", "Slices per forward pass."), buckets: [1, 2, 3, 4, 6, 8, 12, 16, 32])
        inferenceDuration = registry.makeDurationHistogram(
            descriptor: Self.name("inference_duration", "seconds", "Decode, preprocessing and forward pass of one batch."),
            buckets: Self.latencyBuckets)
        ready = registry.makeGauge(descriptor: Self.name("ready", "", "1 when /readyz answers ready."))
        notificationsPending = registry.makeGauge(
            descriptor: Self.name("notifications_pending", "", "Webhook notifications not yet delivered or abandoned."))
        resultsPending = registry.makeGauge(
            descriptor: Self.name("results_pending", "", "Result objects for the PACS not yet delivered or abandoned."))
        dicomAssociationsOpen = registry.makeGauge(descriptor: Self.name("dicom_associations", "", "DICOM associations open now."))
    }

    static func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "ich", metricName: metric, unitName: unit, helpText: help)
    }

    func request(route: String, method: String, status: Int, duration: Duration) {
        registry.makeCounter(
            descriptor: Self.name("http_requests", "total", "HTTP requests by route template, method and status."),
            labels: [("route", route), ("method", method), ("status", String(status))]
        ).increment()
        registry.makeDurationHistogram(
            descriptor: Self.name("http_request_duration", "seconds", "Time from a complete request head to its response."),
            labels: [("route", route), ("method", method)], buckets: Self.latencyBuckets
        ).record(duration)
    }

    /// Connections closed or refused before they were served, by the defence that fired
    /// (`server_full`, `client_full`, `dropped`, `evicted`, `head_timeout`, `body_too_slow`, `tls_handshake`).
    func connectionRefused(_ reason: String) {
        registry.makeCounter(
            descriptor: Self.name("http_connections_refused", "total", "Connections closed or refused before they were served, by reason."),
            labels: [("reason", reason)]
        ).increment()
    }

    /// DIMSE commands served, by command (C-ECHO, C-STORE) and the status answered (4 hex digits).
    func dimseRequest(command: String, status: UInt16) {
        let hex = String(status, radix: 16)
        registry.makeCounter(
            descriptor: Self.name("dimse_requests", "total", "DIMSE commands by command and answered status."),
            labels: [("command", command), ("status", String(repeating: "0", count: 4 - hex.count) + hex)]
        ).increment()
    }

    /// `reason`: callingAETitle, calledAETitle or busy.
    func dicomAssociationRejected(_ reason: String) {
        registry.makeCounter(
            descriptor: Self.name("dicom_associations_rejected", "total", "Association requests rejected, by reason."),
            labels: [("reason", reason)]
        ).increment()
    }

    /// When the certificate the server presents expires, so an alert fires before clients refuse it.
    func tlsCertificateExpiry(_ notAfter: Date) {
        registry.makeGauge(
            descriptor: Self.name("tls_certificate_expiry", "timestamp_seconds", "The served TLS certificate's notAfter, Unix seconds.")
        ).set(notAfter.timeIntervalSince1970)
    }

    /// `result`: reloaded or failed.
    func tlsReload(_ result: String) {
        registry.makeCounter(
            descriptor: Self.name("tls_reloads", "total", "Certificate reloads at SIGHUP, by outcome."), labels: [("result", result)]
        ).increment()
    }

    /// `result`: stored, duplicate or failed.
    func ingested(_ result: String, count: Int = 1) {
        guard count > 0 else { return }
        registry.makeCounter(
            descriptor: Self.name("ingest_instances", "total", "Uploaded instances by outcome."), labels: [("result", result)]
        ).increment(by: Int64(count))
    }

    /// Instances stored without triage, by the series rules' reason; they never reach the forward pass.
    func skipped(_ reason: String, count: Int) {
        guard count > 0 else { return }
        registry.makeCounter(
            descriptor: Self.name("instances_skipped", "total", "Instances stored but not triaged, by skip reason."),
            labels: [("reason", reason)]
        ).increment(by: Int64(count))
    }

    /// `result`: done or failed.
    func processed(_ result: String, count: Int) {
        guard count > 0 else { return }
        registry.makeCounter(
            descriptor: Self.name("instances_processed", "total", "Instances that left the queue, by outcome."),
            labels: [("result", result)]
        ).increment(by: Int64(count))
    }

    /// `result`: queued, delivered, retry (an attempt failed) or abandoned.
    func notifications(_ result: String, count: Int) {
        guard count > 0 else { return }
        registry.makeCounter(
            descriptor: Self.name("notifications", "total", "Webhook notifications queued, and delivery attempts by outcome."),
            labels: [("result", result)]
        ).increment(by: Int64(count))
    }

    /// Result objects queued for the PACS, and delivery attempts by outcome, per kind of destination.
    func results(_ result: String, kind: String, count: Int = 1) {
        guard count > 0 else { return }
        registry.makeCounter(
            descriptor: Self.name("results", "total", "Result objects queued for destinations, and delivery attempts by outcome."),
            labels: [("destination_kind", kind), ("result", result)]
        ).increment(by: Int64(count))
    }

    /// Studies and their slices deleted by `--retention-days`.
    func retentionDeleted(studies: Int, slices: Int) {
        guard studies > 0 else { return }
        for (kind, count) in [("studies", studies), ("slices", slices)] {
            registry.makeCounter(
                descriptor: Self.name("retention_deleted", "total", "Studies and slices deleted by retention, by kind."),
                labels: [("kind", kind)]
            ).increment(by: Int64(count))
        }
    }

    func error(_ type: String) {
        registry.makeCounter(descriptor: Self.name("errors", "total", "Errors by problem type."), labels: [("type", type)])
            .increment()
    }

    func modelInfo(name: String, version: String, architecture: String, clinicalUse: Bool) {
        registry.makeGauge(
            descriptor: Self.name("model", "info", "The loaded model; the value is always 1."),
            labels: [("name", name), ("version", version), ("architecture", architecture), ("clinical_use", String(clinicalUse))]
        ).set(1.0)
    }

    func computeThreads(_ count: Int) {
        registry.makeGauge(descriptor: Self.name("compute_threads", "", "Threads the forward pass runs on (--threads)."))
            .set(Double(count))
    }

    public func exposition() -> [UInt8] { registry.emitToBuffer() }
}
