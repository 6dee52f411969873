/// Everything one connection decides, without sockets or clocks of its own: it
/// is fed bytes, handler responses, EOF and the time, and answers with actions
/// for `Connection` to carry out (the hummingbird habit), so keep-alive,
/// pipelining, 100-continue, limits and timeouts are tested with a fake clock.
struct ConnectionStateMachine {
    typealias Instant = ContinuousClock.Instant

    enum Action {
        case sendContinue
        /// Run the handler; its response comes back through `responseReady`.
        case deliver(HTTPRequestHead, HTTPBody)
        case respond(HTTPResponse, version: HTTPVersion, close: Bool, omitBody: Bool)
        /// Answer with the service's rendering of the error; a `.close` follows.
        case fail(HTTPServerError)
        /// Flush what is queued, half-close, drain input briefly, close.
        case close
        /// Close without a response (idle keep-alive, client gone).
        case closeNow
        case pauseReading
        case resumeReading
        /// For the metrics: the connection is being closed for this reason (without a response).
        case refused(ConnectionRefusal)
    }

    private struct BodyProgress {
        var head: HTTPRequestHead
        var keepAlive: Bool
        var remaining: Int?  // nil: chunked
        var decoder: ChunkedDecoder
        var sink: BodySink
        var started: Instant
        var windowStart: Instant
        var windowBytes = 0
    }

    private enum Phase {
        /// Before the first request when `proxyProtocol` is on: the load balancer's PROXY header.
        case proxyHeader
        /// Waiting for a head: idle while nothing has arrived, then timed from the first byte.
        case head(firstByte: Instant?)
        case body(BodyProgress)
        case handling(HTTPRequestHead, keepAlive: Bool)
        case closed
    }

    let configuration: HTTPServerConfiguration
    let headCheck: HeadCheck?
    /// Asked once a PROXY header names the client: may it hold one more connection?
    let admitClient: (@Sendable (String) -> ConnectionAdmission<UInt64>.Decision)?
    /// The socket's peer, or the client a PROXY header named.
    private(set) var clientAddress: String
    private let parser: RequestHeadParser
    private var phase: Phase = .head(firstByte: nil)
    private var inbound: [UInt8] = []
    /// How much of `inbound` the head parser has seen without finding a line end.
    private var scanned = 0
    private var idleSince: Instant
    private var shuttingDown = false
    private var peerClosed = false
    /// Until its first request head is complete, a connection has `headerReadTimeout`
    /// from its accept, not the keep-alive `idleTimeout`: a socket opened and left
    /// silent (or trickling) is an attack or a fault, while an idle keep-alive is a
    /// client's connection pool.
    private var awaitingFirstRequest = true

    init(
        configuration: HTTPServerConfiguration, now: Instant, clientAddress: String = "", headCheck: HeadCheck? = nil,
        admitClient: (@Sendable (String) -> ConnectionAdmission<UInt64>.Decision)? = nil
    ) {
        self.configuration = configuration
        self.headCheck = headCheck
        self.admitClient = admitClient
        self.clientAddress = clientAddress
        parser = RequestHeadParser(maxHeaderBytes: configuration.maxHeaderBytes, maxHeaderCount: configuration.maxHeaderCount)
        idleSince = now
        if configuration.proxyProtocol { phase = .proxyHeader }
    }

    var isClosed: Bool {
        if case .closed = phase { return true }
        return false
    }

    /// No request in progress: what shutdown may close at once.
    var isIdle: Bool {
        switch phase {
        case .head(nil), .proxyHeader: inbound.isEmpty
        default: false
        }
    }

    /// Since when the connection has waited for a request head (nil while a
    /// request is in progress): the server closes the longest waiting to make room.
    var waitingForHeadSince: Instant? {
        switch phase {
        case .head, .proxyHeader: idleSince
        case .body, .handling, .closed: nil
        }
    }

    // MARK: Events

    mutating func received(_ bytes: UnsafeRawBufferPointer, now: Instant) -> [Action] {
        if isClosed || bytes.isEmpty { return [] }
        inbound.append(contentsOf: bytes)
        if case .body(var progress) = phase {
            progress.windowBytes += bytes.count
            phase = .body(progress)
        }
        return process(now: now)
    }

    mutating func responseReady(_ response: HTTPResponse, now: Instant) -> [Action] {
        guard case .handling(let head, let keepAlive) = phase else { return [] }
        let close = !keepAlive || shuttingDown || peerClosed || response.headers.tokens("connection").contains("close")
        var actions: [Action] = [.respond(response, version: head.version, close: close, omitBody: head.method == "HEAD")]
        if close {
            phase = .closed
            actions.append(.close)
            return actions
        }
        phase = .head(firstByte: nil)
        idleSince = now
        scanned = 0
        actions.append(.resumeReading)
        return actions + process(now: now)
    }

    mutating func peerClosedInput(now: Instant) -> [Action] {
        switch phase {
        case .handling:
            // A client may half-close after its request; it still gets the response.
            peerClosed = true
            return []
        case .closed:
            return []
        default:
            abandon()
            phase = .closed
            return [.closeNow]
        }
    }

    mutating func shutdown(now: Instant) -> [Action] {
        shuttingDown = true
        if isIdle {
            phase = .closed
            return [.closeNow]
        }
        return []
    }

    /// The next time `tick` has something to check, if any.
    var deadline: Instant? {
        switch phase {
        case .proxyHeader: idleSince + configuration.headerReadTimeout
        case .head(nil): idleSince + (awaitingFirstRequest ? configuration.headerReadTimeout : configuration.idleTimeout)
        case .head(let firstByte?): firstByte + configuration.headerReadTimeout
        case .body(let progress):
            configuration.minBodyBytesPerSecond > 0 ? progress.windowStart + configuration.bodyRateWindow : nil
        case .handling, .closed: nil
        }
    }

    mutating func tick(now: Instant) -> [Action] {
        switch phase {
        case .proxyHeader:
            guard now - idleSince >= configuration.headerReadTimeout else { return [] }
            if inbound.isEmpty {
                phase = .closed
                return [.refused(.headTimeout), .closeNow]
            }
            return fail(.headerReadTimeout)
        case .head(nil):
            let limit = awaitingFirstRequest ? configuration.headerReadTimeout : configuration.idleTimeout
            guard now - idleSince >= limit else { return [] }
            phase = .closed
            // A keep-alive that idled out is normal; a connection that never sent a request is refused.
            return awaitingFirstRequest ? [.refused(.headTimeout), .closeNow] : [.closeNow]
        case .head(let firstByte?):
            guard now - firstByte >= configuration.headerReadTimeout else { return [] }
            return fail(.headerReadTimeout)
        case .body(var progress):
            guard configuration.minBodyBytesPerSecond > 0 else { return [] }
            let elapsed = now - progress.windowStart
            guard elapsed >= configuration.bodyRateWindow else { return [] }
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
            if Double(progress.windowBytes) < Double(configuration.minBodyBytesPerSecond) * seconds {
                return fail(.bodyTooSlow)
            }
            progress.windowStart = now
            progress.windowBytes = 0
            phase = .body(progress)
            return []
        case .handling, .closed:
            return []
        }
    }

    /// Deletes a half-written body file; called on every close.
    mutating func abandon() {
        if case .body(let progress) = phase { progress.sink.discard() }
    }

    // MARK: Processing

    private mutating func process(now: Instant) -> [Action] {
        var actions: [Action] = []
        while true {
            switch phase {
            case .proxyHeader:
                guard !inbound.isEmpty else { return actions }
                let result: ProxyHeader.Result
                do throws(HTTPParseError) {
                    result = try ProxyHeader.parse(inbound)
                } catch {
                    return actions + fail(.malformedRequest(error))
                }
                guard case .complete(let client, let consumed) = result else { return actions }
                inbound.removeFirst(consumed)
                phase = .head(firstByte: nil)
                if let client {
                    clientAddress = client
                    switch admitClient?(client) ?? .admit {
                    case .admit, .admitEvicting: break
                    case .refuse: return actions + fail(.tooManyConnectionsFromClient)
                    case .drop:
                        abandon()
                        phase = .closed
                        return actions + [.refused(.dropped), .closeNow]
                    }
                }
            case .head(let firstByte):
                guard !inbound.isEmpty else { return actions }
                // The first head is timed from the accept (a PROXY header and, with TLS, the
                // handshake included); later ones from their first byte.
                if firstByte == nil { phase = .head(firstByte: awaitingFirstRequest ? idleSince : now) }
                // Re-parse only when a line may have ended (or the limit is reached):
                // a client trickling bytes costs one scan per line, not per byte.
                let fresh = inbound[scanned...]
                guard fresh.contains(0x0A) || fresh.contains(0x0D) || inbound.count >= configuration.maxHeaderBytes else {
                    scanned = inbound.count
                    return actions
                }
                let result: RequestHeadParser.Result
                do throws(HTTPParseError) {
                    result = try inbound.withBytes { (buffer) throws(HTTPParseError) in try parser.parse(buffer) }
                } catch {
                    return actions + fail(.malformedRequest(error))
                }
                guard case .complete(let head, let consumed) = result else {
                    scanned = inbound.count
                    return actions
                }
                inbound.removeFirst(consumed)
                scanned = 0
                actions += startRequest(head, now: now)
            case .body(var progress):
                let consumed: Int
                var done = false
                do throws(HTTPServerError) {
                    (consumed, done) = try feedBody(&progress)
                } catch {
                    phase = .body(progress)
                    return actions + fail(error)
                }
                inbound.removeFirst(consumed)
                guard done else {
                    phase = .body(progress)
                    return actions
                }
                phase = .handling(progress.head, keepAlive: progress.keepAlive)
                actions += [.deliver(progress.head, progress.sink.finish()), .pauseReading]
            case .handling, .closed:
                return actions
            }
        }
    }

    private mutating func startRequest(_ head: HTTPRequestHead, now: Instant) -> [Action] {
        awaitingFirstRequest = false
        let keepAlive = head.keepAlive && !shuttingDown
        let framing: BodyFraming
        do throws(HTTPParseError) {
            framing = try BodyFraming(head: head)
        } catch {
            return fail(.malformedRequest(error))
        }
        if case .length(let length) = framing, length > configuration.maxBodyBytes {
            return fail(.malformedRequest(.bodyTooLarge))
        }
        var expectContinue = false
        if let expect = head.headers["expect"], head.version == .http1_1 {
            guard expect.lowercasedASCII() == "100-continue" else { return fail(.expectationFailed) }
            expectContinue = true
        }
        let hasBody = framing != .none && framing != .length(0)
        var head = head
        switch headCheck?(head, clientAddress) {
        case .admit(let admission): head.admission = admission
        case nil: break
        case .refuse(let rejection):
            // An unread body would be taken for the next request: close instead.
            let close = hasBody || !keepAlive || shuttingDown
            if close {
                phase = .closed
                return [.respond(rejection, version: head.version, close: true, omitBody: head.method == "HEAD"), .close]
            }
            phase = .handling(head, keepAlive: true)
            return responseReadyInline(rejection, now: now)
        }
        guard hasBody else {
            phase = .handling(head, keepAlive: keepAlive)
            return [.deliver(head, .empty), .pauseReading]
        }
        let remaining: Int? = if case .length(let length) = framing { length } else { nil }
        let sink: BodySink
        do throws(SystemError) {
            sink = try BodySink(
                memoryLimit: configuration.bodyMemoryLimit, directory: configuration.bodyDirectory,
                expectedLength: remaining)
        } catch {
            return fail(.bodyStorageFailed(error))
        }
        phase = .body(
            BodyProgress(
                head: head, keepAlive: keepAlive, remaining: remaining,
                decoder: ChunkedDecoder(maxTrailerBytes: configuration.maxHeaderBytes, maxPayloadBytes: configuration.maxBodyBytes),
                sink: sink, started: now, windowStart: now, windowBytes: inbound.count))
        // A client that already sent body bytes is not waiting for the 100.
        return expectContinue && inbound.isEmpty ? [.sendContinue] : []
    }

    /// A head-check rejection of a body-less request keeps the connection: the
    /// response is queued as if a handler had produced it.
    private mutating func responseReadyInline(_ response: HTTPResponse, now: Instant) -> [Action] {
        guard case .handling(let head, _) = phase else { return [] }
        phase = .head(firstByte: nil)
        idleSince = now
        scanned = 0
        return [.respond(response, version: head.version, close: false, omitBody: head.method == "HEAD")]
    }

    /// Moves body bytes from `inbound` into the sink; returns how many were
    /// consumed and whether the body is complete.
    private func feedBody(_ progress: inout BodyProgress) throws(HTTPServerError) -> (Int, Bool) {
        try inbound.withBytes { (buffer) throws(HTTPServerError) -> (Int, Bool) in
            if let remaining = progress.remaining {
                let take = min(remaining, buffer.count)
                do throws(SystemError) {
                    try progress.sink.append(UnsafeRawBufferPointer(rebasing: buffer[0..<take]))
                } catch {
                    throw .bodyStorageFailed(error)
                }
                progress.remaining = remaining - take
                return (take, remaining == take)
            }
            var offset = 0
            while true {
                let step: ChunkedDecoder.Step
                do throws(HTTPParseError) {
                    step = try progress.decoder.decode(buffer, offset: &offset)
                } catch {
                    throw .malformedRequest(error)
                }
                switch step {
                case .data(let range):
                    do throws(SystemError) {
                        try progress.sink.append(UnsafeRawBufferPointer(rebasing: buffer[range]))
                    } catch {
                        throw .bodyStorageFailed(error)
                    }
                case .needMoreInput: return (offset, false)
                case .end: return (offset, true)
                }
            }
        }
    }

    private mutating func fail(_ error: HTTPServerError) -> [Action] {
        abandon()
        phase = .closed
        return [.fail(error), .close]
    }
}
