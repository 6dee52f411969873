import DICOM
import Foundation
import HTTP

/// A route's handler and the scope its caller needs (nil: open).
struct Route: Sendable {
    var scope: Scope?
    var ingest = false
    var handler: @Sendable (HTTPRequest, ServiceContext, Principal?) async throws -> HTTPResponse
}

enum Routes {
    static let table: Router<Route> = {
        var router = Router<Route>()
        let stow = Route(scope: .ingest, ingest: true) { request, context, _ in try await IngestRoutes.stow(request, context) }
        router.add("POST", "/dicomweb/studies", stow)
        router.add("POST", "/dicomweb/studies/{study}", stow)
        router.add("POST", "/v1/instances", Route(scope: .ingest, ingest: true) { request, context, _ in
            try await IngestRoutes.single(request, context)
        })
        router.add("GET", "/v1/studies", Route(scope: .read) { try await StudyRoutes.worklist($0, $1, $2!) })
        router.add("GET", "/v1/studies/{study}", Route(scope: .read) { try await StudyRoutes.study($0, $1, $2!) })
        router.add("DELETE", "/v1/studies/{study}", Route(scope: .admin) { try await StudyRoutes.delete($0, $1, $2!) })
        router.add("GET", "/v1/studies/{study}/report", Route(scope: .read) { try await StudyRoutes.report($0, $1, $2!) })
        router.add("PUT", "/v1/studies/{study}/priority", Route(scope: .admin) { try await StudyRoutes.priority($0, $1, $2!) })
        router.add("GET", "/v1/instances/{sop}", Route(scope: .read) { try await InstanceRoutes.instance($0, $1, $2!) })
        router.add("GET", "/v1/tokens", Route(scope: .admin) { try await TokenRoutes.list($0, $1, $2!) })
        router.add("POST", "/v1/tokens", Route(scope: .admin) { try await TokenRoutes.create($0, $1, $2!) })
        router.add("DELETE", "/v1/tokens/{id}", Route(scope: .admin) { try await TokenRoutes.revoke($0, $1, $2!) })
        router.add("GET", "/healthz", Route(scope: nil) { request, context, _ in await OperationRoutes.health(request, context) })
        router.add("GET", "/readyz", Route(scope: nil) { request, context, _ in await OperationRoutes.ready(request, context) })
        router.add("GET", "/metrics", Route(scope: .admin) { await OperationRoutes.metrics($0, $1, $2!) })
        return router
    }()

    /// What the head check decided for an admitted request: its route, path
    /// parameters and caller. `handle` acts on it and does not match or authenticate again.
    struct Admission: Sendable {
        var route: Route
        var parameters: [String: String]
        var template: String
        var principal: Principal?
    }

    /// Runs when a request head is complete, before its body is read: a
    /// request that will be refused (unknown route, malformed UID in the path,
    /// bad token, full queue) is answered without receiving a body that may be
    /// hundreds of megabytes. The route is matched and the token looked up here only.
    static func check(_ head: HTTPRequestHead, from address: String, router: Router<Route>, context: ServiceContext) -> HeadDecision {
        let problem: Problem
        let template: String
        switch router.match(method: head.method, path: head.path) {
        case .notFound:
            (problem, template) = (Problem(404, "not-found", "No such endpoint; see openapi.yaml."), "unmatched")
        case .methodNotAllowed(let allowed, let t):
            (problem, template) = (methodNotAllowed(allowed), t)
        case .found(let route, let parameters, let t):
            do throws(Problem) {
                var principal: Principal?
                if let scope = route.scope {
                    try context.checkAuthThrottle(address)
                    principal = try Auth.authorize(head.headers, needs: scope, tokens: context.tokens)
                }
                for (name, value) in parameters {
                    if let problem = invalidPathParameter(name, value) { throw problem }
                }
                if route.ingest { try checkQueue(context) }
                return .admit(Admission(route: route, parameters: parameters, template: t, principal: principal))
            } catch {
                if error.status == 401 { context.recordAuthFailure(address) }
                (problem, template) = (error, t)
            }
        }
        context.metrics.error(problem.slug)
        context.metrics.request(route: template, method: head.method, status: problem.status, duration: .zero)
        return .refuse(problem.response)
    }

    /// What is wrong with a path parameter, by its name in the route template; nil when it is well-formed.
    /// The value is never echoed: it may be anything, PHI included.
    static func invalidPathParameter(_ name: String, _ value: String) -> Problem? {
        switch name {
        case "id":
            return Int(value).map { $0 > 0 } == true
                ? nil : Problem(400, "invalid-parameter", "The token id in the path must be a positive integer.")
        default:
            return UID.isValid(value)
                ? nil
                : Problem(400, "invalid-parameter", "The \(name == "sop" ? "SOP Instance" : "Study Instance") UID in the path is not a valid identifier (1 to 64 characters of 0-9, A-Z, a-z, dot, underscore and hyphen).")
        }
    }

    static func methodNotAllowed(_ allowed: [String]) -> Problem {
        Problem(405, "method-not-allowed", "This endpoint does not accept that method.",
                headers: [("Allow", allowed.joined(separator: ", "))])
    }

    static func checkQueue(_ context: ServiceContext) throws(Problem) {
        let depth = context.pipeline.depth
        guard depth < context.configuration.queueHardLimit else {
            // Time to drain the excess at roughly one batch per second, bounded to something a PACS will honour.
            let seconds = min(300, max(5, (depth - context.configuration.queueHardLimit) / max(1, context.configuration.maxBatch) + 5))
            throw Problem(503, "overloaded", "The inference queue is full; retry later.", headers: [("Retry-After", String(seconds))])
        }
    }

    /// Runs the admitted request's handler. The queue is checked again: it may have filled while a large body arrived.
    static func handle(_ request: HTTPRequest, context: ServiceContext) async -> HTTPResponse {
        let start = ContinuousClock.now
        var template = "unmatched"
        var response: HTTPResponse
        do {
            guard let admission = request.head.admission as? Admission else {
                context.logger.critical("a request reached its handler without the head check")
                throw Problem.internalError
            }
            template = admission.template
            var request = request
            request.pathParameters = admission.parameters
            request.routeTemplate = admission.template
            if admission.route.ingest { try checkQueue(context) }
            response = try await admission.route.handler(request, context, admission.principal)
        } catch let problem as Problem {
            context.metrics.error(problem.slug)
            response = problem.response
        } catch {
            context.metrics.error("internal-error")
            context.logger.error("handler failed", metadata: ["route": "\(template)", "error": "\(type(of: error))"])
            response = Problem.internalError.response
        }
        context.metrics.request(route: template, method: request.method, status: response.status, duration: ContinuousClock.now - start)
        return response
    }
}
