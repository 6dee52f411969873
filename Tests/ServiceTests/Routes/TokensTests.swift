import Foundation
import Testing

@testable import Service

/// `GET/POST /v1/tokens` and `DELETE /v1/tokens/{id}`: the secret is shown once and never listed, a revoked
/// or expired token is refused at once, and bad requests say what was wrong.
@Suite struct TokensTests {
    func create(_ harness: ServiceHarness, _ body: String) async throws -> Response {
        try await harness.request("POST", "/v1/tokens", token: .admin, contentType: "application/json", body: Array(body.utf8))
    }

    @Test func aCreatedTokenWorksUntilRevoked() async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        let created = try await create(harness, #"{"scope": "read", "name": "viewer-3"}"#)
        #expect(created.status == 201 && created.headers["Cache-Control"] == "no-store")
        let body = try created.object()
        let (id, secret) = (try #require(body["id"] as? Int), try #require(body["token"] as? String))
        #expect(created.headers["Location"] == "/v1/tokens/\(id)")
        #expect(body["status"] as? String == "active" && body["expiresAt"] is NSNull)
        let bearer = "Bearer \(secret)"
        #expect(try await harness.request("GET", "/v1/studies", authorization: bearer).status == 200)
        #expect(try await harness.request("GET", "/metrics", authorization: bearer).problem == "403 forbidden", "its scope applies")

        let listing = try await harness.get("/v1/tokens", token: .admin)
        let text = String(decoding: listing.body, as: UTF8.self)
        #expect(!text.contains(secret) && !text.contains("hash"), "never the secret or its hash")
        let listed = try #require((try listing.object()["tokens"] as? [[String: Any]])?.first { $0["id"] as? Int == id })
        #expect(listed["name"] as? String == "viewer-3" && listed["scope"] as? String == "read")

        #expect(try await harness.request("DELETE", "/v1/tokens/\(id)", token: .admin).status == 204)
        #expect(try await harness.request("GET", "/v1/studies", authorization: bearer).problem == "401 unauthorized",
                "refused at once by the server that revoked it")
        #expect(try await harness.request("DELETE", "/v1/tokens/\(id)", token: .admin).status == 204, "revoking again is no error")
        let after = try await harness.get("/v1/tokens", token: .admin).object()["tokens"] as? [[String: Any]]
        #expect(after?.first { $0["id"] as? Int == id }?["status"] as? String == "revoked")
        let audit = try harness.context.reader.sync {
            try $0.statement("SELECT action FROM audit WHERE subject_token_id = ? ORDER BY id").rows([.int(id)]) { $0.text(0) }
        }
        #expect(audit == ["create-token", "revoke-token"])
    }

    @Test func anExpiredTokenIsRefused() async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        let body = try await create(harness, #"{"scope": "ingest", "name": "router", "expiresInSeconds": 60}"#).object()
        let bearer = "Bearer \(try #require(body["token"] as? String))"
        #expect(body["expiresAt"] is String)
        #expect(try await harness.request("GET", "/v1/instances/1.2.3", authorization: bearer).problem == "403 forbidden")
        harness.clock.advance(60)
        #expect(try await harness.request("GET", "/v1/instances/1.2.3", authorization: bearer).problem == "401 unauthorized")
        let listed = try await harness.get("/v1/tokens", token: .admin).object()["tokens"] as? [[String: Any]]
        #expect(listed?.first { $0["id"] as? Int == body["id"] as? Int }?["status"] as? String == "expired")
    }

    @Test(arguments: [
        #"{"scope": "root", "name": "x"}"#, #"{"scope": "read"}"#, #"{"scope": "read", "name": ""}"#,
        #"{"scope": "read", "name": "x", "expiresInSeconds": 0}"#, #"{"scope": "read", "name": "x", "expiresInSeconds": 1e12}"#,
        "not json",
    ])
    func badBodiesAre400(body: String) async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        #expect(try await create(harness, body).problem == "400 invalid-body", "\(body)")
    }

    @Test func unknownAndMalformedIds() async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        #expect(try await harness.request("DELETE", "/v1/tokens/99999", token: .admin).problem == "404 token-not-found")
        for id in ["abc", "0", "-1", "1.5"] {
            #expect(try await harness.request("DELETE", "/v1/tokens/\(id)", token: .admin).problem == "400 invalid-parameter", "\(id)")
        }
        let response = try await harness.request("POST", "/v1/tokens", token: .admin, contentType: "text/plain", body: Array("x".utf8))
        #expect(response.problem == "415 unsupported-media-type")
    }
}
