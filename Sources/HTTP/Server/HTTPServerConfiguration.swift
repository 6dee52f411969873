/// Every limit and timeout of the server, with defaults sized for a PACS
/// pushing CT slices over a LAN.
public struct HTTPServerConfiguration: Sendable {
    /// An IPv4 or IPv6 literal or a name `getaddrinfo` resolves.
    public var host: String
    /// 0 binds an ephemeral port; `HTTPServer.start()` returns the one bound.
    public var port: Int
    public var backlog: Int32
    /// Connections beyond this are accepted and answered 503 with
    /// `Connection: close` (a client learns why, instead of hanging in the
    /// backlog); past twice this they are closed at once.
    public var maxConnections: Int
    /// Open connections one client (an IPv4 address, or an IPv6 /64) may hold; the
    /// next ones are answered 429 and closed, past twice this closed at once. 0: no cap.
    public var maxConnectionsPerClient: Int
    /// Every connection starts with a PROXY protocol header (v1 or v2) from a trusted
    /// load balancer, and the client it names is the one counted, throttled and logged.
    /// Only for a listener the load balancer alone can reach.
    public var proxyProtocol: Bool
    /// HTTPS on this listener (and plain HTTP refused with 400); nil serves plain HTTP.
    public var tls: TLSConfiguration?
    /// The whole request head (request line and fields); beyond it: 431.
    public var maxHeaderBytes: Int
    public var maxHeaderCount: Int
    /// Checked against Content-Length up front and chunk sizes as they arrive; beyond it: 413.
    public var maxBodyBytes: Int
    /// From the first byte of a request head to its blank line (for a connection's
    /// first request, from its accept); beyond it: 408 and close, or a silent close
    /// for a connection that never sent a byte.
    public var headerReadTimeout: Duration
    /// A keep-alive connection with no request in progress is closed silently after this.
    public var idleTimeout: Duration
    /// A body arriving slower than this (averaged over `bodyRateWindow`, after the
    /// first window) gets 408 and close; 0 turns the check off.
    public var minBodyBytesPerSecond: Int
    public var bodyRateWindow: Duration
    /// Bodies up to this stay in memory; larger ones are written to `bodyDirectory` as they arrive.
    public var bodyMemoryLimit: Int
    /// Created 0700 at start if missing; body files in it are 0600 and deleted after the response.
    public var bodyDirectory: String
    /// How long a closing connection keeps reading and discarding input after its
    /// final response, so the client reads the response instead of a reset.
    public var drainTimeout: Duration

    public init(
        host: String = "127.0.0.1",
        port: Int = 8080,
        backlog: Int32 = 128,
        maxConnections: Int = 256,
        maxConnectionsPerClient: Int = 32,
        proxyProtocol: Bool = false,
        tls: TLSConfiguration? = nil,
        maxHeaderBytes: Int = 16 * 1024,
        maxHeaderCount: Int = 100,
        maxBodyBytes: Int = 2 * 1024 * 1024 * 1024,
        headerReadTimeout: Duration = .seconds(10),
        idleTimeout: Duration = .seconds(60),
        minBodyBytesPerSecond: Int = 1024,
        bodyRateWindow: Duration = .seconds(5),
        bodyMemoryLimit: Int = 1024 * 1024,
        bodyDirectory: String = "/tmp/ich-http-bodies",
        drainTimeout: Duration = .seconds(2)
    ) {
        self.host = host
        self.port = port
        self.backlog = backlog
        self.maxConnections = maxConnections
        self.maxConnectionsPerClient = maxConnectionsPerClient
        self.proxyProtocol = proxyProtocol
        self.tls = tls
        self.maxHeaderBytes = maxHeaderBytes
        self.maxHeaderCount = maxHeaderCount
        self.maxBodyBytes = maxBodyBytes
        self.headerReadTimeout = headerReadTimeout
        self.idleTimeout = idleTimeout
        self.minBodyBytesPerSecond = minBodyBytesPerSecond
        self.bodyRateWindow = bodyRateWindow
        self.bodyMemoryLimit = bodyMemoryLimit
        self.bodyDirectory = bodyDirectory
        self.drainTimeout = drainTimeout
    }
}
