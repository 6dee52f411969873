import Testing

@testable import HTTP

/// Parts as "headers|body" strings, or the error.
private func parse(_ text: String, boundary: String = "b", maxParts: Int = 10_000) -> Result<[String], MultipartError> {
    withExactBytes(bytes(text)) { buffer in
        do throws(MultipartError) {
            let parts = try parseMultipart(buffer, boundary: boundary, maxParts: maxParts)
            return .success(parts.map { part in
                let headers = part.headers.map { "\($0.name)=\($0.value)" }.joined(separator: ",")
                return headers + "|" + String(decoding: buffer[part.body], as: UTF8.self)
            })
        } catch {
            return .failure(error)
        }
    }
}

@Test func twoParts() {
    let body = "--b\r\nContent-Type: application/dicom\r\n\r\nDICM1\r\n--b\r\nContent-Type: application/dicom\r\n\r\nDICM2\r\n--b--"
    #expect(parse(body) == .success(["Content-Type=application/dicom|DICM1", "Content-Type=application/dicom|DICM2"]))
}

@Test func quotedBoundaryFromTheMediaType() throws {
    let type = try #require(MediaType(parsing: "multipart/related; type=\"application/dicom\"; boundary=\"x:y z\""))
    let boundary = try #require(type.parameters["boundary"])
    #expect(parse("--x:y z\r\n\r\nA\r\n--x:y z--\r\n", boundary: boundary) == .success(["|A"]))
}

@Test func preambleAndEpilogueAreIgnored() {
    let body = "This is a preamble.\r\n--b\r\nX: 1\r\n\r\nA\r\n--b--\r\nThis is the epilogue.\r\n--b\r\n\r\nnot a part"
    #expect(parse(body) == .success(["X=1|A"]))
}

@Test func transportPaddingAfterDelimiters() {
    #expect(parse("--b  \t\r\n\r\nA\r\n--b \r\n\r\nB\r\n--b--  ") == .success(["|A", "|B"]))
}

@Test func missingCloseDelimiter() {
    #expect(parse("--b\r\n\r\nA\r\n--b\r\n\r\nB") == .failure(.missingCloseDelimiter))
    #expect(parse("--b\r\n\r\nA\r\n") == .failure(.missingCloseDelimiter))
    #expect(parse("--b\r\n") == .failure(.missingCloseDelimiter))
}

@Test func noOpeningDelimiter() {
    #expect(parse("just data") == .failure(.noOpeningDelimiter))
    #expect(parse("") == .failure(.noOpeningDelimiter))
    // "x--b" is preamble; the first CRLF--b found is already the close delimiter.
    #expect(parse("x--b\r\n\r\nA\r\n--b--") == .success([]))
    #expect(parse("--bx\r\n\r\nA\r\n--bx--") == .failure(.noOpeningDelimiter))
}

@Test func boundaryWithoutCRLFPrefixIsData() {
    let body = "--b\r\n\r\nA--b\r\nB\n--b\r\nC\r\n--bb\r\n--b--"
    #expect(parse(body) == .success(["|A--b\r\nB\n--b\r\nC\r\n--bb"]))
}

@Test func zeroByteParts() {
    #expect(parse("--b\r\n\r\n--b--") == .success(["|"]))
    #expect(parse("--b\r\nX: 1\r\n\r\n--b--") == .success(["X=1|"]))
    #expect(parse("--b\r\nX: 1\r\n\r\n\r\n--b\r\n\r\n\r\n--b--") == .success(["X=1|", "|"]))
    #expect(parse("--b--") == .success([]))
}

@Test func bodyMayContainCRLFs() {
    #expect(parse("--b\r\n\r\n\r\nA\r\n\r\n\r\n--b--") == .success(["|\r\nA\r\n\r\n"]))
}

@Test func malformedPartHeaders() {
    #expect(parse("--b\r\nNo colon here\r\n\r\nA\r\n--b--") == .failure(.malformedPartHeaders(part: 1)))
    #expect(parse("--b\r\n\r\nA\r\n--b\r\nX : 1\r\n\r\nB\r\n--b--") == .failure(.malformedPartHeaders(part: 2)))
    #expect(parse("--b\r\nX: 1\r\n Y\r\n\r\nA\r\n--b--") == .failure(.malformedPartHeaders(part: 1)))
    #expect(parse("--b\r\nX: 1\nY: 2\r\n\r\nA\r\n--b--") == .failure(.malformedPartHeaders(part: 1)))
    // The CRLF before "--b" belongs to the delimiter, so this header line is unterminated.
    #expect(parse("--b\r\nX: 1\r\n--b--") == .failure(.malformedPartHeaders(part: 1)))
}

@Test(arguments: ["", String(repeating: "a", count: maximumBoundaryLength + 1), "a\r", "a;b", "trailing "])
func invalidBoundary(boundary: String) {
    #expect(parse("--b\r\n\r\nA\r\n--b--", boundary: boundary) == .failure(.invalidBoundary), "\(boundary.debugDescription)")
}

/// Longer than RFC 2046's 70: Orthanc's DICOMweb plugin sends two UUIDs joined by "-" (73 characters).
@Test(arguments: [70, 73, maximumBoundaryLength])
func longBoundary(length: Int) {
    let orthanc = "1f3b8a5e-2c4d-4e6f-8a9b-0c1d2e3f4a5b-9e8d7c6b-5a4f-4e3d-2c1b-0a9f8e7d6c5b"
    let boundary = length == 73 ? orthanc : String(repeating: "z", count: length)
    #expect(boundary.utf8.count == length)
    #expect(parse("--\(boundary)\r\n\r\nA\r\n--\(boundary)--", boundary: boundary) == .success(["|A"]))
}

@Test func manyParts() {
    let count = 5000
    let body = (0..<count).map { "--b\r\nN: \($0)\r\n\r\n\($0)\r\n" }.joined() + "--b--"
    guard case .success(let parts) = parse(body) else {
        Issue.record("many parts did not parse")
        return
    }
    #expect(parts.count == count)
    #expect(parts.last == "N=\(count - 1)|\(count - 1)")
    #expect(parse(body, maxParts: count - 1) == .failure(.tooManyParts(limit: count - 1)))
}

@Test func largePartIsFoundInOnePass() throws {
    let payload = [UInt8](repeating: 0x0D, count: 4_000_000)
    let body = bytes("--b\r\n\r\n") + payload + bytes("\r\n--b--")
    let parts = try withExactBytes(body) { try parseMultipart($0, boundary: "b") }
    #expect(parts.count == 1)
    #expect(parts.first?.body == 7..<(7 + payload.count))
}
