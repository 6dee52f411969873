/// Why bytes from a client are not an acceptable HTTP/1.1 request. Each case
/// carries its status and a sentence for the problem body; none echoes the
/// request's bytes, which may hold patient identifiers.
public enum HTTPParseError: Error, Equatable, Sendable {
    // Request head
    case headerTooLarge
    case tooManyHeaders
    case badRequestLine
    case invalidMethod
    case invalidTarget
    case unsupportedVersion
    case invalidHeaderName
    case whitespaceBeforeColon
    case obsoleteLineFolding
    case bareCR
    case bareLF
    case invalidHeaderValue
    case missingHost
    case multipleHost
    case invalidPercentEncoding
    case nulInPath
    // Framing
    case transferEncodingWithContentLength
    case multipleContentLength
    case invalidContentLength
    case unsupportedTransferEncoding
    case chunkedNotFinal
    case transferEncodingInHTTP10
    case bodyTooLarge
    // Chunked body
    case invalidChunkSize
    case chunkSizeOverflow
    case chunkExtensionTooLong
    case badChunkFraming
    case trailerTooLarge
    case badTrailer
    // Before the request: the PROXY protocol header of a trusted load balancer
    case malformedProxyHeader

    public var status: Int {
        switch self {
        case .headerTooLarge, .tooManyHeaders: 431
        case .unsupportedVersion: 505
        case .unsupportedTransferEncoding: 501
        case .bodyTooLarge: 413
        default: 400
        }
    }

    /// A stable slug for the problem `type`.
    public var type: String {
        switch self {
        case .headerTooLarge: "header-too-large"
        case .tooManyHeaders: "too-many-headers"
        case .badRequestLine, .invalidMethod: "bad-request-line"
        case .invalidTarget, .invalidPercentEncoding, .nulInPath: "bad-request-target"
        case .unsupportedVersion: "unsupported-http-version"
        case .invalidHeaderName, .whitespaceBeforeColon, .invalidHeaderValue: "bad-header"
        case .obsoleteLineFolding: "obsolete-line-folding"
        case .bareCR, .bareLF: "bad-line-ending"
        case .missingHost, .multipleHost: "bad-host"
        case .transferEncodingWithContentLength, .multipleContentLength: "ambiguous-framing"
        case .invalidContentLength: "bad-content-length"
        case .unsupportedTransferEncoding: "unsupported-transfer-encoding"
        case .chunkedNotFinal, .transferEncodingInHTTP10: "bad-transfer-encoding"
        case .bodyTooLarge: "body-too-large"
        case .invalidChunkSize, .chunkSizeOverflow, .chunkExtensionTooLong, .badChunkFraming: "bad-chunk"
        case .trailerTooLarge, .badTrailer: "bad-trailer"
        case .malformedProxyHeader: "bad-proxy-header"
        }
    }

    public var detail: String {
        switch self {
        case .headerTooLarge: "The request head is larger than the server accepts."
        case .tooManyHeaders: "The request has more header fields than the server accepts."
        case .badRequestLine: "The request line is not 'METHOD target HTTP/1.x'."
        case .invalidMethod: "The request method contains characters a method may not contain."
        case .invalidTarget:
            "The request target is not an absolute path (origin-form), or '*' with a method other than OPTIONS."
        case .unsupportedVersion: "Only HTTP/1.0 and HTTP/1.1 are supported."
        case .invalidHeaderName: "A header field name is empty or contains characters a name may not contain."
        case .whitespaceBeforeColon: "A header field has whitespace between its name and the colon."
        case .obsoleteLineFolding: "A header line starts with whitespace (obsolete line folding is refused)."
        case .bareCR: "A carriage return is not followed by a line feed."
        case .bareLF: "A line ends with a bare line feed; lines must end with CRLF."
        case .invalidHeaderValue: "A header field value contains control characters."
        case .missingHost: "An HTTP/1.1 request must carry a Host header."
        case .multipleHost: "The request carries more than one Host header."
        case .invalidPercentEncoding: "The request target contains an invalid percent-encoding or invalid UTF-8."
        case .nulInPath: "The request path decodes to a NUL character."
        case .transferEncodingWithContentLength:
            "The request carries both Transfer-Encoding and Content-Length, so its length is ambiguous."
        case .multipleContentLength: "The request carries more than one Content-Length value."
        case .invalidContentLength: "Content-Length is not a non-negative decimal integer that fits in 63 bits."
        case .unsupportedTransferEncoding: "The only transfer coding supported is a single 'chunked'."
        case .chunkedNotFinal: "Transfer-Encoding does not end with 'chunked', so the body length is unknown."
        case .transferEncodingInHTTP10: "Transfer-Encoding is not allowed in an HTTP/1.0 request."
        case .bodyTooLarge: "The request body is larger than the server accepts."
        case .invalidChunkSize: "A chunk size is not a hexadecimal number."
        case .chunkSizeOverflow: "A chunk size is too large to represent."
        case .chunkExtensionTooLong: "A chunk extension is longer than the server accepts."
        case .badChunkFraming: "Chunked framing is malformed: a chunk line or chunk data does not end with CRLF."
        case .trailerTooLarge: "The chunked trailer section is larger than the server accepts."
        case .badTrailer: "A trailer field in the chunked body is malformed."
        case .malformedProxyHeader:
            "The server expects a PROXY protocol header (version 1 or 2) before the request, and this connection did not send a valid one."
        }
    }
}
