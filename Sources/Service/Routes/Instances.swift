import HTTP
import Storage

enum InstanceRoutes {
    // MARK: GET /v1/instances/{sop}

    static func instance(_ request: HTTPRequest, _ context: ServiceContext, _ principal: Principal) async throws(Problem) -> HTTPResponse {
        let sop = request.pathParameters["sop"] ?? ""
        let frames = try await context.read { try ResultStore.instance($0, sop) }
        guard let first = frames.first else { throw .notFound("instance") }
        try await context.audit(principal, "read-instance", study: first.studyInstanceUID, instance: sop)
        let body = Representation.instance(frames, model: context.model)
        return HTTPResponse(status: 200, headers: StudyRoutes.json, body: body.serialized())
    }
}
