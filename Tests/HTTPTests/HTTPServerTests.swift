import Foundation
import Logging
import Testing

@testable import HTTP

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A blocking POSIX client: what a PACS script's HTTP library does, without one.
private final class Client: @unchecked Sendable {
    let fd: Int32
    private var buffer: [UInt8] = []

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SystemError(call: "socket", errno: errno) }
        // Generous: tests assert outcomes, never timing. In the whole suite other
        // targets' tests can hold the cooperative threads for tens of seconds, and
        // the server's handler Tasks wait for one.
        var timeout = timeval(tv_sec: 300, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard status == 0 else { throw SystemError(call: "connect", errno: errno) }
    }

    deinit { close(fd) }

    func send(_ text: String) { send(Array(text.utf8)) }

    func send(_ data: [UInt8]) {
        var offset = 0
        while offset < data.count {
            let written = data.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, data.count - offset, Int32(MSG_NOSIGNAL)) }
            guard written > 0 else { return }
            offset += written
        }
    }

    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    /// Reads more bytes; false on EOF, error or timeout.
    private func fill() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return false }
        buffer += chunk[0..<count]
        return true
    }

    struct Response {
        var status: Int
        var headers: HTTPHeaders
        var body: [UInt8]
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    /// Blocking reads run on a Dispatch thread: blocking the few cooperative
    /// threads would starve the server's handler Tasks.
    func readResponse(headRequest: Bool = false) async -> Response? {
        await offPool { self.readResponseBlocking(headRequest: headRequest) }
    }

    func readsEOF() async -> Bool {
        await offPool { self.buffer.isEmpty && !self.fill() && self.buffer.isEmpty }
    }

    private func readResponseBlocking(headRequest: Bool) -> Response? {
        var headEnd: Int?
        while headEnd == nil {
            headEnd = buffer.indices.dropLast(3).first { buffer[$0] == 13 && buffer[$0 + 1] == 10 && buffer[$0 + 2] == 13 && buffer[$0 + 3] == 10 }
            if headEnd == nil && !fill() { return nil }
        }
        let lines = String(decoding: buffer[..<headEnd!], as: UTF8.self).components(separatedBy: "\r\n")
        buffer.removeFirst(headEnd! + 4)
        let statusLine = lines[0].split(separator: " ")
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else { return nil }
        var headers = HTTPHeaders()
        for line in lines.dropFirst() {
            let parts = line.split(separator: ":", maxSplits: 1)
            headers.add(String(parts[0]), String(parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespaces) : ""))
        }
        let length = headRequest || status == 100 ? 0 : Int(headers["content-length"] ?? "0") ?? 0
        while buffer.count < length {
            if !fill() { return nil }
        }
        let body = Array(buffer[..<length])
        buffer.removeFirst(length)
        return Response(status: status, headers: headers, body: body)
    }

}

private func offPool<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(returning: work()) }
    }
}

/// Thread-safe cell for what a handler saw.
private final class Box<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    var value: Value {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}

private func withServer(
    _ configure: (inout HTTPServerConfiguration) -> Void = { _ in },
    headCheck: HeadCheck? = nil,
    onRefusal: @escaping @Sendable (ConnectionRefusal) -> Void = { _ in },
    handler: @escaping HTTPHandler = { request in
        HTTPResponse(status: 200, body: Array("\(request.method) \(request.path) \(request.body.count)".utf8))
    },
    _ body: (Int, HTTPServer, String) async throws -> Void
) async throws {
    let directory = NSTemporaryDirectory() + "http-test-\(UInt64.random(in: 0...UInt64.max))"
    var configuration = HTTPServerConfiguration(host: "127.0.0.1", port: 0, bodyDirectory: directory)
    configure(&configuration)
    let server = HTTPServer(
        configuration: configuration, logger: Logger(label: "http-test"), headCheck: headCheck,
        errorResponse: { error in HTTPResponse(status: error.status, body: Array(error.type.utf8)) },
        onRefusal: onRefusal, handler: handler)
    let port = try server.start()
    do {
        try await body(port, server, directory)
    } catch {
        await server.shutdown(gracePeriod: .seconds(1))
        throw error
    }
    await server.shutdown(gracePeriod: .seconds(1))
    try? FileManager.default.removeItem(atPath: directory)
}

@Suite(.serialized) struct HTTPServerTests {

@Test func keepAliveTwoRequestsOnOneConnection() async throws {
    try await withServer { port, server, _ in
        let client = try Client(port: port)
        client.send("GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
        let first = try await #require(client.readResponse())
        #expect(first.status == 200)
        #expect(first.text == "GET /one 0")
        #expect(first.headers["date"]?.hasSuffix(" GMT") == true)
        #expect(first.headers["connection"] == nil)
        client.send("GET /two?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        let second = try await #require(client.readResponse())
        #expect(second.text == "GET /two 0")
        #expect(server.connectionCount == 1)
    }
}

@Test func pipelinedRequestsAnsweredInOrder() async throws {
    try await withServer(handler: { request in
        // The first handler is the slow one: order must still hold.
        if request.path == "/1" { try? await Task.sleep(for: .milliseconds(100)) }
        return HTTPResponse(status: 200, body: Array(request.path.utf8))
    }) { port, _, _ in
        let client = try Client(port: port)
        client.send("GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nGET /3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(await client.readResponse()?.text == "/1")
        #expect(await client.readResponse()?.text == "/2")
        let last = try await #require(client.readResponse())
        #expect(last.text == "/3")
        #expect(last.headers["connection"] == "close")
        #expect(await client.readsEOF())
    }
}

@Test func chunkedBodyIsDecoded() async throws {
    try await withServer(handler: { request in
        HTTPResponse(status: 200, body: (try? request.body.withUnsafeBytes { Array($0) }) ?? [])
    }) { port, _, _ in
        let client = try Client(port: port)
        client.send("POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        client.send("6;ext=1\r\n world\r\n0\r\nTrailer: t\r\n\r\n")
        #expect(await client.readResponse()?.text == "hello world")
    }
}

@Test func expectContinueHandshake() async throws {
    try await withServer { port, _, _ in
        let client = try Client(port: port)
        client.send("PUT /p HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        let interim = try await #require(client.readResponse())
        #expect(interim.status == 100)
        client.send("abcd")
        let final = try await #require(client.readResponse())
        #expect(final.status == 200)
        #expect(final.text == "PUT /p 4")
    }
}

@Test func expectContinueRejectedByHeadCheckGetsFinalResponseAndClose() async throws {
    try await withServer(headCheck: { _, _ in .refuse(HTTPResponse(status: 401, body: Array("no".utf8))) }) { port, _, _ in
        let client = try Client(port: port)
        client.send("PUT /p HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        let response = try await #require(client.readResponse())
        #expect(response.status == 401)
        #expect(response.headers["connection"] == "close")
        #expect(await client.readsEOF())
    }
}

@Test func whatTheHeadCheckAdmitsWithReachesTheHandler() async throws {
    try await withServer(
        headCheck: { head, _ in .admit(head.path == "/known" ? "caller-7" : nil) },
        handler: { request in HTTPResponse(status: 200, body: Array(((request.head.admission as? String) ?? "none").utf8)) }
    ) { port, _, _ in
        let client = try Client(port: port)
        client.send("POST /known HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhiGET /other HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(try await #require(client.readResponse()).text == "caller-7")
        #expect(try await #require(client.readResponse()).text == "none")
    }
}

@Test func largeBodyArrivesAsAFileWithExactBytesAndIsDeleted() async throws {
    let seen = Box<String?>(nil)
    let payload = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) }
    try await withServer({ $0.bodyMemoryLimit = 1024 }, handler: { request in
        guard case .file(let path, let count) = request.body else { return HTTPResponse(status: 500) }
        seen.value = path
        let same = (try? request.body.withUnsafeBytes { Array($0) == payload }) ?? false
        return HTTPResponse(status: same && count == payload.count ? 200 : 500)
    }) { port, _, directory in
        let client = try Client(port: port)
        client.send(Array("POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: \(payload.count)\r\n\r\n".utf8) + payload)
        #expect(await client.readResponse()?.status == 200)
        let path = try #require(seen.value)
        #expect(path.hasPrefix(directory + "/"))
        #expect(!fileExists(path))
        var info = stat()
        #expect(stat(directory, &info) == 0 && info.st_mode & 0o777 == 0o700)
    }
}

@Test func contentLengthOverTheLimitIs413() async throws {
    try await withServer({ $0.maxBodyBytes = 100 }) { port, _, _ in
        let client = try Client(port: port)
        client.send("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + String(repeating: "a", count: 1000))
        let response = try await #require(client.readResponse())
        #expect(response.status == 413)
        #expect(response.text == "body-too-large")
        #expect(response.headers["connection"] == "close")
    }
}

@Test func oversizedHeadIs431() async throws {
    try await withServer({ $0.maxHeaderBytes = 512 }) { port, _, _ in
        let client = try Client(port: port)
        client.send("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + String(repeating: "b", count: 2000) + "\r\n\r\n")
        let response = try await #require(client.readResponse())
        #expect(response.status == 431)
        #expect(response.text == "header-too-large")
    }
}

@Test func ambiguousFramingOverTheWireIs400AndCloses() async throws {
    try await withServer { port, _, _ in
        let client = try Client(port: port)
        client.send("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
        let response = try await #require(client.readResponse())
        #expect(response.status == 400)
        #expect(response.text == "ambiguous-framing")
        #expect(await client.readsEOF())
    }
}

@Test func headerReadTimeoutIs408() async throws {
    try await withServer({ $0.headerReadTimeout = .milliseconds(300) }) { port, _, _ in
        let client = try Client(port: port)
        client.send("GET / HTTP/1.1\r\nHost: x\r\n")
        let response = try await #require(client.readResponse())
        #expect(response.status == 408)
        #expect(response.headers["connection"] == "close")
        #expect(await client.readsEOF())
    }
}

@Test func headRequestHasNoBody() async throws {
    try await withServer { port, _, _ in
        let client = try Client(port: port)
        client.send("HEAD /h HTTP/1.1\r\nHost: x\r\n\r\nGET /g HTTP/1.1\r\nHost: x\r\n\r\n")
        let head = try await #require(client.readResponse(headRequest: true))
        #expect(head.headers["content-length"] == "9")  // "HEAD /h 0", the body a GET would carry
        #expect(await client.readResponse()?.text == "GET /g 0")
    }
}

@Test func connectionsPastTheLimitGet503WhenNoneWaitsForAHead() async throws {
    try await withServer({ $0.maxConnections = 1 }) { port, _, _ in
        let first = try Client(port: port)
        first.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")  // busy: a body in progress
        try await Task.sleep(for: .milliseconds(100))
        let second = try Client(port: port)
        let response = try await #require(second.readResponse())
        #expect(response.status == 503)
        #expect(response.text == "too-many-connections")
    }
}

@Test func aFullServerClosesAnIdleKeepAliveToServeANewcomer() async throws {
    try await withServer({ $0.maxConnections = 1 }) { port, _, _ in
        let first = try Client(port: port)
        first.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(await first.readResponse()?.status == 200)
        let second = try Client(port: port)
        second.send("GET /n HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(await second.readResponse()?.status == 200)
        #expect(await first.readsEOF())
    }
}

@Test func aClientPastItsConnectionCapGets429() async throws {
    try await withServer({ $0.maxConnectionsPerClient = 1 }) { port, _, _ in
        let first = try Client(port: port)
        let second = try Client(port: port)
        let response = try await #require(second.readResponse())
        #expect(response.status == 429)
        #expect(response.text == "too-many-connections-from-client")
        first.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(await first.readResponse()?.status == 200)
    }
}

@Test func aTLSPortAnswersPlainHTTPWith400AndCountsAFailedHandshake() async throws {
    let pki = try TestCertificates()
    defer { pki.remove() }
    let (certificate, key) = try pki.issue("server", days: 3)
    let refusals = Box<[ConnectionRefusal]>([])
    try await withServer({ $0.tls = TLSConfiguration(certificatePath: certificate, keyPath: key) },
                         onRefusal: { reason in refusals.value.append(reason) }) { port, _, _ in
        let plain = try Client(port: port)
        plain.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        let response = try await #require(plain.readResponse())
        #expect(response.status == 400)
        #expect(response.text == "https-required")
        #expect(response.headers["connection"] == "close")
        #expect(await plain.readsEOF())
        // A record header that is neither TLS nor HTTP: closed without an answer.
        let garbage = try Client(port: port)
        garbage.send([0x16, 0x01, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5])
        #expect(await garbage.readsEOF())
        #expect(refusals.value == [.tlsHandshake, .tlsHandshake])
    }
}

@Test func shutdownLetsASlowHandlerFinish() async throws {
    let started = Box(false)
    try await withServer(handler: { _ in
        started.value = true
        try? await Task.sleep(for: .milliseconds(500))
        return HTTPResponse(status: 200, body: Array("done".utf8))
    }) { port, server, _ in
        let idle = try Client(port: port)
        let busy = try Client(port: port)
        busy.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        while !started.value { try await Task.sleep(for: .milliseconds(5)) }
        async let stopped: Void = server.shutdown(gracePeriod: .seconds(10))
        #expect(await idle.readsEOF())
        let response = try await #require(busy.readResponse())
        #expect(response.text == "done")
        #expect(response.headers["connection"] == "close")
        await stopped
        #expect(server.connectionCount == 0)
        #expect((try? Client(port: port)) == nil)
    }
}
}
