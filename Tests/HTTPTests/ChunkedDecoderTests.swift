import Testing

@testable import HTTP

private let chunkedCases: [(String, ChunkedOutcome)] = [
    ("5\r\nhello\r\n0\r\n\r\n", .done(payload: bytes("hello"), rest: [])),
    ("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET", .done(payload: bytes("hello world"), rest: bytes("GET"))),
    ("A\r\n0123456789\r\n0\r\n\r\n", .done(payload: bytes("0123456789"), rest: [])),
    ("0000005\r\nhello\r\n0\r\n\r\n", .done(payload: bytes("hello"), rest: [])),
    ("5;name=value;flag\r\nhello\r\n0;x=\"y\"\r\n\r\n", .done(payload: bytes("hello"), rest: [])),
    ("5 ;ext\r\nhello\r\n0\r\n\r\n", .done(payload: bytes("hello"), rest: [])),
    ("0\r\n\r\n", .done(payload: [], rest: [])),
    ("0\r\nX-Trailer: 1\r\nY: 2\r\n\r\nrest", .done(payload: [], rest: bytes("rest"))),
    ("5\r\nhel", .incomplete(payload: bytes("hel"))),
    ("5\r\nhello\r\n0\r\n", .incomplete(payload: bytes("hello"))),
    ("\r\n", .failed(.invalidChunkSize)),
    ("g\r\n", .failed(.invalidChunkSize)),
    ("-5\r\nhello\r\n0\r\n\r\n", .failed(.invalidChunkSize)),
    ("5x\r\nhello\r\n0\r\n\r\n", .failed(.invalidChunkSize)),
    ("5\r\nhelloX\r\n0\r\n\r\n", .failed(.badChunkFraming)),
    ("5\r\nhello\r0\r\n\r\n", .failed(.badChunkFraming)),
    ("5\rhello\r\n0\r\n\r\n", .failed(.badChunkFraming)),
    ("0\r\n\rX", .failed(.badChunkFraming)),
    ("0\r\nBad Trailer: 1\r\n\r\n", .failed(.badTrailer)),
    ("0\r\n X: folded\r\n\r\n", .failed(.badTrailer)),
    ("0\r\nX: 1\n\r\n", .failed(.badChunkFraming)),
    ("5;" + String(repeating: "e", count: 100) + "\r\nhello\r\n0\r\n\r\n", .failed(.chunkExtensionTooLong)),
    ("0\r\nX: " + String(repeating: "v", count: 300) + "\r\n\r\n", .failed(.trailerTooLarge)),
    ("5;\u{01}\r\nhello\r\n0\r\n\r\n", .failed(.badChunkFraming)),
]

@Test(arguments: chunkedCases)
func chunkedDecodesTheSameWholeAndByteByByte(input: String, expected: ChunkedOutcome) {
    #expect(decodeChunked(bytes(input)) == expected, "\(input.debugDescription)")
    for pieceSize in [1, 2, 3, 7] {
        #expect(decodeChunked(bytes(input), pieceSize: pieceSize) == expected, "\(input.debugDescription) in pieces of \(pieceSize)")
    }
}

@Test func bareLFAfterChunkSize() {
    #expect(decodeChunked(bytes("5\nhello\r\n0\r\n\r\n")) == .failed(.badChunkFraming))
}

@Test func bareLFAfterChunkData() {
    #expect(decodeChunked(bytes("5\r\nhello\n0\r\n\r\n")) == .failed(.badChunkFraming))
}

@Test func bareLFAfterLastChunk() {
    #expect(decodeChunked(bytes("0\n\r\n")) == .failed(.badChunkFraming))
}

@Test func chunkSizeOverflow() {
    #expect(decodeChunked(bytes("ffffffffffffffffff\r\nhello\r\n0\r\n\r\n")) == .failed(.chunkSizeOverflow))
}

@Test func chunkSizeJustBelowOverflowIsLimitedByPayloadSize() {
    #expect(decodeChunked(bytes("7fffffffffffffff\r\n"), maxPayloadBytes: 1 << 30) == .failed(.bodyTooLarge))
}

@Test func payloadLimitCountsEveryChunk() {
    let input = bytes("4\r\nabcd\r\n4\r\nefgh\r\n0\r\n\r\n")
    #expect(decodeChunked(input, maxPayloadBytes: 8) == .done(payload: bytes("abcdefgh"), rest: []))
    #expect(decodeChunked(input, maxPayloadBytes: 7) == .failed(.bodyTooLarge))
}

@Test func largeChunkComesBackAsOneRange() {
    let payload = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
    let input = bytes(String(payload.count, radix: 16) + "\r\n") + payload + bytes("\r\n0\r\n\r\n")
    #expect(decodeChunked(input) == .done(payload: payload, rest: []))
    #expect(decodeChunked(input, pieceSize: 4096) == .done(payload: payload, rest: []))
}
