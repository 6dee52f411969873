import Foundation
import HTTP
import Storage

/// Token lifecycle for administrators: list (never a secret or hash), create (the secret is shown once),
/// revoke. Every call is audited with the acting token and the token acted on.
enum TokenRoutes {
    static let noStore = HTTPHeaders([("Content-Type", "application/json"), ("Cache-Control", "no-store")])
    /// Ten years: a longer lifetime is a typo, not a policy.
    static let maximumLifetime = 10.0 * 365 * 86400

    static func info(_ token: TokenInfo, now: Double) -> JSONValue {
        .object([
            ("id", .int(token.id)), ("name", .string(token.name)), ("scope", .string(token.scope)),
            ("status", .string(token.status(at: now))),
            ("createdAt", Representation.time(token.createdAt)),
            ("expiresAt", token.expiresAt.map(Representation.time) ?? .null),
            ("revokedAt", token.revokedAt.map(Representation.time) ?? .null),
            ("lastUsedAt", token.lastUsedAt.map(Representation.time) ?? .null),
        ])
    }

    // MARK: GET /v1/tokens

    static func list(_ request: HTTPRequest, _ context: ServiceContext, _ principal: Principal) async throws(Problem) -> HTTPResponse {
        let tokens = try await context.read { try TokenStore.list($0) }
        try await context.audit(principal, "list-tokens", study: nil)
        let now = context.clock.now()
        let body = JSONValue.object([("tokens", .array(tokens.map { info($0, now: now) }))])
        return HTTPResponse(status: 200, headers: StudyRoutes.json, body: body.serialized())
    }

    // MARK: POST /v1/tokens

    private struct NewToken: Decodable {
        var scope: String
        var name: String
        var expiresInSeconds: Double?
    }

    static func create(_ request: HTTPRequest, _ context: ServiceContext, _ principal: Principal) async throws(Problem) -> HTTPResponse {
        guard request.headers["Content-Type"].flatMap(MediaType.init(parsing:))?.type == "application/json" else {
            throw .unsupportedMediaType("application/json: {\"scope\": \"read\", \"name\": \"...\", \"expiresInSeconds\": 86400}")
        }
        let expected = "The body must be {\"scope\": \"ingest\"|\"read\"|\"admin\", \"name\": \"1 to 100 characters\"} with an optional \"expiresInSeconds\" (1 to \(Int(maximumLifetime)))."
        guard request.body.count <= 4096,
              let new = try? request.body.withUnsafeBytes({ try JSONDecoder().decode(NewToken.self, from: Data($0)) }),
              let scope = Scope(rawValue: new.scope), (1...100).contains(new.name.count),
              new.expiresInSeconds.map({ $0 >= 1 && $0 <= maximumLifetime }) ?? true
        else { throw Problem(400, "invalid-body", expected) }
        let now = context.clock.now()
        let created: (id: Int, token: String)
        do {
            created = try await context.writer.transaction {
                try Auth.createToken($0, scope: scope, name: new.name, lifetime: new.expiresInSeconds, by: principal.tokenID, at: now)
            }
        } catch {
            throw .databaseUnavailable("The token cannot be created")
        }
        let token = TokenInfo(id: created.id, name: new.name, scope: scope.rawValue, createdAt: now,
                              expiresAt: new.expiresInSeconds.map { now + $0 })
        guard case .object(let members) = info(token, now: now) else { throw .internalError }
        var headers = noStore
        headers.add("Location", "/v1/tokens/\(created.id)")
        return HTTPResponse(status: 201, headers: headers, body: JSONValue.object(members + [("token", .string(created.token))]).serialized())
    }

    // MARK: DELETE /v1/tokens/{id}

    static func revoke(_ request: HTTPRequest, _ context: ServiceContext, _ principal: Principal) async throws(Problem) -> HTTPResponse {
        guard let id = request.pathParameters["id"].flatMap({ Int($0) }) else { throw .internalError }  // checked with the head
        let now = context.clock.now()
        let outcome: TokenStore.Revocation
        do {
            outcome = try await context.writer.transaction { try Auth.revokeToken($0, id: id, by: principal.tokenID, at: now) }
        } catch {
            throw .databaseUnavailable("The token cannot be revoked")
        }
        guard outcome != .notFound else { throw Problem(404, "token-not-found", "No token with that id exists.") }
        // This process stops honouring it at once; other servers on the database within a second.
        context.tokens.invalidate()
        return HTTPResponse(status: 204)
    }
}
