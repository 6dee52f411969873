import Testing

@testable import HTTP

private func router() -> Router<String> {
    var router = Router<String>()
    router.add("GET", "/v1/studies/{uid}", "study")
    router.add("DELETE", "/v1/studies/{uid}", "delete-study")
    router.add("GET", "/v1/studies/search", "search")
    router.add("POST", "/v1/studies/{uid}/instances", "stow")
    router.add("GET", "/v1/{kind}/{id}/x", "param-first")
    router.add("GET", "/v1/studies/{id}/x", "literal-first")
    router.add("GET", "/healthz", "health")
    router.add("GET", "/", "root")
    return router
}

private func describe(_ match: RouteMatch<String>) -> String {
    switch match {
    case .found(let handler, let parameters, let template):
        "\(handler) \(template) \(parameters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" })"
    case .methodNotAllowed(let allowed, let template): "405 \(template) \(allowed)"
    case .notFound: "404"
    }
}

private let routeCases: [(String, String, String)] = [
    ("GET", "/v1/studies/1.2.3", "study /v1/studies/{uid} [\"uid=1.2.3\"]"),
    ("HEAD", "/v1/studies/1.2.3", "study /v1/studies/{uid} [\"uid=1.2.3\"]"),
    ("DELETE", "/v1/studies/1.2.3", "delete-study /v1/studies/{uid} [\"uid=1.2.3\"]"),
    ("GET", "/v1/studies/search", "search /v1/studies/search []"),
    ("DELETE", "/v1/studies/search", "delete-study /v1/studies/{uid} [\"uid=search\"]"),
    ("GET", "/v1/studies/1/x", "literal-first /v1/studies/{id}/x [\"id=1\"]"),
    ("GET", "/v1/series/1/x", "param-first /v1/{kind}/{id}/x [\"id=1\", \"kind=series\"]"),
    ("PUT", "/v1/studies/1.2.3", "405 /v1/studies/{uid} [\"DELETE\", \"GET\", \"HEAD\"]"),
    ("GET", "/v1/studies/1.2.3/instances", "405 /v1/studies/{uid}/instances [\"POST\"]"),
    ("POST", "/v1/studies/1.2.3/instances", "stow /v1/studies/{uid}/instances [\"uid=1.2.3\"]"),
    ("GET", "/v1/studies/", "404"),
    ("GET", "/v1/studies", "404"),
    ("GET", "/v1/studies/1.2.3/", "404"),
    ("GET", "/healthz", "health /healthz []"),
    ("GET", "/healthz/", "404"),
    ("GET", "/", "root / []"),
    ("GET", "/nope", "404"),
]

@Test(arguments: routeCases)
func routing(method: String, path: String, expected: String) {
    #expect(describe(router().match(method: method, path: path)) == expected, "\(method) \(path)")
}
