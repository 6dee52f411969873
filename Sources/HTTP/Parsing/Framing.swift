/// How a request's body is delimited (RFC 9112 §6.3). Every ambiguity is an
/// error rather than a guess: a front proxy guessing differently is how
/// request smuggling works.
public enum BodyFraming: Sendable, Equatable {
    case none
    case length(Int)
    case chunked

    public init(head: HTTPRequestHead) throws(HTTPParseError) {
        let transferEncodings = head.headers.values("transfer-encoding")
        let contentLengths = head.headers.values("content-length")

        if !transferEncodings.isEmpty {
            if !contentLengths.isEmpty { throw .transferEncodingWithContentLength }
            if head.version == .http1_0 { throw .transferEncodingInHTTP10 }
            let codings = head.headers.tokens("transfer-encoding")
            // RFC 9112 §6.3: a final coding other than chunked leaves the length unknown (400);
            // anything else we cannot decode is "not implemented" (501).
            guard codings.last == "chunked" else { throw .chunkedNotFinal }
            guard codings.count == 1 else { throw .unsupportedTransferEncoding }
            self = .chunked
            return
        }

        guard let value = contentLengths.first else {
            self = .none
            return
        }
        // Repeated or listed values, even identical ones, are refused: simpler than
        // deciding which proxies would have agreed.
        guard contentLengths.count == 1, !value.utf8.contains(UInt8(ascii: ",")) else {
            throw .multipleContentLength
        }
        guard let length = parseDecimal(value) else { throw .invalidContentLength }
        self = .length(length)
    }
}

/// Digits only: no sign, no spaces, no hex; nil on overflow.
func parseDecimal(_ text: String) -> Int? {
    guard !text.isEmpty else { return nil }
    var value = 0
    for byte in text.utf8 {
        guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
        let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
        let (sum, overflow2) = times10.addingReportingOverflow(Int(byte - UInt8(ascii: "0")))
        guard !overflow1, !overflow2 else { return nil }
        value = sum
    }
    return value
}
