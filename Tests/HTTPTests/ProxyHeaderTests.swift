import Testing

@testable import HTTP

private func parse(_ bytes: [UInt8]) throws(HTTPParseError) -> ProxyHeader.Result { try ProxyHeader.parse(bytes) }
private func parse(_ text: String) throws(HTTPParseError) -> ProxyHeader.Result { try parse(Array(text.utf8)) }

@Test func versionOneNamesTheSourceAddress() throws {
    let line = "PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\n"
    #expect(try parse(line + "GET / HTTP/1.1\r\n") == .complete(client: "192.0.2.7", consumed: line.utf8.count))
    #expect(try parse("PROXY TCP6 2001:db8::7 2001:db8::1 40000 443\r\n") == .complete(client: "2001:db8::7", consumed: 46))
    #expect(try parse("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n") == .complete(client: nil, consumed: 35))
}

@Test func versionOneInPiecesWaits() throws {
    #expect(try parse("PRO") == .needMoreInput)
    #expect(try parse("PROXY TCP4 192.0.2.7 198.5") == .needMoreInput)
}

@Test func malformedVersionOneIsRefused() {
    for bad in [
        "GET / HTTP/1.1\r\n", "PROXY TCP4 192.0.2.7 198.51.100.1 40000\r\n", "PROXY TCP4 192.0.2.700 198.51.100.1 1 2\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 1 70000\r\n", "PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 1 2\n", "PROXY " + String(repeating: "1", count: 120),
    ] {
        #expect(throws: HTTPParseError.malformedProxyHeader) { try parse(bad) }
    }
}

private func v2(command: UInt8, family: UInt8, payload: [UInt8]) -> [UInt8] {
    ProxyHeader.v2Signature + [0x20 | command, family, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)] + payload
}

@Test func versionTwoNamesTheSourceAddress() throws {
    let v4 = v2(command: 1, family: 0x11, payload: [192, 0, 2, 7, 198, 51, 100, 1, 0x9C, 0x40, 0x01, 0xBB])
    #expect(try parse(v4 + Array("GET".utf8)) == .complete(client: "192.0.2.7", consumed: 28))
    var address = [UInt8](repeating: 0, count: 36)
    address[0] = 0x20; address[1] = 0x01; address[2] = 0x0d; address[3] = 0xb8; address[15] = 7
    #expect(try parse(v2(command: 1, family: 0x21, payload: address)) == .complete(client: "2001:db8:0:0:0:0:0:7", consumed: 52))
    // LOCAL: a health check from the balancer itself, with TLVs the parser skips.
    #expect(try parse(v2(command: 0, family: 0x11, payload: [UInt8](repeating: 1, count: 20))) == .complete(client: nil, consumed: 36))
    #expect(try parse(Array(v4.prefix(20))) == .needMoreInput)
    #expect(try parse(Array(v4.prefix(5))) == .needMoreInput)
}

@Test func malformedVersionTwoIsRefused() {
    var badSignature = v2(command: 1, family: 0x11, payload: [UInt8](repeating: 0, count: 12))
    badSignature[6] = 0
    var badVersion = v2(command: 1, family: 0x11, payload: [UInt8](repeating: 0, count: 12))
    badVersion[12] = 0x31
    for bad in [
        badSignature, badVersion, v2(command: 1, family: 0x11, payload: [1, 2, 3]), v2(command: 1, family: 0x31, payload: []),
        v2(command: 1, family: 0x11, payload: [UInt8](repeating: 0, count: 600)),
    ] {
        #expect(throws: HTTPParseError.malformedProxyHeader) { try parse(bad) }
    }
}
