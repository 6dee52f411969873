/// A request the server answered itself, before or instead of the handler.
/// The service's `errorResponse` turns these into problem+json; `type` and
/// `detail` never contain request bytes.
public enum HTTPServerError: Error, Sendable, Equatable {
    /// The head or body framing broke HTTP/1.1's rules (status from the parse error: 400, 413, 431, 501, 505).
    case malformedRequest(HTTPParseError)
    case headerReadTimeout
    case bodyTooSlow
    case expectationFailed
    case tooManyConnections
    /// This client (address, or IPv6 /64) holds `maxConnectionsPerClient` connections already.
    case tooManyConnectionsFromClient
    /// The body could not be written to the body directory (disk full, permissions, EIO): the cause is for the log.
    case bodyStorageFailed(SystemError)
    /// A plain HTTP request reached a port that speaks only HTTPS.
    case plainHTTPToTLSPort

    public var status: Int {
        switch self {
        case .malformedRequest(let error): error.status
        case .headerReadTimeout, .bodyTooSlow: 408
        case .expectationFailed: 417
        case .tooManyConnections: 503
        case .tooManyConnectionsFromClient: 429
        case .bodyStorageFailed: 503
        case .plainHTTPToTLSPort: 400
        }
    }

    /// The condition passes by itself (connection caps, a full body directory): the answer says when to retry.
    public var isTemporary: Bool {
        switch self {
        case .tooManyConnections, .tooManyConnectionsFromClient, .bodyStorageFailed: true
        case .malformedRequest, .headerReadTimeout, .bodyTooSlow, .expectationFailed, .plainHTTPToTLSPort: false
        }
    }

    public var type: String {
        switch self {
        case .malformedRequest(let error): error.type
        case .headerReadTimeout, .bodyTooSlow: "request-timeout"
        case .expectationFailed: "expectation-failed"
        case .tooManyConnections: "too-many-connections"
        case .tooManyConnectionsFromClient: "too-many-connections-from-client"
        case .bodyStorageFailed: "body-storage-failed"
        case .plainHTTPToTLSPort: "https-required"
        }
    }

    public var detail: String {
        switch self {
        case .malformedRequest(let error): error.detail
        case .headerReadTimeout: "The request head did not arrive in time."
        case .bodyTooSlow: "The request body arrived slower than the server's minimum rate."
        case .expectationFailed: "The only expectation supported is '100-continue'."
        case .tooManyConnections: "The server has too many open connections; retry later."
        case .tooManyConnectionsFromClient:
            "This client address has as many open connections as the server allows one client; reuse or close one, or retry later."
        case .bodyStorageFailed: "The server could not store the request body."
        case .plainHTTPToTLSPort: "This port speaks HTTPS only; send the request over TLS (https://)."
        }
    }
}
