import DICOM
import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The C-ECHO / C-STORE provider: one thread accepts associations, one thread serves each.
/// A C-STORE goes through the same ingest as STOW-RS (header read, series rules, spool fsync,
/// job commit) and answers Success only after that returns.
final class DICOMNode: @unchecked Sendable {
    private let configuration: DICOMNodeConfiguration
    private let context: ServiceContext
    private let listener: DICOMListener
    private let policy: AssociationPolicy
    /// Guards `open`, `stopping` and `serving`.
    private let lock = NSCondition()
    private var open: [ObjectIdentifier: DICOMAssociation] = [:]
    private var stopping = false
    private var serving = false

    /// Binds the port and resolves the peers' hosts; throws what stops the start.
    init(_ configuration: DICOMNodeConfiguration, context: ServiceContext) throws {
        self.configuration = configuration
        self.context = context
        listener = try DICOMListener(port: configuration.port, timeout: configuration.timeout)
        policy = AssociationPolicy(
            aeTitle: configuration.aeTitle,
            peers: try configuration.peers.map { peer in
                let addresses = Self.resolve(peer.host)
                guard !addresses.isEmpty else { throw ServiceError.configuration("the DICOM peer host \(peer.host) does not resolve") }
                return (peer.aeTitle, addresses)
            },
            maxAssociations: configuration.maxAssociations)
    }

    var isServing: Bool { lock.withLock { serving } }

    func start() {
        lock.withLock { serving = true }
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "ich-dicom-accept"
        thread.start()
        context.logger.info("dicom listener", metadata: [
            "port": "\(configuration.port)", "ae_title": "\(configuration.aeTitle)", "peers": "\(configuration.peers.count)",
            "max_associations": "\(configuration.maxAssociations)",
        ])
    }

    /// Stops accepting and aborts open associations after their command in progress; waits up to `grace`.
    func stop(grace: Double) {
        let deadline = Date().addingTimeInterval(grace)
        lock.withLock {
            stopping = true
            for association in open.values { association.stop() }
            while (serving || !open.isEmpty) && lock.wait(until: deadline) {}
        }
    }

    private func acceptLoop() {
        defer { lock.withLock { serving = false; lock.broadcast() } }
        while !lock.withLock({ stopping }) {
            let association: DICOMAssociation?
            do {
                association = try listener.accept(wait: 1, maxPDU: configuration.maxPDU)
            } catch {
                context.logger.info("dicom association request unreadable", metadata: ["reason": "\(error)"])
                continue
            }
            guard let association else { continue }
            admit(association)
        }
    }

    private func admit(_ association: DICOMAssociation) {
        let id = ObjectIdentifier(association)
        let decision = lock.withLock { () -> AssociationPolicy.Decision in
            let decision = stopping ? .rejectBusy : policy.decide(
                calling: association.callingAETitle, called: association.calledAETitle, host: association.peerHost, open: open.count)
            if decision == .accept { open[id] = association }
            return decision
        }
        // AE titles and addresses identify machines, not patients.
        let metadata: Logger.Metadata = [
            "calling_ae": "\(association.callingAETitle)", "called_ae": "\(association.calledAETitle)", "host": "\(association.peerHost)",
        ]
        if let reason = decision.rejection {
            association.reject(reason)
            context.metrics.dicomAssociationRejected("\(reason)")
            context.logger.notice("dicom association rejected", metadata: metadata.merging(["reason": "\(reason)"]) { a, _ in a })
            return
        }
        let thread = Thread { [self] in
            serve(association, metadata: metadata)
            lock.withLock {
                open.removeValue(forKey: id)
                context.metrics.dicomAssociationsOpen.set(Double(open.count))
                lock.broadcast()
            }
        }
        thread.name = "ich-dicom-association"
        context.metrics.dicomAssociationsOpen.set(Double(lock.withLock { open.count }))
        thread.start()
    }

    private func serve(_ association: DICOMAssociation, metadata: Logger.Metadata) {
        do {
            let accepted = try association.accept()
            context.logger.info("dicom association accepted", metadata: metadata.merging(["contexts": "\(accepted)"]) { a, _ in a })
        } catch {
            context.logger.info("dicom association failed", metadata: metadata.merging(["reason": "\(error)"]) { a, _ in a })
            return
        }
        var stored = 0
        let end = association.serve(timeout: configuration.timeout, store: { bytes in
            let status = store(bytes)
            if status == DIMSEStatus.success { stored += 1 }
            return status
        }, observe: { command, status in
            context.metrics.dimseRequest(command: command == 0x0030 ? "C-ECHO" : command == 0x0001 ? "C-STORE" : "other", status: status)
        })
        context.logger.info("dicom association ended", metadata: metadata.merging(["end": "\(end.rawValue)", "stored": "\(stored)"]) { a, _ in a })
    }

    /// The STOW-RS path for one instance: Success only once it is spooled and committed.
    private func store(_ bytes: UnsafeRawBufferPointer) -> UInt16 {
        if let refused = StoreAnswer.admit(queueDepth: context.pipeline.depth, hardLimit: context.configuration.queueHardLimit,
                                           shuttingDown: context.isShuttingDown) {
            return refused
        }
        switch IngestRoutes.accept(bytes, rules: context.rules) {
        case .failure(let error):
            context.metrics.ingested("failed")
            return StoreAnswer.unreadable(IngestRoutes.reason(error))
        case .success(let item):
            do {
                let isNew = try context.pipeline.ingest([item])[0]
                context.metrics.ingested(isNew ? "stored" : "duplicate")
                return DIMSEStatus.success
            } catch {
                _ = IngestRoutes.storeFailed(context, error)
                return StoreAnswer.notStored
            }
        }
    }

    /// The numeric addresses a peer's host stands for.
    static func resolve(_ host: String) -> Set<String> {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &list) == 0, let list else { return [] }
        defer { freeaddrinfo(list) }
        var addresses = Set<String>()
        var entry: UnsafeMutablePointer<addrinfo>? = list
        while let info = entry {
            var name = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(info.pointee.ai_addr, info.pointee.ai_addrlen, &name, socklen_t(name.count), nil, 0, NI_NUMERICHOST) == 0 {
                addresses.insert(AssociationPolicy.unmapped(String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)))
            }
            entry = info.pointee.ai_next
        }
        return addresses
    }
}
