import Foundation
import HTTP
import Testing

@testable import Service

/// Routing and admission (`Routes.check`): unknown routes, methods, tokens and
/// scopes are refused before a handler runs, with the documented problem.
@Suite struct RoutesTests {
    static let unknown = "1.2.826.0.1.3680043.8.498.999999999"

    /// Every protected route and the scope it needs.
    static let protected: [(method: String, target: String, scope: Scope)] = [
        ("POST", "/dicomweb/studies", .ingest), ("POST", "/dicomweb/studies/\(unknown)", .ingest),
        ("POST", "/v1/instances", .ingest), ("GET", "/v1/instances/\(unknown)", .read), ("GET", "/v1/studies", .read),
        ("GET", "/v1/studies/\(unknown)", .read), ("DELETE", "/v1/studies/\(unknown)", .admin), ("PUT", "/v1/studies/\(unknown)/priority", .admin),
        ("GET", "/metrics", .admin), ("GET", "/v1/tokens", .admin), ("POST", "/v1/tokens", .admin), ("DELETE", "/v1/tokens/1", .admin),
    ]

    @Test func healthAndReadinessAreOpen() async throws {
        let harness = try ServiceHarness(classify: { _ in [] })
        defer { harness.close() }
        #expect(try await harness.get("/healthz", token: nil).object() as NSDictionary == ["status": "alive"])
        let ready = try await harness.get("/readyz", token: nil)
        #expect(ready.status == 200)
        #expect(try ready.object() as NSDictionary == [
            "status": "ready", "checks": ["model": true, "database": true, "storage": true, "queue": true],
        ])
    }

    @Test func notReadyUntilTheModelIs() async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        let ready = try await harness.get("/readyz", token: nil)
        #expect(ready.status == 503)
        #expect((try ready.object()["checks"] as? [String: Bool])?["model"] == false)
    }

    @Test func unknownPathsAre404() async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        for target in ["/nope", "/v1", "/v1/studies/1.2.3/extra", "/dicomweb/studies/1.2/series"] {
            #expect(try await harness.get(target, token: .admin).problem == "404 not-found", "\(target)")
        }
    }

    @Test func wrongMethodsAre405WithAllow() async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        let cases: [(String, String, Set<String>)] = [
            ("PUT", "/v1/studies", ["GET"]), ("DELETE", "/v1/instances/1.2.3", ["GET"]), ("GET", "/v1/instances", ["POST"]),
            ("POST", "/healthz", ["GET"]), ("PATCH", "/v1/studies/1.2.3", ["GET", "DELETE"]),
        ]
        for (method, target, allowed) in cases {
            let response = try await harness.request(method, target, token: .admin)
            #expect(response.problem == "405 method-not-allowed", "\(method) \(target)")
            let allow = Set((response.headers["Allow"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
            #expect(allowed.isSubset(of: allow), "\(method) \(target): \(allow)")
        }
    }

    @Test func missingOrInvalidTokensAre401() async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        let admin = harness.tokens[.admin]!
        let invalid = [nil, "Bearer ich_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "Bearer " + admin.dropLast(), "Bearer \(admin)x",
                       "Basic \(admin)", "Bearer", admin]
        for (method, target, _) in Self.protected {
            for authorization in invalid {
                let response = try await harness.request(method, target, authorization: authorization)
                #expect(response.problem == "401 unauthorized", "\(method) \(target)")
                #expect(response.headers["WWW-Authenticate"]?.hasPrefix("Bearer realm=\"ich-triage\"") == true)
            }
        }
    }

    @Test func tokensWithoutTheScopeAre403() async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        for (method, target, needed) in Self.protected {
            for scope in [Scope.ingest, .read] where !scope.allows(needed) {
                let response = try await harness.request(method, target, token: scope, body: ["POST", "PUT"].contains(method) ? [] : nil)
                #expect(response.problem == "403 forbidden", "\(scope) \(method) \(target)")
            }
        }
    }

    @Test func eachScopeReachesItsHandlers() async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        for (method, target, needed) in Self.protected {
            for scope in Scope.allCases where scope.allows(needed) {
                let response = try await harness.request(method, target, token: scope, body: ["POST", "PUT"].contains(method) ? [] : nil)
                #expect(![401, 403].contains(response.status), "\(scope) \(method) \(target): \(response)")
            }
        }
    }

    @Test func aTokenCreatedWhileRunningIsAccepted() async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        let token = try TriageService.createToken(dataDirectory: harness.directory, scope: .read, name: "later")
        #expect(try await harness.request("GET", "/v1/studies", authorization: "Bearer \(token)").status == 200)
    }

    @Test(arguments: ["/v1/studies/..", "/v1/studies/1.2:3", "/v1/instances/a~b", "/v1/studies/" + String(repeating: "1", count: 65)])
    func malformedPathIdentifiersAre400(target: String) async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        let response = try await harness.get(target)
        #expect(response.problem == "400 invalid-parameter", "\(response)")
        #expect(!String(decoding: response.body, as: UTF8.self).contains(target.split(separator: "/").last!))
    }

    @Test func archiveStyleIdentifiersAreValidInPaths() async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        #expect(try await harness.get("/v1/studies/ID_0a1b2c3d4e").problem == "404 study-not-found")
        #expect(try await harness.get("/v1/instances/3f2a9c0d1e4b5a6f7081928374655647").problem == "404 instance-not-found")
    }
}
