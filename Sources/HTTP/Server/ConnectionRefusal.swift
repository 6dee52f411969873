/// Why the server closed or refused a connection before serving it: one label
/// value each of the service's refusal counter, so an operator sees which
/// defence is firing.
public enum ConnectionRefusal: String, Sendable, CaseIterable {
    /// 503 at the accept: `maxConnections` open and none waiting for a head to close.
    case serverFull = "server_full"
    /// 429: the client holds `maxConnectionsPerClient` already.
    case clientFull = "client_full"
    /// Past twice a cap: closed at the accept without an answer.
    case dropped
    /// Closed while waiting for a head, to make room for a new connection.
    case evicted
    /// The request head (for a new connection, any request at all) did not arrive in time.
    case headTimeout = "head_timeout"
    /// 408: the body arrived slower than `minBodyBytesPerSecond`.
    case bodyTooSlow = "body_too_slow"
    /// The TLS handshake failed (an old protocol version, no or a bad client certificate) or the client spoke plain HTTP.
    case tlsHandshake = "tls_handshake"

    init?(_ error: HTTPServerError) {
        switch error {
        case .tooManyConnections: self = .serverFull
        case .tooManyConnectionsFromClient: self = .clientFull
        case .headerReadTimeout: self = .headTimeout
        case .bodyTooSlow: self = .bodyTooSlow
        case .plainHTTPToTLSPort: self = .tlsHandshake
        case .malformedRequest, .expectationFailed, .bodyStorageFailed: return nil
        }
    }
}
