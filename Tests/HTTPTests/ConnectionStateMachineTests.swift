import Synchronization
import Testing

@testable import HTTP

/// The connection's decisions driven by a fake clock: no sockets, no sleeping.
private struct Harness {
    var machine: ConnectionStateMachine
    let start = ContinuousClock.now
    var bodies: [HTTPBody] = []

    init(
        _ configure: (inout HTTPServerConfiguration) -> Void = { _ in },
        headCheck: HeadCheck? = nil,
        admitClient: (@Sendable (String) -> ConnectionAdmission<UInt64>.Decision)? = nil
    ) {
        var configuration = HTTPServerConfiguration(bodyDirectory: "/tmp")
        configure(&configuration)
        machine = ConnectionStateMachine(
            configuration: configuration, now: start, clientAddress: "10.0.0.9", headCheck: headCheck, admitClient: admitClient)
    }

    func at(_ seconds: Double) -> ContinuousClock.Instant { start + .milliseconds(Int(seconds * 1000)) }

    mutating func send(_ text: String, at seconds: Double = 0) -> [String] {
        send(bytes(text), at: seconds)
    }

    mutating func send(_ data: [UInt8], at seconds: Double = 0) -> [String] {
        let now = at(seconds)
        let actions = withExactBytes(data) { machine.received($0, now: now) }
        return describe(actions)
    }

    mutating func respond(_ status: Int, at seconds: Double = 0, headers: HTTPHeaders = .init()) -> [String] {
        describe(machine.responseReady(HTTPResponse(status: status, headers: headers), now: at(seconds)))
    }

    mutating func tick(_ seconds: Double) -> [String] { describe(machine.tick(now: at(seconds))) }

    mutating func describe(_ actions: [ConnectionStateMachine.Action]) -> [String] {
        actions.map { action in
            switch action {
            case .sendContinue: return "100"
            case .deliver(let head, let body):
                bodies.append(body)
                return "deliver \(head.method) \(head.path) \(body.count)"
            case .respond(let response, _, let close, let omitBody):
                return "respond \(response.status)\(close ? " close" : "")\(omitBody ? " nobody" : "")"
            case .fail(let error): return "fail \(error.status) \(error.type)"
            case .close: return "close"
            case .closeNow: return "closeNow"
            case .pauseReading: return "pause"
            case .resumeReading: return "resume"
            case .refused(let reason): return "refused \(reason.rawValue)"
            }
        }
    }
}

private let getA = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
private let getB = "GET /b HTTP/1.1\r\nHost: h\r\n\r\n"

@Test func keepAliveServesTwoRequests() {
    var h = Harness()
    #expect(h.send(getA) == ["deliver GET /a 0", "pause"])
    #expect(h.respond(200) == ["respond 200", "resume"])
    #expect(h.send(getB) == ["deliver GET /b 0", "pause"])
    #expect(h.respond(204) == ["respond 204", "resume"])
}

@Test func pipelinedRequestsAreAnsweredInOrder() {
    var h = Harness()
    #expect(h.send(getA + getB) == ["deliver GET /a 0", "pause"])
    #expect(h.respond(200) == ["respond 200", "resume", "deliver GET /b 0", "pause"])
    #expect(h.respond(200) == ["respond 200", "resume"])
}

@Test func http10ClosesUnlessKeepAliveAsked() {
    var h = Harness()
    #expect(h.send("GET /a HTTP/1.0\r\n\r\n") == ["deliver GET /a 0", "pause"])
    #expect(h.respond(200) == ["respond 200 close", "close"])
    var k = Harness()
    #expect(k.send("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") == ["deliver GET /a 0", "pause"])
    #expect(k.respond(200) == ["respond 200", "resume"])
}

@Test func handlerAskingToCloseCloses() {
    var h = Harness()
    _ = h.send(getA)
    #expect(h.respond(200, headers: HTTPHeaders([("Connection", "close")])) == ["respond 200 close", "close"])
}

@Test func headResponseOmitsBody() {
    var h = Harness()
    _ = h.send("HEAD /a HTTP/1.1\r\nHost: h\r\n\r\n")
    #expect(h.respond(200) == ["respond 200 nobody", "resume"])
}

@Test func contentLengthBodyInPieces() {
    var h = Harness()
    #expect(h.send("POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n01234") == [])
    #expect(h.send("56789" + getB) == ["deliver POST /p 10", "pause"])
    #expect(h.bodies.last == .bytes(bytes("0123456789")))
    #expect(h.respond(201) == ["respond 201", "resume", "deliver GET /b 0", "pause"])
}

@Test func chunkedBodyByteByByte() {
    var h = Harness()
    var actions: [String] = []
    for byte in bytes("POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n") {
        actions += h.send([byte])
    }
    #expect(actions == ["deliver POST /p 5", "pause"])
    #expect(h.bodies.last == .bytes(bytes("abcde")))
}

@Test func bodyPastMemoryLimitGoesToAFile() throws {
    var h = Harness { $0.bodyMemoryLimit = 4 }
    #expect(h.send("POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n") == ["deliver POST /p 6", "pause"])
    guard case .file(let path, let count) = h.bodies.last else {
        Issue.record("expected a file body, got \(String(describing: h.bodies.last))")
        return
    }
    defer { unlinkFile(path) }
    #expect(count == 6)
    #expect(try h.bodies.last?.withUnsafeBytes { Array($0) } == bytes("abcdef"))
}

@Test func abandonedBodyFileIsDeleted() {
    var h = Harness { $0.bodyMemoryLimit = 4 }
    _ = h.send("POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n0123456789")
    #expect(h.describe(h.machine.peerClosedInput(now: h.at(1))) == ["closeNow"])
    // No stray body-* files stay behind in the directory for this connection: checked by the server test.
}

@Test func expectContinueIsAnsweredBeforeTheBody() {
    var h = Harness()
    #expect(h.send("PUT /p HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n") == ["100"])
    #expect(h.send("abc") == ["deliver PUT /p 3", "pause"])
}

@Test func expectContinueWithTheBodyAlreadySentGetsNo100() {
    var h = Harness()
    #expect(h.send("PUT /p HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc") == ["deliver PUT /p 3", "pause"])
}

@Test func unknownExpectationIs417() {
    var h = Harness()
    #expect(h.send("PUT /p HTTP/1.1\r\nHost: h\r\nExpect: magic\r\nContent-Length: 3\r\n\r\n") == ["fail 417 expectation-failed", "close"])
}

@Test func headCheckRejectionWithABodyClosesWithout100() {
    var h = Harness(headCheck: { _, _ in .refuse(HTTPResponse(status: 401)) })
    #expect(h.send("PUT /p HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n") == ["respond 401 close", "close"])
}

@Test func headCheckRejectionWithoutABodyKeepsTheConnection() {
    var h = Harness(headCheck: { head, _ in head.path == "/a" ? .refuse(HTTPResponse(status: 401)) : .admit(nil) })
    #expect(h.send(getA + getB) == ["respond 401", "deliver GET /b 0", "pause"])
}

@Test func contentLengthOverTheLimitIs413() {
    var h = Harness { $0.maxBodyBytes = 10 }
    #expect(h.send("POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n") == ["fail 413 body-too-large", "close"])
}

@Test func chunkedOverTheLimitIs413() {
    var h = Harness { $0.maxBodyBytes = 10 }
    #expect(h.send("POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n") == [])
    #expect(h.send("6\r\n") == ["fail 413 body-too-large", "close"])
}

@Test func headerTooLargeIs431() {
    var h = Harness { $0.maxHeaderBytes = 64 }
    #expect(h.send("GET /a HTTP/1.1\r\nHost: h\r\nX: " + String(repeating: "x", count: 60)) == ["fail 431 header-too-large", "close"])
}

@Test func smugglingAttemptIs400AndCloses() {
    var h = Harness()
    #expect(h.send("POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        == ["fail 400 ambiguous-framing", "close"])
    #expect(h.send(getA) == [])
}

@Test func laterHeadsAreTimedFromTheirFirstByte() {
    var h = Harness { $0.headerReadTimeout = .seconds(10) }
    _ = h.send(getA)
    _ = h.respond(200, at: 1)
    #expect(h.tick(30) == [])  // an idle keep-alive: the idle timeout (60 s) applies
    #expect(h.send("GET /a HTTP/1.1\r\n", at: 30) == [])
    #expect(h.tick(39.9) == [])
    #expect(h.tick(40) == ["fail 408 request-timeout", "close"])
}

@Test func theFirstHeadIsTimedFromTheAcceptNotPerByte() {
    var h = Harness { $0.headerReadTimeout = .seconds(10) }
    for second in 1...9 { #expect(h.send("G", at: Double(second)) == []) }  // a byte a second never resets it
    #expect(h.tick(9.9) == [])
    #expect(h.tick(10) == ["fail 408 request-timeout", "close"])
}

@Test func aConnectionThatSendsNothingIsClosedAtTheHeadDeadline() {
    var h = Harness {
        $0.headerReadTimeout = .seconds(10)
        $0.idleTimeout = .seconds(60)
    }
    #expect(h.machine.deadline == h.at(10))
    #expect(h.tick(10) == ["refused head_timeout", "closeNow"])
}

@Test func waitingForHeadSinceIsNilWhileARequestIsInProgress() {
    var h = Harness()
    #expect(h.machine.waitingForHeadSince == h.at(0))
    _ = h.send(getA, at: 1)
    #expect(h.machine.waitingForHeadSince == nil)
    _ = h.respond(200, at: 2)
    #expect(h.machine.waitingForHeadSince == h.at(2))
}

@Test func aProxyHeaderNamesTheClientTheHeadCheckSees() {
    let seen = Mutex<[String]>([])
    var h = Harness({ $0.proxyProtocol = true }, headCheck: { _, address in
        seen.withLock { $0.append(address) }
        return .admit(nil)
    }, admitClient: { _ in .admit })
    #expect(h.send("PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\n" + getA) == ["deliver GET /a 0", "pause"])
    #expect(seen.withLock { $0 } == ["192.0.2.7"])
    #expect(h.machine.clientAddress == "192.0.2.7")
}

@Test func withProxyProtocolOnARequestWithoutTheHeaderIs400() {
    var h = Harness { $0.proxyProtocol = true }
    #expect(h.send(getA) == ["fail 400 bad-proxy-header", "close"])
}

@Test func aProxiedClientOverItsCapIsRefusedOrDropped() {
    var refused = Harness({ $0.proxyProtocol = true }, admitClient: { _ in .refuse(.clientFull) })
    #expect(refused.send("PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\n" + getA)
        == ["fail 429 too-many-connections-from-client", "close"])
    var dropped = Harness({ $0.proxyProtocol = true }, admitClient: { _ in .drop(.clientFull) })
    #expect(dropped.send("PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\n") == ["refused dropped", "closeNow"])
}

@Test func aProxyLocalHeaderKeepsTheSocketsPeer() {
    var h = Harness { $0.proxyProtocol = true }
    #expect(h.send("PROXY UNKNOWN\r\n" + getA) == ["deliver GET /a 0", "pause"])
    #expect(h.machine.clientAddress == "10.0.0.9")
}

@Test func idleKeepAliveClosesSilently() {
    var h = Harness { $0.idleTimeout = .seconds(60) }
    _ = h.send(getA)
    _ = h.respond(200, at: 1)
    #expect(h.tick(60) == [])
    #expect(h.tick(61) == ["closeNow"])
}

@Test func slowBodyIs408() {
    var h = Harness {
        $0.minBodyBytesPerSecond = 100
        $0.bodyRateWindow = .seconds(5)
    }
    _ = h.send("POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n")
    #expect(h.send([UInt8](repeating: 0x61, count: 600), at: 1) == [])
    #expect(h.tick(5) == [])  // 600 bytes in the first 5 s window: 120 B/s
    #expect(h.send([UInt8](repeating: 0x61, count: 100), at: 7) == [])
    #expect(h.tick(10) == ["fail 408 request-timeout", "close"])  // 100 bytes in 5 s
}

@Test func shutdownClosesIdleAndLetsInFlightFinish() {
    var idle = Harness()
    #expect(idle.describe(idle.machine.shutdown(now: idle.at(0))) == ["closeNow"])
    var busy = Harness()
    _ = busy.send(getA + getB)
    #expect(busy.describe(busy.machine.shutdown(now: busy.at(0))) == [])
    #expect(busy.respond(200) == ["respond 200 close", "close"])
}

@Test func clientHalfCloseStillGetsTheResponse() {
    var h = Harness()
    _ = h.send(getA)
    #expect(h.describe(h.machine.peerClosedInput(now: h.at(0))) == [])
    #expect(h.respond(200) == ["respond 200 close", "close"])
}
