import Dispatch
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One accepted socket. Every mutable field is touched only on `queue`, which
/// is what makes the `@unchecked Sendable` true; handlers run in Tasks and
/// hop back onto `queue` with their response.
final class Connection: @unchecked Sendable {
    let id: UInt64
    let fd: Int32
    let queue: DispatchQueue
    /// The machine's `waitingForHeadSince`, published for the server, which reads it from its own thread.
    let waitingForHeadSince = Mutex<ContinuousClock.Instant?>(nil)
    private var machine: ConnectionStateMachine
    private let handler: HTTPHandler
    private let errorResponse: @Sendable (HTTPServerError) -> HTTPResponse
    private let logger: Logger
    private let onClose: @Sendable (Connection) -> Void
    private let onRefusal: @Sendable (ConnectionRefusal) -> Void
    private let drainTimeout: Duration
    private let tlsContext: TLSContext?
    /// Set in `start` when the server speaks TLS; dropped when the peer turns out to speak plain HTTP.
    private var tls: TLSSession?
    /// OpenSSL may need the opposite direction to progress (a handshake write during a read, a
    /// read during a write); the other source's event then retries the blocked call.
    private var readWantsWrite = false
    private var writeWantsRead = false

    private var readSource: DispatchSourceRead?
    private var writeSource: DispatchSourceWrite?
    private var timer: DispatchSourceTimer?
    private var readSuspended = false
    private var writeSuspended = true
    private var outbound: [UInt8] = []
    private var outboundOffset = 0
    private var closeAfterFlush = false
    private var drainDeadline: ContinuousClock.Instant?
    private var closed = false
    private var handlerRunning = false
    /// The body file of the request being handled; deleted when its handler returns.
    private var deliveredFile: String?
    private var pendingCancels = 0

    init(
        id: UInt64, fd: Int32, remoteAddress: String, configuration: HTTPServerConfiguration, tls: TLSContext?,
        headCheck: HeadCheck?, admitClient: (@Sendable (String) -> ConnectionAdmission<UInt64>.Decision)?,
        errorResponse: @escaping @Sendable (HTTPServerError) -> HTTPResponse,
        handler: @escaping HTTPHandler, logger: Logger, onClose: @escaping @Sendable (Connection) -> Void,
        onRefusal: @escaping @Sendable (ConnectionRefusal) -> Void
    ) {
        self.id = id
        self.fd = fd
        self.queue = DispatchQueue(label: "http.connection")
        let now = ContinuousClock.now
        self.machine = ConnectionStateMachine(
            configuration: configuration, now: now, clientAddress: remoteAddress, headCheck: headCheck, admitClient: admitClient)
        waitingForHeadSince.withLock { $0 = now }
        self.handler = handler
        self.errorResponse = errorResponse
        self.logger = logger
        self.onClose = onClose
        self.onRefusal = onRefusal
        self.drainTimeout = configuration.drainTimeout
        self.tlsContext = tls
    }

    /// Starts reading; with `reject`, answers that error at once and closes (used past maxConnections).
    func start(reject: HTTPServerError? = nil) {
        queue.async { [self] in
            let read = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
            read.setEventHandler { [self] in readable() }
            read.setCancelHandler { [self] in sourceCancelled() }
            readSource = read
            pendingCancels += 1
            let timer = DispatchSource.makeTimerSource(queue: queue)
            timer.setEventHandler { [self] in timerFired() }
            self.timer = timer
            timer.resume()
            read.resume()
            if let tlsContext {
                // The handshake runs under the same deadline as the first request head.
                guard let session = TLSSession(context: tlsContext, fd: fd) else { return teardown() }
                tls = session
            }
            if let reject {
                execute([.fail(reject), .close])
            } else {
                rescheduleTimer()
            }
        }
    }

    /// Server shutdown: idle connections close now, busy ones after their response.
    func beginShutdown() {
        queue.async { [self] in
            guard !closed else { return }
            execute(machine.shutdown(now: .now))
        }
    }

    func forceClose() {
        queue.async { [self] in teardown() }
    }

    /// The server is full and this connection has waited longest for a request:
    /// closed without an answer, as an idle keep-alive may be (RFC 9112 §9.5),
    /// unless a request started meanwhile (then `spared` runs).
    func evict(spared: @escaping @Sendable () -> Void) {
        queue.async { [self] in
            guard !closed else { return }
            guard machine.waitingForHeadSince != nil else { return spared() }
            onRefusal(.evicted)
            teardown()
        }
    }

    // MARK: Events

    private func readable() {
        guard !closed else { return }
        if writeWantsRead {
            writeWantsRead = false
            flush()
        }
        ReceiveBuffers.shared.withBuffer { readAvailable(into: $0) }
    }

    private func writable() {
        flush()
        if readWantsWrite {
            readWantsWrite = false
            readable()
        }
    }

    private func readAvailable(into buffer: UnsafeMutableRawBufferPointer) {
        // Bounded so one fast client cannot hold the queue; the source fires again.
        for _ in 0..<16 {
            guard !closed, !readSuspended || drainDeadline != nil else { return }
            let count: Int
            switch receive(into: buffer) {
            case .bytes(let received): count = received
            case .end: count = 0
            case .wouldBlock: return
            case .failed: return teardown()
            }
            if count == 0 {
                if drainDeadline != nil {
                    teardown()
                } else {
                    execute(machine.peerClosedInput(now: .now))
                    // A half-closed socket stays readable; stop listening until the response is out.
                    if !closed && !readSuspended, let readSource {
                        readSource.suspend()
                        readSuspended = true
                    }
                }
                return
            }
            if drainDeadline != nil { continue }  // discarding input after the final response
            execute(machine.received(UnsafeRawBufferPointer(rebasing: buffer[0..<count]), now: .now))
        }
        readBufferedInput()
    }

    /// Decrypted bytes OpenSSL holds raise no socket event: read them on the next turn.
    private func readBufferedInput() {
        guard let tls, tls.hasPendingInput else { return }
        queue.async { [self] in readable() }
    }

    private enum Received {
        case bytes(Int)
        /// The peer closed its side.
        case end
        case wouldBlock
        /// Logged; the connection is to be torn down.
        case failed
    }

    private func receive(into buffer: UnsafeMutableRawBufferPointer) -> Received {
        guard let tls else {
            do throws(SystemError) {
                switch try syscall("recv", { recv(fd, buffer.baseAddress, buffer.count, 0) }) {
                case .processed(0): return .end
                case .processed(let count): return .bytes(count)
                case .wouldBlock: return .wouldBlock
                }
            } catch {
                logger.debug("connection read failed", metadata: ["call": "\(error.call)", "errno": "\(error.errno)"])
                return .failed
            }
        }
        switch tls.read(into: buffer) {
        case .processed(let count): return .bytes(count)
        case .wantRead: return .wouldBlock
        case .wantWrite:
            readWantsWrite = true
            armWriteSource()
            return .wouldBlock
        case .closed: return .end
        case .plainHTTP:
            // Answered in plain text, the only thing such a client can read; what it sent is drained.
            self.tls = nil
            execute([.fail(.plainHTTPToTLSPort), .close])
            return .wouldBlock
        case .failed:
            if tls.isEstablished {
                logger.debug("tls connection failed", metadata: ["reason": "\(tls.failureReason)"])
            } else {
                onRefusal(.tlsHandshake)
                logger.info("tls handshake failed", metadata: ["reason": "\(tls.failureReason)"])
            }
            return .failed
        }
    }

    private enum Sent {
        case bytes(Int)
        case wouldBlock
        /// TLS needs input first; the next read event retries.
        case waitForInput
        case failed
    }

    private func transmit(_ buffer: UnsafeRawBufferPointer) -> Sent {
        guard let tls else {
            do throws(SystemError) {
                switch try syscall("send", { send(fd, buffer.baseAddress, buffer.count, sendFlags) }) {
                case .processed(let count): return .bytes(count)
                case .wouldBlock: return .wouldBlock
                }
            } catch {
                logger.debug("connection write failed", metadata: ["call": "\(error.call)", "errno": "\(error.errno)"])
                return .failed
            }
        }
        switch tls.write(buffer) {
        case .processed(let count): return .bytes(count)
        case .wantWrite: return .wouldBlock
        case .wantRead: return .waitForInput
        case .closed, .failed, .plainHTTP:
            logger.debug("tls write failed", metadata: ["reason": "\(tls.failureReason)"])
            return .failed
        }
    }

    private func timerFired() {
        guard !closed else { return }
        let now = ContinuousClock.now
        if let drainDeadline {
            if now >= drainDeadline { teardown() }
            return
        }
        execute(machine.tick(now: now))
    }

    private func handlerFinished(_ response: HTTPResponse) {
        handlerRunning = false
        if let deliveredFile {
            unlink(deliveredFile)
            self.deliveredFile = nil
        }
        guard !closed else { return }
        execute(machine.responseReady(response, now: .now))
    }

    // MARK: Actions

    private func execute(_ actions: [ConnectionStateMachine.Action]) {
        // Published before a response goes out: a client that reads it and opens another
        // connection at once must find this one already waiting (and evictable).
        let waiting = machine.waitingForHeadSince
        waitingForHeadSince.withLock { $0 = waiting }
        for action in actions {
            guard !closed else { return }
            switch action {
            case .sendContinue:
                enqueue(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))
            case .deliver(let head, let body):
                if case .file(let path, _) = body { deliveredFile = path }
                handlerRunning = true
                let request = HTTPRequest(head: head, body: body, remoteAddress: machine.clientAddress)
                let handler = handler
                Task { [self] in
                    let response = await handler(request)
                    queue.async { [self] in handlerFinished(response) }
                }
            case .respond(let response, let version, let close, let omitBody):
                enqueue(serializeResponse(response, version: version, close: close, omitBody: omitBody, date: httpDate()))
            case .fail(let error):
                if let refusal = ConnectionRefusal(error) { onRefusal(refusal) }
                if case .bodyStorageFailed(let cause) = error {
                    logger.error("request body could not be stored; refused", metadata: ["error": "\(cause)"])
                } else {
                    logger.info("request refused", metadata: ["status": "\(error.status)", "type": "\(error.type)"])
                }
                enqueue(serializeResponse(errorResponse(error), version: .http1_1, close: true, omitBody: false, date: httpDate()))
            case .close:
                closeAfterFlush = true
                flush()
            case .closeNow:
                teardown()
            case .refused(let refusal):
                onRefusal(refusal)
            case .pauseReading:
                if !readSuspended, let readSource {
                    readSource.suspend()
                    readSuspended = true
                }
            case .resumeReading:
                if readSuspended, let readSource {
                    readSource.resume()
                    readSuspended = false
                    readBufferedInput()
                }
            }
        }
        rescheduleTimer()
    }

    private func enqueue(_ bytes: [UInt8]) {
        outbound += bytes
        flush()
    }

    private func flush() {
        guard !closed else { return }
        while outboundOffset < outbound.count {
            let result = outbound.withUnsafeBytes { transmit(UnsafeRawBufferPointer(rebasing: $0[outboundOffset...])) }
            switch result {
            case .bytes(let written): outboundOffset += written
            case .wouldBlock:
                armWriteSource()
                return
            case .waitForInput:
                writeWantsRead = true
                suspendWriteSource()
                return
            case .failed:
                teardown()
                return
            }
        }
        outbound.removeAll(keepingCapacity: true)
        outboundOffset = 0
        if !readWantsWrite { suspendWriteSource() }
        if closeAfterFlush && drainDeadline == nil { startDrain() }
    }

    private func suspendWriteSource() {
        if let writeSource, !writeSuspended {
            writeSource.suspend()
            writeSuspended = true
        }
    }

    private func armWriteSource() {
        if writeSource == nil {
            let source = DispatchSource.makeWriteSource(fileDescriptor: fd, queue: queue)
            source.setEventHandler { [self] in writable() }
            source.setCancelHandler { [self] in sourceCancelled() }
            writeSource = source
            pendingCancels += 1
        }
        if writeSuspended, let writeSource {
            writeSource.resume()
            writeSuspended = false
        }
    }

    /// After the final response: half-close so the client sees the end, then read and
    /// discard what it still sends (an unread body) until EOF or the drain timeout,
    /// so closing does not turn into a reset that destroys the response in flight.
    private func startDrain() {
        tls?.closeNotify()
        shutdown(fd, Int32(SHUT_WR))
        drainDeadline = .now + drainTimeout
        if readSuspended, let readSource {
            readSource.resume()
            readSuspended = false
        }
        rescheduleTimer()
    }

    private func rescheduleTimer() {
        guard let timer, !closed else { return }
        guard let deadline = drainDeadline ?? machine.deadline else {
            timer.schedule(deadline: .distantFuture)
            return
        }
        let delay = max(.zero, deadline - .now)
        let nanoseconds = delay.components.seconds * 1_000_000_000 + delay.components.attoseconds / 1_000_000_000
        timer.schedule(deadline: .now() + .nanoseconds(Int(nanoseconds) + 1_000_000))
    }

    private func teardown() {
        guard !closed else { return }
        closed = true
        machine.abandon()
        if let deliveredFile, !handlerRunning {
            unlink(deliveredFile)
            self.deliveredFile = nil
        }
        timer?.cancel()
        // A suspended source must be resumed before it can finish cancelling.
        if let writeSource {
            writeSource.cancel()
            if writeSuspended { writeSource.resume() }
        }
        if let readSource {
            readSource.cancel()
            if readSuspended { readSource.resume() }
        }
        if pendingCancels == 0 { close(fd) }
        onClose(self)
    }

    /// The descriptor is closed only after every source watching it has
    /// cancelled, or a reused descriptor number could receive stale events.
    private func sourceCancelled() {
        pendingCancels -= 1
        if pendingCancels == 0 { close(fd) }
    }
}

private let weekdays = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
private let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

/// IMF-fixdate (RFC 9110 §5.6.7), built by hand so the C locale never matters.
func httpDate(_ seconds: time_t = time(nil)) -> String {
    var t = seconds
    var parts = tm()
    gmtime_r(&t, &parts)
    func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
    return "\(weekdays[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
        + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
}
