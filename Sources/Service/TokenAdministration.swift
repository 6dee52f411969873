import Foundation
import Storage

/// What `ich-server` (which imports only Service) sees of stored tokens.
public typealias TokenInfo = Storage.TokenInfo
public typealias TokenRevocation = Storage.TokenStore.Revocation

/// `ich-server token create|list|revoke`: the service's database opened by another process, which
/// the running server follows within a second (`TokenCache`). Audited with no acting token (the
/// command line on the server's host).
extension TriageService {
    /// Makes a bearer token valid for `lifetime` seconds (nil: until revoked); returns its secret.
    public static func createToken(dataDirectory: String, scope: Scope, name: String, lifetime: Double? = nil) throws -> String {
        try openForTokens(dataDirectory).write {
            try Auth.createToken($0, scope: scope, name: name, lifetime: lifetime, by: nil, at: Date().timeIntervalSince1970).token
        }
    }

    public static func listTokens(dataDirectory: String) throws -> [TokenInfo] {
        try openForTokens(dataDirectory).sync { try TokenStore.list($0) }
    }

    /// A token as `GET /v1/tokens` shows it (openapi.yaml, `Token`), one line of JSON.
    public static func tokenJSON(_ token: TokenInfo, now: Double) -> String {
        String(decoding: TokenRoutes.info(token, now: now).serialized(), as: UTF8.self)
    }

    public static func revokeToken(dataDirectory: String, id: Int) throws -> TokenRevocation {
        try openForTokens(dataDirectory).write { try Auth.revokeToken($0, id: id, by: nil, at: Date().timeIntervalSince1970) }
    }

    private static func openForTokens(_ dataDirectory: String) throws -> DatabaseQueue {
        try makeDirectory(dataDirectory)
        try restrictToOwner(database: dataDirectory + "/ich.sqlite")
        let db = try DatabaseQueue(path: dataDirectory + "/ich.sqlite", label: "token")
        try db.sync { try Migrator.migrate($0, Schema.migrations) }
        return db
    }
}
