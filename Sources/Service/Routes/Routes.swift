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
        router.add("GET", "/v1/instances/{sop}", Route(scope: .read) { try await InstanceRoutes.instance($0, $1, $2!) })
        router.add("GET", "/healthz", Route(scope: nil) { request, context, _ in await OperationRoutes.health(request, context) })
        router.add("GET", "/readyz", Route(scope: nil) { request, context, _ in await OperationRoutes.ready(request, context) })
        router.add("GET", "/metrics", Route(scope: .admin) { await OperationRoutes.metrics($0, $1, $2!) })
        return router
    }()

    /// Runs when a request head is complete, before its body is read: a
    /// request that will be refused (unknown route, bad token, full queue) is
    /// answered without receiving a body that may be hundreds of megabytes.
    /// An admitted request carries its `Principal` to `handle`, so the token is looked up once.
    static func check(_ head: HTTPRequestHead, from address: String, router: Router<Route>, context: ServiceContext) -> HeadDecision {
        let problem: Problem
        let template: String
        switch router.match(method: head.method, path: head.path) {
        case .notFound:
            (problem, template) = (Problem(404, "not-found", "No such endpoint; see openapi.yaml."), "unmatched")
        case .methodNotAllowed(let allowed, let t):
            (problem, template) = (methodNotAllowed(allowed), t)
        case .found(let route, _, let t):
            do throws(Problem) {
                var principal: Principal?
                if let scope = route.scope {
                    try context.checkAuthThrottle(address)
                    principal = try Auth.authorize(head.headers, needs: scope, tokens: context.tokens)
                }
                if route.ingest { try checkQueue(context) }
                return .admit(principal)
            } catch {
                if error.status == 401 { context.recordAuthFailure(address) }
                (problem, template) = (error, t)
            }
        }
        context.metrics.error(problem.slug)
        context.metrics.request(route: template, method: head.method, status: problem.status, duration: .zero)
        return .refuse(problem.response)
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

    static func handle(_ request: HTTPRequest, router: Router<Route>, context: ServiceContext) async -> HTTPResponse {
        let start = ContinuousClock.now
        var template = "unmatched"
        var response: HTTPResponse
        do {
            switch router.match(method: request.method, path: request.path) {
            case .notFound:
                throw Problem(404, "not-found", "No such endpoint; see openapi.yaml.")
            case .methodNotAllowed(let allowed, let t):
                template = t
                throw methodNotAllowed(allowed)
            case .found(let route, let parameters, let t):
                template = t
                // A malformed UID in the path is answered without echoing it (it may be anything, PHI included).
                for (name, value) in parameters where !UID.isValid(value) {
                    throw Problem(400, "invalid-parameter", "The \(name == "sop" ? "SOP Instance" : "Study Instance") UID in the path is not a valid identifier (1 to 64 characters of 0-9, A-Z, a-z, dot, underscore and hyphen).")
                }
                var request = request
                request.pathParameters = parameters
                request.routeTemplate = t
                // `check` authenticated the request before its body was read; without its principal, refuse.
                let principal = request.head.admission as? Principal
                guard route.scope == nil || principal != nil else {
                    context.logger.critical("a scoped request reached its handler without the head check", metadata: ["route": "\(t)"])
                    throw Problem.internalError
                }
                if route.ingest { try checkQueue(context) }
                response = try await route.handler(request, context, principal)
            }
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
