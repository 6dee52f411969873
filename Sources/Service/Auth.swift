import Crypto
import Foundation
import HTTP
import Storage

/// The caller behind a request, once its bearer token is checked.
public struct Principal: Sendable, Equatable {
    public var tokenID: Int
    public var scope: Scope
}

/// Bearer tokens: `ich_` and 43 base64url characters (256 random bits). Only
/// their SHA-256 is stored; a presented token is hashed, looked up by hash and
/// the stored hash compared in constant time.
public enum Auth {
    public static func makeToken() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return "ich_" + Base64URL.encode(bytes)
    }

    public static func hash(_ token: String) -> [UInt8] { Array(SHA256.hash(data: Array(token.utf8))) }

    /// Creates a token with `scope`, valid for `lifetime` seconds (nil: until revoked), and returns its
    /// id and secret; only its hash is kept. Audited in the caller's transaction as done by token
    /// `actor` (nil: the command line on the server's host).
    static func createToken(_ db: Connection, scope: Scope, name: String, lifetime: Double?, by actor: Int?, at now: Double)
        throws -> (id: Int, token: String)
    {
        let token = makeToken()
        let id = try TokenStore.insert(db, hash: hash(token), scope: scope.rawValue, name: name, at: now,
                                       expiresAt: lifetime.map { now + $0 })
        try AuditLog.record(db, tokenID: actor, action: "create-token", study: nil, subjectToken: id, at: now)
        return (id, token)
    }

    /// Revokes token `id`, audited as for `createToken` when it changed anything.
    static func revokeToken(_ db: Connection, id: Int, by actor: Int?, at now: Double) throws -> TokenStore.Revocation {
        let outcome = try TokenStore.revoke(db, id: id, at: now)
        if outcome == .revoked {
            try AuditLog.record(db, tokenID: actor, action: "revoke-token", study: nil, subjectToken: id, at: now)
        }
        return outcome
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in a.indices { difference |= a[i] ^ b[i] }
        return difference == 0
    }

    static let challenge = [("WWW-Authenticate", "Bearer realm=\"ich-triage\"")]

    /// The principal for the request's token, or the 401/403 problem. It runs in
    /// the HTTP layer's head check, on the connection's queue, once per request:
    /// the tokens are in memory (`TokenCache`), read again only now and then.
    static func authorize(_ headers: HTTPHeaders, needs scope: Scope, tokens: TokenCache) throws(Problem) -> Principal {
        let presented = try presentedHash(headers)
        do {
            return try grant(try tokens.find(presented), presented: presented, needs: scope)
        } catch let problem as Problem {
            throw problem
        } catch {
            throw .databaseUnavailable("Tokens cannot be checked")
        }
    }

    private static func presentedHash(_ headers: HTTPHeaders) throws(Problem) -> [UInt8] {
        guard let header = headers["Authorization"] else {
            throw Problem(401, "unauthorized", "This endpoint needs an 'Authorization: Bearer <token>' header.", headers: challenge)
        }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            throw Problem(401, "unauthorized", "The Authorization header must use the Bearer scheme.", headers: challenge)
        }
        return hash(String(parts[1]).trimmingCharacters(in: .whitespaces))
    }

    private static func grant(_ record: TokenRecord?, presented: [UInt8], needs scope: Scope) throws(Problem) -> Principal {
        guard let record, constantTimeEqual(record.hash, presented), let granted = Scope(rawValue: record.scope) else {
            throw Problem(401, "unauthorized", "The bearer token is not valid.", headers: challenge)
        }
        guard granted.allows(scope) else {
            throw Problem(403, "forbidden", "This token's scope '\(granted.rawValue)' does not allow this; it needs '\(scope.rawValue)'.")
        }
        return Principal(tokenID: record.id, scope: granted)
    }
}
