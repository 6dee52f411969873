import ArgumentParser
import Dispatch
import Foundation
import HTTP
import Logging
import Service

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the service until SIGTERM or SIGINT.",
        discussion: "Every option can also be set by the environment variable named in its help; flags win.")

    @Option(help: "Address to listen on (ICH_HOST; default 127.0.0.1; 0.0.0.0 for all interfaces).") var host: String?
    @Option(help: "Port (ICH_PORT; default 8080; 0 picks a free one and logs it).") var port: Int?
    @Option(help: "Data directory: database, spool, temporary bodies (ICH_DATA_DIR; default ./data).") var dataDir: String?
    @Option(help: "Model bundle directory (ICH_MODEL; default Models/default).") var model: String?
    @Option(help: "Most slices per forward pass (ICH_MAX_BATCH; default 8).") var maxBatch: Int?
    @Option(help: "Longest wait for a fuller batch, in milliseconds (ICH_MAX_DELAY_MS; default 10).") var maxDelayMs: Double?
    @Option(help: "Batch order: study (shortest study first, STAT first, with ageing) or arrival (first in, first out by slice) (ICH_SCHEDULING; default study).") var scheduling: String?
    @Option(help: "Compute threads (ICH_THREADS; default: the cores present).") var threads: Int?
    @Option(help: "Seconds without a new instance before a study is complete (ICH_STABLE_AGE; default 10).") var stableAge: Double?
    @Option(help: "Queued slices above which /readyz is not ready (ICH_QUEUE_HIGH_WATER; default 2000).") var queueHighWater: Int?
    @Option(help: "Queued slices above which ingest answers 503 (ICH_QUEUE_HARD_LIMIT; default 10000).") var queueHardLimit: Int?
    @Option(help: "Largest request body in bytes (ICH_MAX_BODY_BYTES; default 2 GiB).") var maxBodyBytes: Int?
    @Option(help: "Most open connections (ICH_MAX_CONNECTIONS; default 4096, or less where the file-descriptor limit needs it).") var maxConnections: Int?
    @Option(help: "Most open connections one client address (an IPv6 /64) may hold; the next get 429 (ICH_MAX_CONNECTIONS_PER_CLIENT; default 32; 0: no cap).") var maxConnectionsPerClient: Int?
    @Flag(help: "Every connection starts with a PROXY protocol header (v1 or v2) from a trusted load balancer, whose client is the one counted and logged (ICH_PROXY_PROTOCOL=1). Only for a port the balancer alone can reach.") var proxyProtocol = false
    @Option(help: "PEM certificate chain (leaf first): the port serves HTTPS only, TLS 1.2 and 1.3; SIGHUP reloads it (ICH_TLS_CERT; needs --tls-key).") var tlsCert: String?
    @Option(help: "PEM private key of --tls-cert, not encrypted; keep it readable by the service alone (ICH_TLS_KEY).") var tlsKey: String?
    @Option(help: "PEM bundle of the CAs whose client certificates are accepted: every client must present one (mutual TLS), and still a token (ICH_TLS_CLIENT_CA).") var tlsClientCa: String?
    @Option(help: "Port for DICOM associations (C-ECHO, C-STORE) on every interface (ICH_DICOM_PORT; default: off).") var dicomPort: Int?
    @Option(help: "The called AE title this node answers to (ICH_AE_TITLE; default ICHTRIAGE).") var aeTitle: String?
    @Option(help: "A caller allowed to store, AE@HOST; repeat for several (ICH_DICOM_PEERS, comma-separated). None: loopback callers only.") var dicomPeer: [String] = []
    @Option(help: "Most DICOM associations open at once; the next are rejected as busy (ICH_DICOM_MAX_ASSOCIATIONS; default 16).") var dicomMaxAssociations: Int?
    @Option(help: "Largest PDU received, in bytes (ICH_DICOM_MAX_PDU; default 65536).") var dicomMaxPdu: Int?
    @Option(help: "Seconds for an association request to arrive and longest silence within an association (ICH_DICOM_TIMEOUT; default 30).") var dicomTimeout: Int?
    @Option(help: "Failed authentications per client address and minute before it gets 429 for the rest of that minute (ICH_AUTH_FAILURE_LIMIT; default 20; 0: no limit, e.g. behind a proxy).") var authFailureLimit: Int?
    @Option(help: "Base URL clients use to reach this service, for absolute links in notifications and STOW-RS responses (ICH_PUBLIC_URL).") var publicURL: String?
    @Option(help: "Where each completed study's structured report is stored: dicom://AET@HOST:PORT (C-STORE) or the DICOMweb base URL http(s)://HOST/PATH (STOW-RS, bearer token from ICH_RESULTS_TOKEN); repeat for several (ICH_RESULTS_DESTINATIONS, comma-separated).") var resultsDestination: [String] = []
    @Option(help: "PEM bundle of the CAs that verify https:// results destinations (ICH_RESULTS_CACERT).") var resultsCacert: String?
    @Option(help: "Seconds one results delivery may take (ICH_RESULTS_TIMEOUT; default 30).") var resultsTimeout: Double?
    @Option(help: "Webhook URL for positive studies; repeat for several (ICH_WEBHOOK_URLS, comma-separated).") var webhookURL: [String] = []
    @Option(help: "File holding the webhook signing secret (ICH_WEBHOOK_SECRET_FILE, or the secret itself in ICH_WEBHOOK_SECRET).") var webhookSecretFile: String?
    @Option(help: "PEM bundle of the CAs that verify https:// webhook receivers, for a private CA; receivers' certificates are always verified (ICH_WEBHOOK_CACERT).") var webhookCacert: String?
    @Option(help: "Seconds one webhook attempt may take (ICH_WEBHOOK_TIMEOUT; default 10).") var webhookTimeout: Double?
    @Option(help: "Seconds before the first webhook retry, doubling up to an hour (ICH_WEBHOOK_RETRY_BASE; default 5).") var webhookRetryBase: Double?
    @Option(help: "Attempts before a notification is abandoned (ICH_WEBHOOK_MAX_ATTEMPTS; default 30).") var webhookMaxAttempts: Int?
    @Option(help: "Series rules file replacing the built-in rules for non-contrast head CT (ICH_SERIES_RULES; see docs/SERIES_RULES.md).") var seriesRules: String?
    @Option(help: "Delete each study, with its slices, results and notifications, this many days after it completed; audited (ICH_RETENTION_DAYS; default: off, studies are kept).") var retentionDays: Int?
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical (ICH_LOG_LEVEL; default info).") var logLevel: String?
    @Option(help: "Seconds from SIGTERM or SIGINT to the exit, whatever is in progress; a second signal exits at once (ICH_SHUTDOWN_TIMEOUT; default 10).") var shutdownTimeout: Double?

    func run() async throws {
        let level = Logger.Level(rawValue: try setting(logLevel, "ICH_LOG_LEVEL", "info")) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "ich-server")
        signal(SIGPIPE, SIG_IGN)
        // Until the reload handler is set up below, a SIGHUP must not end the process (its default).
        signal(SIGHUP, SIG_IGN)

        var http = HTTPServerConfiguration()
        http.host = try setting(host, "ICH_HOST", http.host)
        http.port = try setting(port, "ICH_PORT", http.port)
        http.maxBodyBytes = try setting(maxBodyBytes, "ICH_MAX_BODY_BYTES", http.maxBodyBytes)
        // Each connection is a descriptor: lift the soft limit to the hard one and size the cap under it.
        let descriptors = DescriptorLimit.raiseSoftLimit()
        let cap = DescriptorLimit.connectionCap(limit: descriptors.after)
        let requested = try setting(maxConnections, "ICH_MAX_CONNECTIONS", min(DescriptorLimit.defaultCap, cap))
        http.maxConnections = min(requested, cap)
        http.maxConnectionsPerClient = try setting(maxConnectionsPerClient, "ICH_MAX_CONNECTIONS_PER_CLIENT", http.maxConnectionsPerClient)
        http.proxyProtocol = proxyProtocol || ProcessInfo.processInfo.environment["ICH_PROXY_PROTOCOL"] == "1"
        guard requested >= 1, http.maxConnectionsPerClient >= 0 else {
            throw ValidationError("max-connections must be at least 1 and max-connections-per-client at least 0.")
        }
        http.tls = try tlsConfiguration()
        if http.tls == nil && !Self.isLoopback(http.host) {
            logger.warning("listening beyond loopback without TLS: tokens and patient data cross the network in clear; give --tls-cert and --tls-key, or let a TLS proxy alone reach this port",
                           metadata: ["host": "\(http.host)"])
        }
        if requested > cap {
            logger.warning("max-connections lowered to fit the file-descriptor limit",
                           metadata: ["requested": "\(requested)", "max_connections": "\(cap)", "fd_limit": "\(descriptors.after)"])
        }
        logger.info("connection limits", metadata: [
            "fd_limit": "\(descriptors.after)", "fd_limit_before": "\(descriptors.before)", "max_connections": "\(http.maxConnections)",
            "max_connections_per_client": "\(http.maxConnectionsPerClient)", "proxy_protocol": "\(http.proxyProtocol)",
        ])
        let dataDirectory = try setting(dataDir, "ICH_DATA_DIR", "data")
        var configuration = ServiceConfiguration(
            http: http, dataDirectory: dataDirectory, modelDirectory: try setting(model, "ICH_MODEL", "Models/default"))
        configuration.http.bodyDirectory = configuration.bodyDirectory
        configuration.maxBatch = try setting(maxBatch, "ICH_MAX_BATCH", configuration.maxBatch)
        configuration.maxDelay = try setting(maxDelayMs, "ICH_MAX_DELAY_MS", configuration.maxDelay * 1000) / 1000
        let order = try setting(scheduling, "ICH_SCHEDULING", configuration.scheduling.rawValue)
        guard let order = SchedulingOrder(rawValue: order) else {
            throw ValidationError("scheduling must be study or arrival.")
        }
        configuration.scheduling = order
        configuration.threads = try setting(threads, "ICH_THREADS", configuration.threads)
        configuration.stableAge = try setting(stableAge, "ICH_STABLE_AGE", configuration.stableAge)
        configuration.queueHighWater = try setting(queueHighWater, "ICH_QUEUE_HIGH_WATER", configuration.queueHighWater)
        configuration.queueHardLimit = try setting(queueHardLimit, "ICH_QUEUE_HARD_LIMIT", configuration.queueHardLimit)
        configuration.authFailureLimit = try setting(authFailureLimit, "ICH_AUTH_FAILURE_LIMIT", configuration.authFailureLimit)
        configuration.shutdownTimeout = try setting(shutdownTimeout, "ICH_SHUTDOWN_TIMEOUT", configuration.shutdownTimeout)
        let base = try setting(publicURL, "ICH_PUBLIC_URL", "")
        configuration.publicURL = base.isEmpty ? nil : String(base.hasSuffix("/") ? base.dropLast() : base[...])
        configuration.webhooks = try webhookConfiguration()
        configuration.dicom = try dicomConfiguration()
        configuration.results = try resultsConfiguration()
        let rules = try setting(seriesRules, "ICH_SERIES_RULES", "")
        configuration.seriesRulesPath = rules.isEmpty ? nil : rules
        configuration.retentionDays = try setting(retentionDays, "ICH_RETENTION_DAYS")
        if let days = configuration.retentionDays, !(1...36_500).contains(days) {
            throw ValidationError("retention-days must be a whole number of days from 1 to 36500; leave it out to keep studies forever.")
        }
        guard configuration.maxBatch >= 1, configuration.maxBatch <= 64, configuration.maxDelay >= 0, configuration.threads >= 1,
              configuration.authFailureLimit >= 0 else {
            throw ValidationError("max-batch must be 1 to 64, max-delay-ms >= 0, threads >= 1 and auth-failure-limit >= 0.")
        }

        // Signals are caught from here on, through the start-up. The first SIGTERM or SIGINT starts the
        // shutdown and its deadline; past it, or at a second signal, the process exits with the work in
        // progress abandoned: what was acknowledged is in the spool and the database, and the next start
        // resumes it.
        let timeout = configuration.shutdownTimeout
        let signalQueue = DispatchQueue(label: "ich-signals")
        nonisolated(unsafe) var received = 0
        let signals = AsyncStream<Int32> { continuation in
            for signalNumber in [SIGTERM, SIGINT] {
                signal(signalNumber, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: signalQueue)
                source.setEventHandler {
                    received += 1  // only ever touched on signalQueue
                    if received > 1 {
                        logger.warning("second signal; exiting now, unfinished work runs at the next start")
                        Self.exitNow(0)
                    }
                    signalQueue.asyncAfter(deadline: .now() + timeout) {
                        logger.warning("shutdown took longer than --shutdown-timeout; exiting, unfinished work runs at the next start")
                        Self.exitNow(0)
                    }
                    continuation.yield(signalNumber)
                }
                source.resume()
                signalSources.append(source)
            }
        }
        let service = try TriageService(configuration: configuration, logger: logger)
        let bound = try service.start()
        // SIGHUP after a certificate renewal: new connections get the new files, open ones keep theirs.
        let reload = DispatchSource.makeSignalSource(signal: SIGHUP, queue: signalQueue)
        reload.setEventHandler { service.reloadTLS() }
        reload.resume()
        signalSources.append(reload)
        if !service.hasTokens {
            logger.notice(
                "no API token exists yet; create one with: ich-server token create --scope admin --data-dir \(dataDirectory)")
        }
        // Scripts starting the server with --port 0 read the port from this line.
        print("listening on \(configuration.http.host):\(bound)")
        fflush(nil)

        // Run until a signal (exit 0) or until the model fails to load (exit 1).
        let exitCode: Int32 = await withTaskGroup(of: Int32?.self) { group in
            group.addTask {
                for await _ in signals { return 0 }
                return nil
            }
            group.addTask {
                do {
                    try await service.waitForModel()
                    return nil
                } catch {
                    // The service has logged why (one critical line); exit so a supervisor notices.
                    return Task.isCancelled ? nil : 1
                }
            }
            for await result in group {
                if let code = result {
                    group.cancelAll()
                    return code
                }
            }
            return 0
        }
        logger.info("shutting down", metadata: ["timeout_seconds": "\(timeout)"])
        await service.shutdown()
        Self.exitNow(exitCode)
    }

    /// Exits without the C exit handlers: OpenBLAS's joins its worker threads, which hangs when a model
    /// load or a batch still holds them, and library destructors would run under threads still working.
    static func exitNow(_ code: Int32) -> Never {
        fflush(nil)
        _exit(code)
    }
}

extension Serve {
    func tlsConfiguration() throws -> TLSConfiguration? {
        let certificate = try setting(tlsCert, "ICH_TLS_CERT")
        let key = try setting(tlsKey, "ICH_TLS_KEY")
        let clientCA = try setting(tlsClientCa, "ICH_TLS_CLIENT_CA")
        switch (certificate, key) {
        case (nil, nil):
            if clientCA != nil { throw ValidationError("tls-client-ca needs tls-cert and tls-key.") }
            return nil
        case (let certificate?, let key?):
            return TLSConfiguration(certificatePath: certificate, keyPath: key, clientCAPath: clientCA)
        default:
            throw ValidationError("tls-cert and tls-key go together: give both, or neither for plain HTTP.")
        }
    }

    func dicomConfiguration() throws -> DICOMNodeConfiguration? {
        guard let port = try setting(dicomPort, "ICH_DICOM_PORT") else { return nil }
        var dicom = DICOMNodeConfiguration(port: port)
        dicom.aeTitle = try setting(aeTitle, "ICH_AE_TITLE", dicom.aeTitle)
        dicom.peers = try listSetting(dicomPeer, "ICH_DICOM_PEERS").map { text in
            guard let peer = DICOMPeer(parsing: text) else {
                throw ValidationError("dicom-peer must be AE@HOST with an AE title of 1 to 16 characters: \(text)")
            }
            return peer
        }
        dicom.maxAssociations = try setting(dicomMaxAssociations, "ICH_DICOM_MAX_ASSOCIATIONS", dicom.maxAssociations)
        dicom.maxPDU = try setting(dicomMaxPdu, "ICH_DICOM_MAX_PDU", dicom.maxPDU)
        dicom.timeout = try setting(dicomTimeout, "ICH_DICOM_TIMEOUT", dicom.timeout)
        if let problem = dicom.problem() { throw ValidationError(problem + ".") }
        return dicom
    }

    /// Only a loopback listener may serve plain HTTP without a warning.
    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    func resultsConfiguration() throws -> ResultsConfiguration {
        var results = ResultsConfiguration()
        results.destinations = try listSetting(resultsDestination, "ICH_RESULTS_DESTINATIONS").map { text in
            guard let destination = ResultsDestination(text) else {
                throw ValidationError("results-destination must be dicom://AET@HOST:PORT or an http(s):// DICOMweb base URL: \(text)")
            }
            return destination
        }
        results.callingAETitle = try setting(aeTitle, "ICH_AE_TITLE", results.callingAETitle)
        results.token = ProcessInfo.processInfo.environment["ICH_RESULTS_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        results.delivery.caBundlePath = try setting(resultsCacert, "ICH_RESULTS_CACERT")
        results.delivery.timeout = try setting(resultsTimeout, "ICH_RESULTS_TIMEOUT", results.delivery.timeout)
        if let problem = results.problem() { throw ValidationError(problem + ".") }
        return results
    }

    func webhookConfiguration() throws -> WebhookConfiguration {
        let environment = ProcessInfo.processInfo.environment
        var webhooks = WebhookConfiguration()
        webhooks.urls = listSetting(webhookURL, "ICH_WEBHOOK_URLS")
        if let path = webhookSecretFile ?? environment["ICH_WEBHOOK_SECRET_FILE"] {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ValidationError("The webhook secret file cannot be read.")
            }
            webhooks.secret = Array(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines).utf8)
        } else if let secret = environment["ICH_WEBHOOK_SECRET"] {
            webhooks.secret = Array(secret.utf8)
        }
        var delivery = webhooks.delivery
        delivery.caBundlePath = try setting(webhookCacert, "ICH_WEBHOOK_CACERT")
        delivery.timeout = try setting(webhookTimeout, "ICH_WEBHOOK_TIMEOUT", delivery.timeout)
        delivery.retryBase = try setting(webhookRetryBase, "ICH_WEBHOOK_RETRY_BASE", delivery.retryBase)
        delivery.maxAttempts = try setting(webhookMaxAttempts, "ICH_WEBHOOK_MAX_ATTEMPTS", delivery.maxAttempts)
        delivery.retryCap = max(delivery.retryCap, delivery.retryBase)
        webhooks.delivery = delivery
        return webhooks
    }
}

nonisolated(unsafe) var signalSources: [any DispatchSourceSignal] = []
