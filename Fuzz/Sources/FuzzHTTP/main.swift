import HTTP
import FuzzDriver

/// Any bytes must give a parse result or a typed error, never a crash or an
/// over-read (AddressSanitizer), and the incremental parsers must not care
/// where the input is split: a split at an input-derived point gives the same
/// head, framing, chunked payload and multipart parts as the whole.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTP(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: start, count: count)
    guard count > 0 else { return 0 }
    let split = Int(bytes[0]) * count / 256

    // Head: stateless, so "split" means a prefix must be incomplete or agree.
    let parser = RequestHeadParser(maxHeaderBytes: 4096, maxHeaderCount: 32)
    let whole = describeHead(parser, bytes)
    let prefix = describeHead(parser, UnsafeRawBufferPointer(rebasing: bytes[0..<split]))
    if prefix != "incomplete" && prefix != whole {
        fatalError("head parse differs for a prefix: \(prefix) vs \(whole)")
    }

    // A PROXY header (stateless too): a prefix is incomplete, or agrees with the whole, or fails as the whole does.
    let proxyWhole = Result { () throws(HTTPParseError) in try ProxyHeader.parse(bytes) }
    switch Result(catching: { () throws(HTTPParseError) in try ProxyHeader.parse(bytes[0..<split]) }) {
    case .success(.needMoreInput): break
    case .success(let prefix):
        if case .success(let whole) = proxyWhole, whole == prefix { break }
        fatalError("PROXY header parse differs for a prefix: \(prefix) vs \(proxyWhole)")
    case .failure:
        if case .success = proxyWhole { fatalError("PROXY header prefix fails where the whole parses: \(proxyWhole)") }
    }

    // Framing for whatever head parsed; the body after it feeds the decoders.
    var bodyStart = 0
    if let head = try? parser.parse(bytes), case .complete(let parsed, let consumed) = head {
        _ = try? BodyFraming(head: parsed)
        bodyStart = consumed
    }
    let body = UnsafeRawBufferPointer(rebasing: bytes[bodyStart...])

    let chunkSplit = Int(bytes[0]) * body.count / 256
    let chunkedWhole = decodeChunked(body, splitAt: nil)
    let chunkedSplit = decodeChunked(body, splitAt: chunkSplit)
    if chunkedWhole != chunkedSplit {
        fatalError("chunked decode differs when split at \(chunkSplit): \(chunkedSplit) vs \(chunkedWhole)")
    }

    // Multipart: the boundary comes from the input, the body from after it.
    if let newline = body.firstIndex(of: 0x0A) {
        let boundary = String(decoding: UnsafeRawBufferPointer(rebasing: body[0..<newline]), as: UTF8.self)
        let parts = UnsafeRawBufferPointer(rebasing: body[(newline + 1)...])
        if let found = try? parseMultipart(parts, boundary: boundary, maxParts: 64) {
            for part in found {
                precondition(part.body.lowerBound >= 0 && part.body.upperBound <= parts.count)
            }
        }
    }
    return 0
}

private func describeHead(_ parser: RequestHeadParser, _ bytes: UnsafeRawBufferPointer) -> String {
    do {
        switch try parser.parse(bytes) {
        case .incomplete: return "incomplete"
        case .complete(let head, let consumed):
            precondition(consumed <= bytes.count)
            return "\(head.method) \(head.target) \(head.path) \(head.headers.map { "\($0.name):\($0.value)" }) \(consumed)"
        }
    } catch {
        return "error \(error)"
    }
}

/// The payload, where it ended, or the error, from feeding `input` in one or two pieces.
private func decodeChunked(_ input: UnsafeRawBufferPointer, splitAt: Int?) -> String {
    var decoder = ChunkedDecoder(maxExtensionBytes: 64, maxTrailerBytes: 512, maxPayloadBytes: 1 << 20)
    var payload: [UInt8] = []
    let pieces = splitAt.map { [0..<$0, $0..<input.count] } ?? [0..<input.count]
    for piece in pieces {
        let buffer = UnsafeRawBufferPointer(rebasing: input[piece])
        var offset = 0
        while true {
            do {
                switch try decoder.decode(buffer, offset: &offset) {
                case .data(let range): payload += buffer[range]
                case .needMoreInput: break
                case .end: return "end at \(piece.lowerBound + offset) \(payload)"
                }
                if offset >= buffer.count { break }
            } catch {
                return "error \(error) \(payload)"
            }
        }
    }
    return "incomplete \(payload)"
}

@_cdecl("FuzzHTTP_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runLibFuzzer(argc, argv, fuzzHTTP)
}
