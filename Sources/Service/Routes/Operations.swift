import Foundation
import HTTP
import Storage

/// Liveness, readiness and metrics for operators and orchestrators.
enum OperationRoutes {
    static func health(_ request: HTTPRequest, _ context: ServiceContext) async -> HTTPResponse {
        HTTPResponse(status: 200, headers: StudyRoutes.json, body: JSONValue.object([("status", .string("alive"))]).serialized())
    }

    /// Ready when the model has run a warm-up pass, the database commits a
    /// write, its file system takes a synced write with room to spare, and the
    /// queue is below its high-water mark.
    static func ready(_ request: HTTPRequest, _ context: ServiceContext) async -> HTTPResponse {
        let model = context.modelReady
        // A committed write: a database that only fails its writes (full, read-only, EIO on the WAL or its sync)
        // still begins and rolls back transactions.
        let now = context.clock.now()
        let database = (try? await context.writer.transaction { try ReadinessProbe.write($0, at: now) }) != nil
        let storage = StorageProbe.acceptsWrites(context.configuration.dataDirectory)
        let queue = context.pipeline.depth < context.configuration.queueHighWater
        let dicom = context.dicomServing?()
        let ready = model && database && storage && queue && dicom != false
        context.metrics.ready.set(ready ? 1.0 : 0.0)
        var checks: [(String, JSONValue)] = [
            ("model", .bool(model)), ("database", .bool(database)), ("storage", .bool(storage)), ("queue", .bool(queue)),
        ]
        if let dicom { checks.append(("dicom", .bool(dicom))) }
        let body = JSONValue.object([("status", .string(ready ? "ready" : "not-ready")), ("checks", .object(checks))])
        return HTTPResponse(status: ready ? 200 : 503, headers: StudyRoutes.json, body: body.serialized())
    }

    static func metrics(_ request: HTTPRequest, _ context: ServiceContext, _ principal: Principal) async -> HTTPResponse {
        context.metrics.queueDepth.set(Double(context.pipeline.depth))
        return HTTPResponse(status: 200, headers: HTTPHeaders([("Content-Type", "text/plain; version=0.0.4; charset=utf-8")]),
                            body: context.metrics.exposition())
    }
}
