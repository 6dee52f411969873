public struct HTTPResponse: Sendable, Equatable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(status: Int, headers: HTTPHeaders = .init(), body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The RFC 9110 reason phrase; clients ignore it, people reading traces do not.
    public static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 100: "Continue"
        case 200: "OK"
        case 201: "Created"
        case 202: "Accepted"
        case 204: "No Content"
        case 206: "Partial Content"
        case 301: "Moved Permanently"
        case 302: "Found"
        case 303: "See Other"
        case 304: "Not Modified"
        case 307: "Temporary Redirect"
        case 308: "Permanent Redirect"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 406: "Not Acceptable"
        case 408: "Request Timeout"
        case 409: "Conflict"
        case 410: "Gone"
        case 411: "Length Required"
        case 412: "Precondition Failed"
        case 413: "Content Too Large"
        case 414: "URI Too Long"
        case 415: "Unsupported Media Type"
        case 417: "Expectation Failed"
        case 422: "Unprocessable Content"
        case 428: "Precondition Required"
        case 429: "Too Many Requests"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        case 505: "HTTP Version Not Supported"
        case 507: "Insufficient Storage"
        default: "Unknown"
        }
    }
}

/// Serialises a final response. The server owns `Content-Length`, `Date` and
/// `Connection`; whatever the handler set for those is replaced. A HEAD
/// response keeps the Content-Length of the body it does not send.
func serializeResponse(
    _ response: HTTPResponse, version: HTTPVersion, close: Bool, omitBody: Bool, date: String
) -> [UInt8] {
    var headers = response.headers
    headers.remove("content-length")
    headers.remove("connection")
    headers.remove("transfer-encoding")
    headers.replaceOrAdd("Date", date)
    let status = response.status
    let bodyForbidden = (100..<200).contains(status) || status == 204 || status == 304
    if !bodyForbidden { headers.add("Content-Length", String(response.body.count)) }
    if close {
        headers.add("Connection", "close")
    } else if version == .http1_0 {
        headers.add("Connection", "keep-alive")
    }
    var text = "HTTP/1.1 \(status) \(HTTPResponse.reasonPhrase(status))\r\n"
    for (name, value) in headers where isSafeField(name, value) {
        text += name + ": " + value + "\r\n"
    }
    text += "\r\n"
    var bytes = Array(text.utf8)
    if !omitBody && !bodyForbidden { bytes += response.body }
    return bytes
}

/// A handler-supplied field with CR, LF or an invalid name would split the
/// response; such a field is dropped rather than sent.
private func isSafeField(_ name: String, _ value: String) -> Bool {
    !name.isEmpty && name.utf8.allSatisfy { ByteClass.token[Int($0)] }
        && value.utf8.allSatisfy { ByteClass.isFieldValue($0) }
}
