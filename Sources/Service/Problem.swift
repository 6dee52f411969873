import HTTP

/// An RFC 9457 problem: a stable `type` slug, the status and a human sentence.
/// Details are written by us, never copied from the request.
public struct Problem: Error, Sendable, Equatable {
    public var status: Int
    public var slug: String
    public var detail: String
    public var headers: [(String, String)] = []

    public init(_ status: Int, _ slug: String, _ detail: String, headers: [(String, String)] = []) {
        self.status = status
        self.slug = slug
        self.detail = detail
        self.headers = headers
    }

    public static func == (a: Problem, b: Problem) -> Bool { a.status == b.status && a.slug == b.slug && a.detail == b.detail }

    public static let typePrefix = "urn:ich-triage:problem:"

    public var response: HTTPResponse {
        let body = JSONValue.object([
            ("type", .string(Self.typePrefix + slug)),
            ("title", .string(HTTPResponse.reasonPhrase(status))),
            ("status", .int(status)),
            ("detail", .string(detail)),
        ])
        var h = HTTPHeaders([("Content-Type", "application/problem+json")])
        for (name, value) in headers { h.add(name, value) }
        return HTTPResponse(status: status, headers: h, body: body.serialized())
    }

    /// The database did not answer; `what` says what could not be done ("The study cannot be deleted").
    static func databaseUnavailable(_ what: String) -> Problem {
        Problem(503, "database-unavailable", "\(what) right now; retry shortly.", headers: [("Retry-After", "5")])
    }

    /// A bug of this server; the cause goes to the log, never to the client.
    static let internalError = Problem(500, "internal-error", "The server failed to handle this request; it has been logged.")

    static func notFound(_ what: String) -> Problem { Problem(404, "\(what)-not-found", "No \(what) with that UID is stored.") }

    static func invalidParameter(_ name: String, _ expected: String) -> Problem {
        Problem(400, "invalid-parameter", "Query parameter '\(name)' must be \(expected).")
    }

    static func unsupportedMediaType(_ expected: String) -> Problem {
        Problem(415, "unsupported-media-type", "The request body must be \(expected).")
    }
}

extension HTTPServerError {
    var problem: Problem { Problem(status, type, detail, headers: isTemporary ? [("Retry-After", "5")] : []) }
}
