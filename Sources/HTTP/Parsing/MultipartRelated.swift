#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public struct MultipartPart: Sendable, Equatable {
    public var headers: HTTPHeaders
    /// Byte offsets of the part's body in the buffer that was parsed.
    public var body: Range<Int>

    public init(headers: HTTPHeaders, body: Range<Int>) {
        self.headers = headers
        self.body = body
    }
}

public enum MultipartError: Error, Equatable, Sendable {
    case invalidBoundary
    case noOpeningDelimiter
    case missingCloseDelimiter
    case malformedPartHeaders(part: Int)
    case tooManyParts(limit: Int)

    public var status: Int { 400 }

    public var type: String {
        switch self {
        case .invalidBoundary: "invalid-boundary"
        case .noOpeningDelimiter, .missingCloseDelimiter: "malformed-multipart"
        case .malformedPartHeaders: "malformed-part-headers"
        case .tooManyParts: "too-many-parts"
        }
    }

    public var detail: String {
        switch self {
        case .invalidBoundary:
            "The multipart boundary is empty, longer than \(maximumBoundaryLength) characters or contains characters RFC 2046 does not allow."
        case .noOpeningDelimiter: "The multipart body does not contain its opening boundary delimiter."
        case .missingCloseDelimiter: "The multipart body ends before its closing boundary delimiter."
        case .malformedPartHeaders(let part): "The headers of part \(part) of the multipart body are malformed."
        case .tooManyParts(let limit): "The multipart body has more than \(limit) parts."
        }
    }
}

/// Splits a multipart body (RFC 2046 §5.1.1) into parts without copying their
/// bodies. One pass over the buffer: delimiter candidates are found with
/// memchr for CR, and since a boundary never contains CR a failed candidate
/// never makes the scan go back, so the cost stays linear in the body size.
public func parseMultipart(
    _ buffer: UnsafeRawBufferPointer, boundary: String, maxParts: Int = 10_000
) throws(MultipartError) -> [MultipartPart] {
    guard isValidBoundary(boundary) else { throw .invalidBoundary }
    // "--boundary", the dash-boundary; a delimiter is CRLF followed by it.
    let dashBoundary = Array("--".utf8) + Array(boundary.utf8)
    let scanner = DelimiterScanner(buffer: buffer, dashBoundary: dashBoundary)

    // The opening dash-boundary may start the body; otherwise it follows a preamble and a CRLF.
    var next: (end: Int, close: Bool)?
    if let found = scanner.delimiterTail(at: 0) {
        next = found
    } else if let found = scanner.nextDelimiter(from: 0) {
        next = (found.end, found.close)
    }
    guard var (position, close) = next else { throw .noOpeningDelimiter }

    var parts: [MultipartPart] = []
    while !close {
        guard let delimiter = scanner.nextDelimiter(from: position) else { throw .missingCloseDelimiter }
        guard parts.count < maxParts else { throw .tooManyParts(limit: maxParts) }
        let part = try parsePart(buffer, position, delimiter.start, index: parts.count + 1)
        parts.append(part)
        position = delimiter.end
        close = delimiter.close
    }
    return parts
}

/// RFC 2046 caps boundaries at 70 characters, but real peers send longer ones
/// (Orthanc's DICOMweb plugin: two UUIDs joined by `-`, 73) and nginx and the
/// DICOMweb servers accept them; the cap only keeps absurd ones out.
public let maximumBoundaryLength = 256

/// bchars of RFC 2046: letters, digits and `'()+_,-./:=?` and space, not ending in space.
func isValidBoundary(_ boundary: String) -> Bool {
    let bytes = Array(boundary.utf8)
    guard (1...maximumBoundaryLength).contains(bytes.count), bytes.last != 0x20 else { return false }
    return bytes.allSatisfy { byte in
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "A")...UInt8(ascii: "Z"):
            true
        default: "'()+_,-./:=? ".utf8.contains(byte)
        }
    }
}

/// A part is `*(header CRLF) [CRLF body]` between the end of one delimiter line and the next delimiter.
private func parsePart(_ buffer: UnsafeRawBufferPointer, _ start: Int, _ end: Int, index: Int)
    throws(MultipartError) -> MultipartPart
{
    let maxHeaderBytes = 16 * 1024
    var headers = HTTPHeaders()
    var position = start
    while position < end {
        if end - position >= 2, buffer[position] == 0x0D, buffer[position + 1] == 0x0A {
            return MultipartPart(headers: headers, body: (position + 2)..<end)
        }
        // A header line must end in CRLF inside the part, within a bounded size.
        var lineEnd = position
        while lineEnd < end, buffer[lineEnd] != 0x0D, buffer[lineEnd] != 0x0A { lineEnd += 1 }
        guard lineEnd + 1 < end, buffer[lineEnd] == 0x0D, buffer[lineEnd + 1] == 0x0A,
            lineEnd - start <= maxHeaderBytes, headers.count < 100,
            let (name, value) = try? parseFieldLine(buffer, position, lineEnd)
        else { throw .malformedPartHeaders(part: index) }
        headers.add(name, value)
        position = lineEnd + 2
    }
    return MultipartPart(headers: headers, body: end..<end)
}

private struct DelimiterScanner {
    let buffer: UnsafeRawBufferPointer
    let dashBoundary: [UInt8]

    /// If a dash-boundary starts at `offset` and is followed by transport
    /// padding and CRLF (or by "--", the close delimiter), where the next part
    /// starts (or the epilogue) and whether it closes.
    func delimiterTail(at offset: Int) -> (end: Int, close: Bool)? {
        let count = buffer.count
        guard count - offset >= dashBoundary.count,
            dashBoundary.withUnsafeBytes({ memcmp(buffer.baseAddress! + offset, $0.baseAddress!, $0.count) }) == 0
        else { return nil }
        var position = offset + dashBoundary.count
        if count - position >= 2, buffer[position] == UInt8(ascii: "-"), buffer[position + 1] == UInt8(ascii: "-") {
            return (position + 2, true)
        }
        while position < count, ByteClass.isOWS(buffer[position]) { position += 1 }
        guard count - position >= 2, buffer[position] == 0x0D, buffer[position + 1] == 0x0A else { return nil }
        return (position + 2, false)
    }

    /// The next CRLF + dash-boundary at or after `from` that is a real
    /// delimiter: `start` is its CR, `end` where the following part begins.
    func nextDelimiter(from: Int) -> (start: Int, end: Int, close: Bool)? {
        guard let base = buffer.baseAddress else { return nil }
        var position = from
        while position < buffer.count {
            guard let found = memchr(base + position, 0x0D, buffer.count - position) else { return nil }
            let cr = base.distance(to: UnsafeRawPointer(found))
            if cr + 1 < buffer.count, buffer[cr + 1] == 0x0A, let tail = delimiterTail(at: cr + 2) {
                return (cr, tail.end, tail.close)
            }
            position = cr + 1
        }
        return nil
    }
}
