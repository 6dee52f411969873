import Foundation
import HTTP
import Inference
import Logging
import NeuralNet
import Storage
import Synchronization

/// The whole service: database, spool, pipeline, routes and the HTTP server.
/// `start` listens at once (liveness answers while the model loads) and loads
/// the model on its own thread; readiness waits for its warm-up pass.
public final class TriageService: Sendable {
    let context: ServiceContext
    let router: Router<Route>
    let notifier: Notifier
    let retention: RetentionSweeper?
    private let server: Mutex<HTTPServer?> = Mutex(nil)
    private let dicomNode: Mutex<DICOMNode?> = Mutex(nil)
    private let modelLoad = Mutex<Result<Void, ServiceError>?>(nil)

    public convenience init(configuration: ServiceConfiguration, logger: Logger) throws {
        try self.init(configuration: configuration, logger: logger, clock: .system)
    }

    init(configuration: ServiceConfiguration, logger: Logger, clock: WallClock) throws {
        if let problem = configuration.webhooks.problem() { throw ServiceError.configuration(problem) }
        if let days = configuration.retentionDays, days < 1 {
            throw ServiceError.configuration("retention days must be at least 1")
        }
        try makeDirectory(configuration.dataDirectory)
        try makeDirectory(configuration.bodyDirectory)
        // Request bodies left by a crash belong to requests that were never answered.
        for name in (try? FileManager.default.contentsOfDirectory(atPath: configuration.bodyDirectory)) ?? [] {
            unlink(configuration.bodyDirectory + "/" + name)
        }
        try restrictToOwner(database: configuration.databasePath)
        let writer = try DatabaseQueue(path: configuration.databasePath, label: "writer")
        try writer.sync { try Migrator.migrate($0, Schema.migrations) }
        let reader = try DatabaseQueue(path: configuration.databasePath, readOnly: true, label: "reader")
        let manifest: Manifest
        do {
            manifest = try ModelBundle.readManifest(directory: configuration.modelDirectory)
            try manifest.validate()
        } catch {
            throw ServiceError.model(type: error.type, detail: error.detail)
        }
        let rules: SeriesRules
        do {
            rules = try configuration.seriesRulesPath.map { path throws(SeriesRulesError) in try SeriesRules.load(path: path) } ?? .default
        } catch {
            throw ServiceError.configuration("the series rules file is not usable: \(error.message)")
        }
        let metrics = ServiceMetrics()
        metrics.modelInfo(name: manifest.name, version: manifest.version, architecture: manifest.architecture.rawValue,
                          clinicalUse: manifest.provenance.clinicalUse)
        let pipeline = Pipeline(
            writer: writer, spool: try Spool(directory: configuration.spoolDirectory), metrics: metrics, logger: logger,
            modelID: "\(manifest.name)@\(manifest.version)", rules: rules, labels: manifest.labels,
            thresholds: manifest.thresholds, policy: BatchPolicy(maxBatch: configuration.maxBatch, maxDelay: configuration.maxDelay),
            scheduling: SchedulingPolicy(order: configuration.scheduling), clock: clock)
        context = ServiceContext(configuration: configuration, reader: reader, writer: writer, pipeline: pipeline,
                                 metrics: metrics, logger: logger, manifest: manifest, rules: rules, clock: clock)
        notifier = Notifier(writer: writer, configuration: configuration, manifest: manifest, model: context.model, rules: rules,
                            metrics: metrics, logger: logger, clock: clock)
        retention = configuration.retentionDays.map {
            RetentionSweeper(days: $0, writer: writer, spool: pipeline.spool, metrics: metrics, logger: logger, clock: clock)
        }
        router = Routes.table
    }

    /// Opens the listening socket, starts loading the model and returns the bound port.
    public func start() throws -> Int {
        let context = self.context
        try context.pipeline.recover()
        notifier.start()
        retention?.start()
        let router = self.router
        let http = HTTPServer(
            configuration: context.configuration.http, logger: context.logger,
            headCheck: { head, address in Routes.check(head, from: address, router: router, context: context) },
            errorResponse: { error in
                context.metrics.error(error.type)
                return error.problem.response
            },
            onRefusal: { reason in context.metrics.connectionRefused(reason.rawValue) },
            handler: { request in await Routes.handle(request, context: context) })
        if let dicom = context.configuration.dicom {
            if let problem = dicom.problem() { throw ServiceError.configuration(problem) }
            let node = try DICOMNode(dicom, context: context)
            dicomNode.withLock { $0 = node }
            context.dicomServing = { node.isServing }
            node.start()
        }
        let port = try http.start()
        server.withLock { $0 = http }
        if let certificate = http.tlsCertificate { noteCertificate(certificate) }
        context.logger.info("listening", metadata: ["port": "\(port)", "model": "\(context.manifest.name)@\(context.manifest.version)"])
        let thread = Thread { [self] in loadModel() }
        thread.name = "ich-model-load"
        thread.start()
        return port
    }

    /// SIGHUP: the certificate, key and client CA files are read again for new connections.
    /// A file that does not load leaves the previous ones serving; false then.
    @discardableResult
    public func reloadTLS() -> Bool {
        guard let http = server.withLock({ $0 }), context.configuration.http.tls != nil else { return true }
        do throws(TLSError) {
            if let certificate = try http.reloadTLS() { noteCertificate(certificate) }
            context.metrics.tlsReload("reloaded")
            context.logger.notice("tls certificate reloaded")
            return true
        } catch {
            context.metrics.tlsReload("failed")
            context.logger.error("tls reload failed; the previous certificate stays in use", metadata: ["reason": "\(error)"])
            return false
        }
    }

    private func noteCertificate(_ certificate: TLSContext) {
        guard let notAfter = certificate.notAfter else { return }
        context.metrics.tlsCertificateExpiry(notAfter)
        let days = Int((notAfter.timeIntervalSince1970 - context.clock.now()) / 86_400)
        let metadata: Logger.Metadata = ["not_after": "\(notAfter)", "days_left": "\(days)"]
        if days < 14 {
            context.logger.warning("tls certificate expires soon or has expired; renew it and send SIGHUP", metadata: metadata)
        } else {
            context.logger.info("tls certificate", metadata: metadata)
        }
    }

    private func loadModel() {
        let configuration = context.configuration
        let started = Date()
        // OpenBLAS's pool is process-wide and sized from the machine otherwise: --threads must set it.
        BLASThreads.set(configuration.threads)
        // What the engine reports back, not the setting: the gauge shows the threads inference really gets.
        context.metrics.computeThreads(BLASThreads.current)
        context.logger.info("loading model", metadata: ["compute_threads": "\(BLASThreads.current)"])
        do {
            let classifier = try Classifier(bundle: configuration.modelDirectory, capacity: configuration.maxBatch, threads: configuration.threads)
            // A load cannot be interrupted, but it is abandoned between its steps once shutdown has begun.
            if context.isShuttingDown { return abandonLoad() }
            try classifier.warmUp()
            let didStart = context.unlessShuttingDown {
                context.pipeline.start(classify: classifier.classify)
                context.modelReady = true
                context.metrics.ready.set(1.0)
                context.logger.info("model ready", metadata: ["seconds": "\(String(format: "%.1f", Date().timeIntervalSince(started)))"])
            }
            guard didStart else { return abandonLoad() }
            modelLoad.withLock { $0 = .success(()) }
        } catch {
            let failure: ServiceError =
                switch error {
                case let error as NeuralNetError: .model(type: error.type, detail: error.detail)
                default: .model(type: "model-load", detail: "\(error)")
                }
            context.logger.critical("model failed to load", metadata: ["detail": "\(failure.detail)"])
            modelLoad.withLock { $0 = .failure(failure) }
        }
    }

    /// Logs nothing: `shutdown` said so before "stopped", and no line may follow that one.
    private func abandonLoad() {
        modelLoad.withLock { $0 = .failure(.model(type: "abandoned", detail: "shutdown began during the load")) }
    }

    /// Returns once the model is loaded and warmed up; throws if it cannot be.
    public func waitForModel() async throws {
        while true {
            if let result = modelLoad.withLock({ $0 }) { return try result.get() }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Stops accepting, lets in-flight requests finish (up to the grace period),
    /// finishes the current batch and the webhook attempt in flight, and closes the database.
    public func shutdown() async {
        let http = server.withLock { $0 }
        context.isShuttingDown = true
        if !context.modelReady { context.logger.info("the model load in progress is abandoned") }
        // Before the grace period: no deletion starts after the signal; one in flight is one short transaction.
        retention?.stop()
        let grace = context.configuration.shutdownGrace
        let dicom = dicomNode.withLock { $0 }
        async let dicomStopped: Void = IngestRoutes.offload { dicom?.stop(grace: grace) }
        await http?.shutdown(gracePeriod: .milliseconds(Int(context.configuration.shutdownGrace * 1000)))
        _ = try? await dicomStopped
        context.pipeline.stop()
        notifier.stop()
        context.logger.info("stopped", metadata: ["queued": "\(context.pipeline.depth)"])
    }

    /// Whether any token exists, so a first start can say how to make one.
    public var hasTokens: Bool {
        (try? context.reader.sync { try TokenStore.count($0) }).map { $0 > 0 } ?? false
    }
}
