import Dispatch
import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs for each request, in a Task, never on a socket queue. The body (a file
/// for large ones) is valid until the handler returns.
public typealias HTTPHandler = @Sendable (HTTPRequest) async -> HTTPResponse

/// Runs on the connection's queue when a request head is complete, with the
/// peer's address, before any body is read. It must not block.
public typealias HeadCheck = @Sendable (HTTPRequestHead, _ remoteAddress: String) -> HeadDecision

public enum HeadDecision: Sendable {
    /// Read the body and call the handler; what the check learned (who the
    /// caller is, say) reaches it as `HTTPRequestHead.admission`.
    case admit((any Sendable)?)
    case refuse(HTTPResponse)
}

/// An HTTP/1.1 server on BSD sockets and Dispatch sources: one serial queue per
/// connection, no thread per connection. `@unchecked Sendable` because its
/// mutable state (the listener and the connection table) is guarded by `lock`.
public final class HTTPServer: @unchecked Sendable {
    private let configuration: HTTPServerConfiguration
    private let logger: Logger
    private let headCheck: HeadCheck?
    private let errorResponse: @Sendable (HTTPServerError) -> HTTPResponse
    private let handler: HTTPHandler
    private let onRefusal: @Sendable (ConnectionRefusal) -> Void

    private let lock = NSLock()
    private let acceptQueue = DispatchQueue(label: "http.accept")
    private var listener: DispatchSourceRead?
    /// When `accept` last failed and was logged; later failures within a second are only counted.
    private var acceptFailureLogged: ContinuousClock.Instant?
    private var acceptFailuresSinceLog = 0
    /// The listener while accepting is paused (suspended); resumed even after shutdown so its cancellation completes.
    private var pausedListener: (any DispatchSourceRead)?
    private var connections: [UInt64: Connection] = [:]
    private var admission: ConnectionAdmission<UInt64>
    private var nextID: UInt64 = 0
    private var shuttingDown = false
    /// What new connections handshake with; replaced by `reloadTLS()`.
    private var tlsContext: TLSContext?

    public init(
        configuration: HTTPServerConfiguration, logger: Logger,
        headCheck: HeadCheck? = nil,
        errorResponse: @escaping @Sendable (HTTPServerError) -> HTTPResponse,
        onRefusal: @escaping @Sendable (ConnectionRefusal) -> Void = { _ in },
        handler: @escaping HTTPHandler
    ) {
        self.configuration = configuration
        self.logger = logger
        self.headCheck = headCheck
        self.errorResponse = errorResponse
        self.onRefusal = onRefusal
        self.handler = handler
        admission = ConnectionAdmission(
            maxConnections: configuration.maxConnections, maxPerClient: configuration.maxConnectionsPerClient)
    }

    /// Open connections, including ones being refused with 503.
    public var connectionCount: Int {
        lock.withLock { connections.count }
    }

    /// Binds, listens and starts accepting; returns the bound port.
    public func start() throws -> Int {
        if let tls = configuration.tls {
            let context = try TLSContext(tls)
            lock.withLock { tlsContext = context }
        }
        if mkdir(configuration.bodyDirectory, 0o700) != 0 && errno != EEXIST {
            throw SystemError(call: "mkdir", errno: errno)
        }
        let fd = try Self.listen(host: configuration.host, port: configuration.port, backlog: configuration.backlog)
        let port = try Self.localPort(fd)
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: acceptQueue)
        source.setEventHandler { [self] in acceptConnections(fd, source: source) }
        source.setCancelHandler { close(fd) }
        lock.withLock { listener = source }
        source.resume()
        logger.info("http server listening", metadata: [
            "host": "\(configuration.host)", "port": "\(port)", "tls": "\(configuration.tls != nil)",
            "client_certificates": "\(configuration.tls?.clientCAPath != nil)",
        ])
        return port
    }

    /// The certificate new connections present, or nil for plain HTTP.
    public var tlsCertificate: TLSContext? {
        lock.withLock { tlsContext }
    }

    /// Reads the certificate, key and client CA files again (after a renewal). New
    /// connections use them; open ones keep the context they started with, so nothing
    /// drops. On failure the old files stay in use and the error says why.
    @discardableResult
    public func reloadTLS() throws(TLSError) -> TLSContext? {
        guard let tls = configuration.tls else { return nil }
        let context = try TLSContext(tls)
        lock.withLock { tlsContext = context }
        return context
    }

    /// Out of descriptors (EMFILE, ENFILE) or kernel memory: the connection stays
    /// in the backlog and the listener would fire again at once, spinning and
    /// flooding the log. Stop listening for 100 ms instead, and log at most once a second.
    private func pauseAccepting(_ source: any DispatchSourceRead, errno code: Int32) {
        source.suspend()
        let now = ContinuousClock.now
        let suppressed: Int? = lock.withLock {
            pausedListener = source
            acceptFailuresSinceLog += 1
            guard acceptFailureLogged.map({ now - $0 >= .seconds(1) }) ?? true else { return nil }
            defer { acceptFailureLogged = now; acceptFailuresSinceLog = 0 }
            return acceptFailuresSinceLog - 1
        }
        if let suppressed {
            logger.warning("accept failed; pausing new connections for 100 ms",
                           metadata: ["errno": "\(code)", "failures_since_last_log": "\(suppressed)"])
        }
        acceptQueue.asyncAfter(deadline: .now() + .milliseconds(100)) { [self] in
            let paused = lock.withLock { () -> (any DispatchSourceRead)? in
                defer { pausedListener = nil }
                return pausedListener
            }
            paused?.resume()
        }
    }

    /// Stops accepting, closes idle connections, lets in-flight requests finish
    /// and their responses go out, and force-closes whatever is left after `gracePeriod`.
    public func shutdown(gracePeriod: Duration) async {
        let open: [Connection] = lock.withLock {
            shuttingDown = true
            listener?.cancel()
            listener = nil
            return Array(connections.values)
        }
        for connection in open { connection.beginShutdown() }
        let deadline = ContinuousClock.now + gracePeriod
        while connectionCount > 0 && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        let remaining = lock.withLock { Array(connections.values) }
        if !remaining.isEmpty {
            logger.warning("forcing connections closed after grace period", metadata: ["count": "\(remaining.count)"])
        }
        for connection in remaining { connection.forceClose() }
        while connectionCount > 0 {
            try? await Task.sleep(for: .milliseconds(5))
        }
        logger.info("http server stopped")
    }

    private func acceptConnections(_ listenFD: Int32, source: any DispatchSourceRead) {
        while true {
            var address = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let result: IOResult<Int32>
            do throws(SystemError) {
                result = try withUnsafeMutablePointer(to: &address) { pointer in
                    pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                        Result { () throws(SystemError) in
                            try syscall("accept") { accept(listenFD, socketAddress, &length) }
                        }
                    }
                }.get()
            } catch {
                pauseAccepting(source, errno: error.errno)
                return
            }
            guard case .processed(let fd) = result else { return }
            configureAccepted(fd)
            let remote = Self.numericHost(&address)
            // Behind a PROXY-protocol load balancer every socket comes from it: the client is counted once its header names it.
            let key = configuration.proxyProtocol ? nil : clientKey(remote)
            let (id, decision, tls) = lock.withLock { () -> (UInt64, ConnectionAdmission<UInt64>.Decision?, TLSContext?) in
                guard !shuttingDown else { return (0, nil, nil) }
                nextID += 1
                return (nextID, admission.connect(nextID, client: key) { waitingConnections() }, tlsContext)
            }
            var reject: HTTPServerError?
            switch decision {
            case nil:
                close(fd)
                continue
            case .drop:
                close(fd)
                onRefusal(.dropped)
                continue
            case .refuse(.serverFull): reject = .tooManyConnections
            case .refuse(.clientFull): reject = .tooManyConnectionsFromClient
            case .admitEvicting(let victim):
                lock.withLock { connections[victim] }?.evict(spared: { [weak self] in self?.spare(victim) })
            case .admit: break
            }
            var admitClient: (@Sendable (String) -> ConnectionAdmission<UInt64>.Decision)?
            if configuration.proxyProtocol {
                admitClient = { [weak self] client in self?.identify(id, client) ?? .admit }
            }
            let connection = Connection(
                id: id, fd: fd, remoteAddress: remote, configuration: configuration, tls: tls, headCheck: headCheck,
                admitClient: admitClient,
                errorResponse: errorResponse, handler: handler, logger: logger,
                onClose: { [weak self] connection in self?.remove(connection) }, onRefusal: onRefusal)
            lock.withLock { connections[id] = connection }
            connection.start(reject: reject)
        }
    }

    /// Called under `lock`, only when the server is full.
    private func waitingConnections() -> [(UInt64, ContinuousClock.Instant)] {
        connections.compactMap { id, connection in
            connection.waitingForHeadSince.withLock { $0 }.map { (id, $0) }
        }
    }

    private func spare(_ id: UInt64) {
        lock.withLock { admission.spare(id) }
    }

    private func identify(_ id: UInt64, _ client: String) -> ConnectionAdmission<UInt64>.Decision {
        lock.withLock { admission.identify(id, client: clientKey(client)) }
    }

    private func remove(_ connection: Connection) {
        lock.withLock {
            guard connections.removeValue(forKey: connection.id) != nil else { return }
            admission.disconnect(connection.id)
        }
    }

    private func configureAccepted(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        var one: Int32 = 1
        // Responses are written whole; Nagle would only delay the last segment.
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        #if canImport(Darwin)
        _ = setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, socklen_t(MemoryLayout<Int32>.size))
        #endif
    }

    private static func listen(host: String, port: Int, backlog: Int32) throws(SystemError) -> Int32 {
        var hints = addrinfo()
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let list else { throw SystemError(call: "getaddrinfo", errno: status == EAI_SYSTEM ? errno : EINVAL) }
        defer { freeaddrinfo(list) }
        var lastError = SystemError(call: "getaddrinfo", errno: EADDRNOTAVAIL)
        var entry: UnsafeMutablePointer<addrinfo>? = list
        while let info = entry {
            entry = info.pointee.ai_next
            let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
            guard fd >= 0 else {
                lastError = SystemError(call: "socket", errno: errno)
                continue
            }
            var one: Int32 = 1
            _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            do throws(SystemError) {
                try syscall("bind", blocking: true) { bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) }
                try syscall("listen", blocking: true) { systemListen(fd, backlog) }
                return fd
            } catch {
                lastError = error
                close(fd)
            }
        }
        throw lastError
    }

    private static func systemListen(_ fd: Int32, _ backlog: Int32) -> Int32 {
        #if canImport(Glibc)
        Glibc.listen(fd, backlog)
        #else
        Darwin.listen(fd, backlog)
        #endif
    }

    private static func localPort(_ fd: Int32) throws(SystemError) -> Int {
        var address = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let status = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard status == 0 else { throw SystemError(call: "getsockname", errno: errno) }
        let family = address.ss_family
        return withUnsafePointer(to: &address) { pointer in
            if family == sa_family_t(AF_INET6) {
                return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
            }
            return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
        }
    }

    private static func numericHost(_ address: inout sockaddr_storage) -> String {
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        let length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                getnameinfo($0, length, &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST)
            }
        }
        guard status == 0 else { return "" }
        return host.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}
