import Testing

@testable import HTTP

private let get = "GET /v1/studies?limit=5 HTTP/1.1\r\nHost: a\r\n\r\n"

@Test(arguments: [
    (get, HeadOutcome.complete(method: "GET", target: "/v1/studies?limit=5", path: "/v1/studies", headers: ["Host=a"], consumed: 45)),
    ("GET / HTTP/1.0\r\n\r\n", .complete(method: "GET", target: "/", path: "/", headers: [], consumed: 18)),
    ("\r\nGET / HTTP/1.0\r\n\r\n", .complete(method: "GET", target: "/", path: "/", headers: [], consumed: 20)),
    ("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", .complete(method: "OPTIONS", target: "*", path: "*", headers: ["Host=a"], consumed: 31)),
    ("POST /a%20b HTTP/1.1\r\nHost: a\r\nX-Y:  v w \t\r\nX-Empty:\r\n\r\nbody",
     .complete(method: "POST", target: "/a%20b", path: "/a b", headers: ["Host=a", "X-Y=v w", "X-Empty="], consumed: 56)),
    ("GET / HTTP/1.1\r\nHost: a\r\n", .incomplete),
    ("GET / HTTP/1.1\r\nHost: a\r\n\r", .incomplete),
    ("GET / HTTP/1.1\r\nHost: a\r\n\rX", .failed(.bareCR)),
    ("GET / HTTP/1.1\nHost: a\r\n\r\n", .failed(.bareLF)),
    ("GET / HTTP/1.1\r\nHost: a\n\r\n", .failed(.bareLF)),
    ("GET / HTTP/1.1\r\nHost: a\r\n X: b\r\n\r\n", .failed(.obsoleteLineFolding)),
    ("GET / HTTP/1.1\r\n Host: a\r\n\r\n", .failed(.obsoleteLineFolding)),
    ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", .failed(.whitespaceBeforeColon)),
    ("GET / HTTP/1.1\r\nHo(st: a\r\n\r\n", .failed(.invalidHeaderName)),
    ("GET / HTTP/1.1\r\n: a\r\n\r\n", .failed(.invalidHeaderName)),
    ("GET / HTTP/1.1\r\nNoColon\r\n\r\n", .failed(.invalidHeaderName)),
    ("GET / HTTP/1.1\r\nHost: a\u{01}b\r\n\r\n", .failed(.invalidHeaderValue)),
    ("GET / HTTP/1.1\r\nHost: a\u{7F}\r\n\r\n", .failed(.invalidHeaderValue)),
    ("GE(T / HTTP/1.1\r\nHost: a\r\n\r\n", .failed(.invalidMethod)),
    (" / HTTP/1.1\r\nHost: a\r\n\r\n", .failed(.badRequestLine)),
    ("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", .failed(.badRequestLine)),
    ("GET /\r\n\r\n", .failed(.badRequestLine)),
    ("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", .failed(.badRequestLine)),
    ("GET / HTTX/1.1\r\nHost: a\r\n\r\n", .failed(.badRequestLine)),
    ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", .failed(.unsupportedVersion)),
    ("GET / HTTP/0.9\r\n\r\n", .failed(.unsupportedVersion)),
    ("GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", .failed(.invalidTarget)),
    ("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", .failed(.invalidTarget)),
    ("GET * HTTP/1.1\r\nHost: a\r\n\r\n", .failed(.invalidTarget)),
    ("GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", .failed(.invalidTarget)),
    ("GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", .failed(.invalidPercentEncoding)),
    ("GET /%4 HTTP/1.1\r\nHost: a\r\n\r\n", .failed(.invalidPercentEncoding)),
    ("GET /%ff HTTP/1.1\r\nHost: a\r\n\r\n", .failed(.invalidPercentEncoding)),
    ("GET /a%00 HTTP/1.1\r\nHost: a\r\n\r\n", .failed(.nulInPath)),
    ("GET / HTTP/1.1\r\n\r\n", .failed(.missingHost)),
    ("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", .failed(.multipleHost)),
])
func headParsesTheSameWholeAndByteByByte(input: String, expected: HeadOutcome) {
    let whole = parseHead(bytes(input))
    #expect(whole == expected, "\(input.debugDescription)")
    if expected != .incomplete {
        #expect(parseHeadByteByByte(bytes(input)) == expected, "\(input.debugDescription)")
    }
}

@Test func queryItemsAreDecoded() throws {
    let head = try HTTPRequestHead(method: "GET", target: "/s?a=1&b=x+y%2Bz&c&=e&a=2")
    #expect(head.path == "/s")
    #expect(head.queryItems.map { "\($0.name)=\($0.value)" } == ["a=1", "b=x y+z", "c=", "=e", "a=2"])
    #expect(head.query("a") == "1")
    #expect(head.query("missing") == nil)
}

@Test func headerTooLargeWhenNoEndWithinTheLimit() {
    let parser = RequestHeadParser(maxHeaderBytes: 64, maxHeaderCount: 100)
    let long = bytes("GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "v", count: 100) + "\r\n\r\n")
    #expect(parseHead(Array(long[..<63]), parser: parser) == .incomplete)
    #expect(parseHead(long, parser: parser) == .failed(.headerTooLarge))
    #expect(parseHeadByteByByte(long, parser: parser) == .failed(.headerTooLarge))
}

@Test func headEndingExactlyAtTheLimitIsAccepted() {
    let head = bytes("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    let parser = RequestHeadParser(maxHeaderBytes: head.count, maxHeaderCount: 100)
    guard case .complete = parseHead(head + bytes("GET"), parser: parser) else {
        Issue.record("a head of exactly maxHeaderBytes must parse")
        return
    }
    let smaller = RequestHeadParser(maxHeaderBytes: head.count - 1, maxHeaderCount: 100)
    #expect(parseHead(head, parser: smaller) == .failed(.headerTooLarge))
}

@Test func tooManyHeaders() {
    let parser = RequestHeadParser(maxHeaderBytes: 16 * 1024, maxHeaderCount: 3)
    let three = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n"
    let four = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"
    #expect(parseHead(bytes(three), parser: parser) != .failed(.tooManyHeaders))
    #expect(parseHead(bytes(four), parser: parser) == .failed(.tooManyHeaders))
    #expect(parseHeadByteByByte(bytes(four), parser: parser) == .failed(.tooManyHeaders))
}

@Test func pipelinedRequestsAreConsumedOneAtATime() {
    let two = bytes(get + get)
    guard case .complete(_, _, _, _, let consumed) = parseHead(two) else {
        Issue.record("first request should parse")
        return
    }
    #expect(consumed == get.utf8.count)
    #expect(parseHead(Array(two[consumed...])) == parseHead(bytes(get)))
}

@Test(arguments: [
    ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", true),
    ("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false),
    ("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, Close\r\n\r\n", false),
    ("GET / HTTP/1.0\r\n\r\n", false),
    ("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
])
func keepAlive(input: String, expected: Bool) throws {
    let parsed = try withExactBytes(bytes(input)) { try RequestHeadParser().parse($0) }
    guard case .complete(let head, _) = parsed else {
        Issue.record("did not parse")
        return
    }
    #expect(head.keepAlive == expected, "\(input.debugDescription)")
}
