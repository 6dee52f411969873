import Testing

@testable import HTTP

@Test func headersKeepOrderAndIgnoreCase() {
    var headers = HTTPHeaders([("Content-Type", "a"), ("X-A", "1"), ("x-a", "2")])
    #expect(headers["content-type"] == "a")
    #expect(headers["X-a"] == "1")
    #expect(headers.values("X-A") == ["1", "2"])
    #expect(headers["missing"] == nil)
    headers.add("X-B", "3")
    headers.replaceOrAdd("X-A", "9")
    #expect(headers.map { "\($0.name)=\($0.value)" } == ["Content-Type=a", "X-A=9", "X-B=3"])
    headers.replaceOrAdd("X-C", "4")
    #expect(headers["x-c"] == "4")
    headers.remove("CONTENT-TYPE")
    #expect(headers.map(\.name) == ["X-A", "X-B", "X-C"])
}

@Test func responseSerialisationOwnsFramingHeaders() {
    let response = HTTPResponse(
        status: 200,
        headers: HTTPHeaders([("Content-Length", "999"), ("Connection", "keep-alive"), ("X-Bad", "a\r\nInjected: 1"), ("X", "y")]),
        body: bytes("hello"))
    let text = String(decoding: serializeResponse(response, version: .http1_1, close: true, omitBody: false, date: "D"), as: UTF8.self)
    #expect(text == "HTTP/1.1 200 OK\r\nX: y\r\nDate: D\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
    let head = String(decoding: serializeResponse(response, version: .http1_0, close: false, omitBody: true, date: "D"), as: UTF8.self)
    #expect(head == "HTTP/1.1 200 OK\r\nX: y\r\nDate: D\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n")
    let noContent = String(decoding: serializeResponse(HTTPResponse(status: 204, body: bytes("x")), version: .http1_1, close: false, omitBody: false, date: "D"), as: UTF8.self)
    #expect(noContent == "HTTP/1.1 204 No Content\r\nDate: D\r\n\r\n")
}

@Test func fileBodyIsMappedAndEmptyFileIsFine() throws {
    let path = "/tmp/http-body-test-\(UInt64.random(in: 0...UInt64.max))"
    let payload = (0..<5000).map { UInt8(truncatingIfNeeded: $0) }
    try writeFile(path, payload)
    defer { unlinkFile(path) }
    let sum = try HTTPBody.file(path: path, count: payload.count).withUnsafeBytes { Array($0) }
    #expect(sum == payload)
    try writeFile(path, [])
    #expect(try HTTPBody.file(path: path, count: 0).withUnsafeBytes { $0.count } == 0)
    #expect(try HTTPBody.empty.withUnsafeBytes { $0.count } == 0)
    #expect(throws: SystemError.self) { try HTTPBody.file(path: path + "-missing", count: 1).withUnsafeBytes { $0.count } }
}
