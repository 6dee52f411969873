import Testing

@testable import HTTP

/// Parses a head and derives its framing; one small test per smuggling case
/// below, in the manner of swift-nio's HTTPDecoderLengthTest.
private func framing(_ fields: String, version: String = "HTTP/1.1") -> Result<BodyFraming, HTTPParseError> {
    let text = "POST /v1/instances \(version)\r\nHost: a\r\n\(fields)\r\n"
    let parsed = try? withExactBytes(bytes(text)) { try RequestHeadParser().parse($0) }
    guard case .complete(let head, _) = parsed else { fatalError("test head did not parse: \(text.debugDescription)") }
    do throws(HTTPParseError) {
        return .success(try BodyFraming(head: head))
    } catch {
        return .failure(error)
    }
}

@Test func noBodyHeadersMeansNoBody() { #expect(framing("") == .success(.none)) }
@Test func contentLength() { #expect(framing("Content-Length: 42\r\n") == .success(.length(42))) }
@Test func contentLengthZero() { #expect(framing("Content-Length: 0\r\n") == .success(.length(0))) }
@Test func chunked() { #expect(framing("Transfer-Encoding: chunked\r\n") == .success(.chunked)) }
@Test func chunkedIsCaseInsensitive() { #expect(framing("Transfer-Encoding: Chunked\r\n") == .success(.chunked)) }

@Test func transferEncodingAndContentLength() {
    #expect(framing("Transfer-Encoding: chunked\r\nContent-Length: 4\r\n") == .failure(.transferEncodingWithContentLength))
}
@Test func contentLengthAndTransferEncoding() {
    #expect(framing("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n") == .failure(.transferEncodingWithContentLength))
}
@Test func contentLengthListOfEqualValues() {
    #expect(framing("Content-Length: 4, 4\r\n") == .failure(.multipleContentLength))
}
@Test func contentLengthListOfDifferentValues() {
    #expect(framing("Content-Length: 4, 5\r\n") == .failure(.multipleContentLength))
}
@Test func duplicateContentLengthSameValue() {
    #expect(framing("Content-Length: 4\r\nContent-Length: 4\r\n") == .failure(.multipleContentLength))
}
@Test func duplicateContentLengthDifferentValues() {
    #expect(framing("Content-Length: 4\r\ncontent-length: 5\r\n") == .failure(.multipleContentLength))
}
@Test func contentLengthPie() { #expect(framing("Content-Length: pie\r\n") == .failure(.invalidContentLength)) }
@Test func contentLengthNegative() { #expect(framing("Content-Length: -1\r\n") == .failure(.invalidContentLength)) }
@Test func contentLengthPlusSign() { #expect(framing("Content-Length: +1\r\n") == .failure(.invalidContentLength)) }
@Test func contentLengthEmpty() { #expect(framing("Content-Length:\r\n") == .failure(.invalidContentLength)) }
@Test func contentLengthHex() { #expect(framing("Content-Length: 0x10\r\n") == .failure(.invalidContentLength)) }
@Test func contentLengthInnerSpace() { #expect(framing("Content-Length: 1 2\r\n") == .failure(.invalidContentLength)) }
@Test func contentLengthHuge() {
    #expect(framing("Content-Length: 99999999999999999999999\r\n") == .failure(.invalidContentLength))
}
@Test func contentLengthJustAboveInt64() {
    #expect(framing("Content-Length: 9223372036854775808\r\n") == .failure(.invalidContentLength))
}
@Test func contentLengthInt64Max() {
    #expect(framing("Content-Length: 9223372036854775807\r\n") == .success(.length(Int.max)))
}
@Test func transferEncodingChunkedThenIdentity() {
    #expect(framing("Transfer-Encoding: chunked, identity\r\n") == .failure(.chunkedNotFinal))
}
@Test func transferEncodingIdentity() {
    #expect(framing("Transfer-Encoding: identity\r\n") == .failure(.chunkedNotFinal))
}
@Test func transferEncodingGzipThenChunked() {
    #expect(framing("Transfer-Encoding: gzip, chunked\r\n") == .failure(.unsupportedTransferEncoding))
    #expect(HTTPParseError.unsupportedTransferEncoding.status == 501)
}
@Test func transferEncodingChunkedTwice() {
    #expect(framing("Transfer-Encoding: chunked, chunked\r\n") == .failure(.unsupportedTransferEncoding))
}
@Test func transferEncodingChunkedInTwoFields() {
    #expect(framing("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n") == .failure(.unsupportedTransferEncoding))
}
@Test func transferEncodingEmpty() { #expect(framing("Transfer-Encoding:\r\n") == .failure(.chunkedNotFinal)) }
@Test func transferEncodingInHTTP10() {
    #expect(framing("Transfer-Encoding: chunked\r\n", version: "HTTP/1.0") == .failure(.transferEncodingInHTTP10))
}
@Test func obsoleteFoldingIsRefused() {
    let text = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n chunked\r\n\r\n"
    #expect(parseHead(bytes(text)) == .failed(.obsoleteLineFolding))
}
@Test func spaceBeforeColonIsRefused() {
    let text = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n"
    #expect(parseHead(bytes(text)) == .failed(.whitespaceBeforeColon))
}
@Test func tabBeforeColonIsRefused() {
    let text = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length\t: 4\r\n\r\n"
    #expect(parseHead(bytes(text)) == .failed(.whitespaceBeforeColon))
}
