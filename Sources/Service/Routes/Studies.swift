import Foundation
import HTTP
import Inference
import Storage

/// Study results, the worklist and deletion.
enum StudyRoutes {
    static let json = HTTPHeaders([("Content-Type", "application/json")])

    // MARK: GET /v1/studies/{study}?wait=SECONDS

    static func study(_ request: HTTPRequest, _ context: ServiceContext, _ principal: Principal) async throws(Problem) -> HTTPResponse {
        let uid = request.pathParameters["study"] ?? ""
        var wait = 0.0
        if let text = request.query("wait") {
            guard let value = Double(text), value.isFinite, value >= 0, value <= context.configuration.maxWait else {
                throw .invalidParameter("wait", "a number of seconds from 0 to \(Int(context.configuration.maxWait))")
            }
            wait = value
        }
        try await context.audit(principal, "read-study", study: uid)
        let deadline = ContinuousClock.now + .milliseconds(Int(wait * 1000))
        while true {
            let now = context.clock.now()
            let (study, view) = try await context.read { db in
                (try ResultStore.study(db, uid), try context.studyView(db, uid))
            }
            guard let study else { throw .notFound("study") }
            let status = Representation.status(study, now: now, stableAge: context.configuration.stableAge)
            let body = Representation.study(study, status: status, view: view, model: context.model,
                                             stableAge: context.configuration.stableAge)
            let complete = status == .complete
            // Long-poll by re-reading: an indexed query every 200 ms per waiting client costs far less than a notifier.
            if complete || ContinuousClock.now >= deadline || Task.isCancelled || context.isShuttingDown {
                return HTTPResponse(status: 200, headers: json, body: body.serialized())
            }
            try? await Task.sleep(for: min(.milliseconds(200), deadline - ContinuousClock.now))
        }
    }

    // MARK: GET /v1/studies/{study}/report

    /// The study's result as a DICOM structured report (TID 1500), once the study is complete.
    static func report(_ request: HTTPRequest, _ context: ServiceContext, _ principal: Principal) async throws(Problem) -> HTTPResponse {
        let uid = request.pathParameters["study"] ?? ""
        try await context.audit(principal, "read-report", study: uid)
        let (study, view) = try await context.read { db in
            (try ResultStore.study(db, uid), try context.studyView(db, uid))
        }
        guard let study else { throw .notFound("study") }
        let status = Representation.status(study, now: context.clock.now(), stableAge: context.configuration.stableAge)
        guard status == .complete else {
            throw Problem(409, "study-incomplete",
                          "The study is \(status.rawValue); its report is written once every received slice has an outcome.")
        }
        let report = StudyReport.make(study: study, view: view, manifest: context.manifest,
                                      deviceName: context.configuration.aeTitle)
        do {
            let bytes = try report.encoded()
            return HTTPResponse(status: 200, headers: HTTPHeaders([("Content-Type", "application/dicom")]), body: bytes)
        } catch {
            context.logger.error("report not built", metadata: ["error": "\(error.message)"])
            throw .internalError
        }
    }

    // MARK: GET /v1/studies (worklist)

    static let maximumPage = 200

    static func worklist(_ request: HTTPRequest, _ context: ServiceContext, _ principal: Principal) async throws(Problem) -> HTTPResponse {
        var minimumAny: Double?
        if let text = request.query("positive") {
            switch text {
            case "true": minimumAny = context.manifest.thresholds[0]
            case "false": minimumAny = nil
            default: throw .invalidParameter("positive", "true or false")
            }
        }
        var assessable: Bool?
        if let text = request.query("assessable") {
            switch text {
            case "true": assessable = true
            case "false": assessable = false
            default: throw .invalidParameter("assessable", "true or false")
            }
        }
        var since: Double?
        if let text = request.query("since") {
            guard let value = Representation.parseTime(text) else { throw .invalidParameter("since", "an RFC 3339 date-time") }
            // Times are written with millisecond precision; a `since` copied from a response must include that study.
            since = value - 0.001
        }
        var limit = 50
        if let text = request.query("limit") {
            guard let value = Int(text), (1...maximumPage).contains(value) else {
                throw .invalidParameter("limit", "an integer from 1 to \(maximumPage)")
            }
            limit = value
        }
        var cursor: ResultStore.Cursor?
        if let text = request.query("cursor") {
            guard let value = decodeCursor(text) else { throw .invalidParameter("cursor", "a nextCursor value from an earlier page") }
            cursor = value
        }
        try await context.audit(principal, "read-worklist", study: nil)
        let (floor, after, from, count, only) = (minimumAny, since, cursor, limit + 1, assessable)
        let studies = try await context.read {
            try ResultStore.worklist($0, minimumAny: floor, since: after, assessable: only, after: from, limit: count)
        }
        let page = studies.prefix(limit)
        let next: JSONValue = studies.count > limit ? page.last.map {
            .string(encodeCursor(ResultStore.Cursor(anyMaximum: $0.maxima.map { Double($0[0]) } ?? -1, studyInstanceUID: $0.studyInstanceUID)))
        } ?? .null : .null
        let now = context.clock.now()
        let body = JSONValue.object([
            ("studies", .array(page.map {
                Representation.summary($0, manifest: context.manifest, now: now, stableAge: context.configuration.stableAge)
            })),
            ("nextCursor", next),
            ("model", context.model),
        ])
        return HTTPResponse(status: 200, headers: json, body: body.serialized())
    }

    /// An opaque page token: base64url of "<any maximum as stored>|<study UID>".
    static func encodeCursor(_ cursor: ResultStore.Cursor) -> String {
        Base64URL.encode("\(cursor.anyMaximum)|\(cursor.studyInstanceUID)".utf8)
    }

    static func decodeCursor(_ text: String) -> ResultStore.Cursor? {
        guard text.count <= 256 else { return nil }
        guard let data = Base64URL.decode(text), let decoded = String(data: data, encoding: .utf8) else { return nil }
        let parts = decoded.split(separator: "|", maxSplits: 1)
        guard parts.count == 2, let value = Double(parts[0]), value.isFinite else { return nil }
        return ResultStore.Cursor(anyMaximum: value, studyInstanceUID: String(parts[1]))
    }

    // MARK: PUT /v1/studies/{study}/priority

    private struct Priority: Decodable {
        var urgent: Bool
    }

    /// An operator moves a study ahead of the queue (a clinician called about it) or back to its turn.
    static func priority(_ request: HTTPRequest, _ context: ServiceContext, _ principal: Principal) async throws(Problem) -> HTTPResponse {
        let uid = request.pathParameters["study"] ?? ""
        guard request.headers["Content-Type"].flatMap(MediaType.init(parsing:))?.type == "application/json" else {
            throw .unsupportedMediaType("application/json: {\"urgent\": true} or {\"urgent\": false}")
        }
        guard request.body.count <= 1024,
              let priority = try? request.body.withUnsafeBytes({ try JSONDecoder().decode(Priority.self, from: Data($0)) })
        else { throw Problem(400, "invalid-body", "The body must be {\"urgent\": true} or {\"urgent\": false}.") }
        let found: Bool
        do {
            found = try context.pipeline.prioritize(study: uid, urgent: priority.urgent) { db in
                try AuditLog.record(db, tokenID: principal.tokenID, action: priority.urgent ? "prioritize-study" : "deprioritize-study",
                                    study: uid, at: context.clock.now())
            }
        } catch {
            throw .databaseUnavailable("The study's priority cannot be changed")
        }
        guard found else { throw .notFound("study") }
        let body = JSONValue.object([("studyInstanceUID", .string(uid)), ("urgent", .bool(priority.urgent))])
        return HTTPResponse(status: 200, headers: json, body: body.serialized())
    }

    // MARK: DELETE /v1/studies/{study}

    static func delete(_ request: HTTPRequest, _ context: ServiceContext, _ principal: Principal) async throws(Problem) -> HTTPResponse {
        let uid = request.pathParameters["study"] ?? ""
        let spoolFiles: [String]?
        do {
            spoolFiles = try await context.writer.transaction { db in
                let files = try JobQueue.deleteStudy(db, uid)
                if files != nil {
                    try AuditLog.record(db, tokenID: principal.tokenID, action: "delete-study", study: uid, at: context.clock.now())
                }
                return files
            }
        } catch {
            throw .databaseUnavailable("The study cannot be deleted")
        }
        guard let spoolFiles else { throw .notFound("study") }
        for name in spoolFiles { context.pipeline.spool.remove(name) }
        return HTTPResponse(status: 204)
    }
}
