import DICOM
import Dispatch
import HTTP

/// DICOMweb STOW-RS and the single-instance upload.
enum IngestRoutes {
    static let dicomMediaType = "application/dicom"

    /// PS3.18 failure reasons.
    enum FailureReason: Int {
        case outOfResources = 0xA700
        case processingFailure = 0xA900
        case studyMismatch = 0xA901
        case cannotUnderstand = 0xC000
    }

    /// PS3.18 warning for an instance that was already stored.
    static let duplicateWarning = 45070

    /// Reads one uploaded object's header (pixels are decoded once, in the batch) and decides with the
    /// series rules whether it is triaged. Any well-formed instance is accepted; malformed ones fail.
    static func accept(_ bytes: UnsafeRawBufferPointer, rules: SeriesRules) -> Result<IngestItem, DICOMError> {
        let header: InstanceHeader
        do {
            header = try DICOMDecoder.header(bytes)
        } catch {
            return .failure(error)
        }
        let skipReason: String? =
            switch rules.decide(header) {
            case .triage: nil
            case .skip(let reason): reason
            }
        return .success(IngestItem(header: header, bytes: bytes, skipReason: skipReason))
    }

    /// Decode failures that mean "not DICOM at all" versus "DICOM we cannot process".
    static func reason(_ error: DICOMError) -> FailureReason {
        switch error {
        case .notDICOM, .truncated, .malformed: .cannotUnderstand
        default: .processingFailure
        }
    }

    /// Status and slug for a rejected single upload.
    static func problem(_ error: DICOMError) -> Problem {
        switch error {
        case .unsupportedTransferSyntax, .unsupportedPhotometricInterpretation, .unsupportedPixelFormat, .multiFrame, .tooManyFrames,
             .modalityLUTSequence:
            Problem(422, error.type, error.detail)
        case .outOfMemory:
            Problem(503, "out-of-memory", "The server is short of memory; retry shortly.", headers: [("Retry-After", "10")])
        default:
            Problem(400, error.type, error.detail)
        }
    }

    /// Runs blocking work (decoding, fsync) off the cooperative thread pool,
    /// which has one thread per core and must stay free for other requests.
    static func offload<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            blockingQueue.async { continuation.resume(with: Result { try work() }) }
        }
    }

    static let blockingQueue = DispatchQueue(label: "ich.ingest", qos: .userInitiated, attributes: .concurrent)

    static func storeFailed(_ context: ServiceContext, _ error: any Error) -> Problem {
        context.metrics.error("spool")
        context.logger.error("storing an upload failed", metadata: ["error": "\(loggable(error))"])
        return Problem(503, "storage-unavailable", "The upload could not be stored durably. Retry shortly.",
                       headers: [("Retry-After", "5")])
    }

    // MARK: POST /v1/instances

    static func single(_ request: HTTPRequest, _ context: ServiceContext) async throws(Problem) -> HTTPResponse {
        let mediaType = request.headers["Content-Type"].flatMap(MediaType.init(parsing:))
        guard mediaType?.type == dicomMediaType else { throw .unsupportedMediaType("application/dicom (one DICOM Part-10 file)") }
        guard request.body.count > 0 else { throw Problem(400, "empty-body", "The request body is empty; send one DICOM file.") }
        let body = request.body
        let outcome: Result<(InstanceHeader, String?, Bool), Problem>
        do {
            outcome = try await offload { () -> Result<(InstanceHeader, String?, Bool), Problem> in
                try body.withUnsafeBytes { bytes in
                    switch accept(bytes, rules: context.rules) {
                    case .failure(let error): return .failure(problem(error))
                    case .success(let item):
                        do {
                            let isNew = try context.pipeline.ingest([item])[0]
                            return .success((item.header, item.skipReason, isNew))
                        } catch {
                            return .failure(storeFailed(context, error))
                        }
                    }
                }
            }
        } catch {
            throw storeFailed(context, error)
        }
        let (header, skipReason, isNew) = try outcome.get()
        context.metrics.ingested(isNew ? "stored" : "duplicate")
        // 202: queued for the model; 200: stored and nothing to wait for (a repeat, or skipped by the series rules).
        let status = !isNew ? "duplicate" : skipReason == nil ? "queued" : "skipped"
        var members: [(String, JSONValue)] = [
            ("sopInstanceUID", .string(header.sopInstanceUID)), ("studyInstanceUID", .string(header.studyInstanceUID)),
            ("seriesInstanceUID", .string(header.seriesInstanceUID)), ("status", .string(status)),
        ]
        if let skipReason, isNew { members.append(("reason", .string(skipReason))) }
        members += [("study", .string("/v1/studies/\(header.studyInstanceUID)")), ("instance", .string("/v1/instances/\(header.sopInstanceUID)"))]
        return HTTPResponse(status: status == "queued" ? 202 : 200, headers: HTTPHeaders([("Content-Type", "application/json")]),
                            body: JSONValue.object(members).serialized())
    }

    // MARK: POST /dicomweb/studies[/{study}]

    /// One part's fate in a STOW request.
    enum PartOutcome: Sendable {
        case stored(sopClass: String, sop: String, study: String, duplicate: Bool)
        case failed(sopClass: String?, sop: String?, reason: FailureReason)
    }

    static func stow(_ request: HTTPRequest, _ context: ServiceContext) async throws(Problem) -> HTTPResponse {
        guard let mediaType = request.headers["Content-Type"].flatMap(MediaType.init(parsing:)),
              mediaType.type == "multipart/related"
        else { throw .unsupportedMediaType("multipart/related; type=\"application/dicom\"") }
        if let type = mediaType.parameters["type"], MediaType(parsing: type)?.type != dicomMediaType {
            throw .unsupportedMediaType("multipart/related with type=\"application/dicom\"")
        }
        guard let boundary = mediaType.parameters["boundary"], !boundary.isEmpty else {
            throw Problem(400, "bad-multipart", "The multipart/related Content-Type has no boundary parameter.")
        }
        let urlStudy = request.pathParameters["study"]
        let body = request.body
        let outcomes: Result<[PartOutcome], Problem>
        do {
            outcomes = try await offload { () -> Result<[PartOutcome], Problem> in
                try body.withUnsafeBytes { bytes in
                    let parts: [MultipartPart]
                    do {
                        parts = try parseMultipart(bytes, boundary: boundary)
                    } catch let error as MultipartError {
                        return .failure(Problem(400, "bad-multipart", "The multipart/related body is malformed: \(error.detail)"))
                    }
                    guard !parts.isEmpty else {
                        return .failure(Problem(400, "bad-multipart", "The multipart/related body holds no parts."))
                    }
                    return Result { try storeParts(parts, in: bytes, urlStudy: urlStudy, context) }
                        .mapError { storeFailed(context, $0) }
                }
            }
        } catch {
            throw storeFailed(context, error)
        }
        let results = try outcomes.get()
        return stowResponse(results, urlStudy: urlStudy, base: context.configuration.publicURL ?? "")
    }

    static func storeParts(_ parts: [MultipartPart], in bytes: UnsafeRawBufferPointer, urlStudy: String?, _ context: ServiceContext) throws
        -> [PartOutcome]
    {
        var outcomes = [PartOutcome?](repeating: nil, count: parts.count)
        var items: [IngestItem] = []
        var itemParts: [Int] = []
        var seen = Set<String>()
        for (index, part) in parts.enumerated() {
            if let type = part.headers["Content-Type"], MediaType(parsing: type)?.type != dicomMediaType {
                outcomes[index] = .failed(sopClass: nil, sop: nil, reason: .cannotUnderstand)
                continue
            }
            let partBytes = UnsafeRawBufferPointer(rebasing: bytes[part.body])
            switch accept(partBytes, rules: context.rules) {
            case .failure(let error):
                outcomes[index] = .failed(sopClass: nil, sop: nil, reason: reason(error))
            case .success(let item):
                let header = item.header
                if let urlStudy, header.studyInstanceUID != urlStudy {
                    outcomes[index] = .failed(sopClass: header.sopClassUID, sop: header.sopInstanceUID, reason: .studyMismatch)
                } else if !seen.insert(header.sopInstanceUID).inserted {
                    // The same instance twice in one request: store it once, warn on the repeat.
                    outcomes[index] = .stored(sopClass: header.sopClassUID ?? "", sop: header.sopInstanceUID,
                                              study: header.studyInstanceUID, duplicate: true)
                } else {
                    items.append(item)
                    itemParts.append(index)
                }
            }
        }
        let inserted = try context.pipeline.ingest(items)
        for (k, index) in itemParts.enumerated() {
            let header = items[k].header
            outcomes[index] = .stored(sopClass: header.sopClassUID ?? "", sop: header.sopInstanceUID, study: header.studyInstanceUID,
                                      duplicate: !inserted[k])
        }
        let final = outcomes.map { $0! }
        var stored = 0, duplicates = 0, failed = 0
        for outcome in final {
            switch outcome {
            case .stored(_, _, _, let duplicate): if duplicate { duplicates += 1 } else { stored += 1 }
            case .failed: failed += 1
            }
        }
        context.metrics.ingested("stored", count: stored)
        context.metrics.ingested("duplicate", count: duplicates)
        context.metrics.ingested("failed", count: failed)
        return final
    }

    /// The PS3.18 response: 200 all stored, 202 stored with failures or warnings, 409 none stored.
    /// RetrieveURLs start with `base` (`--public-url`; empty: relative URLs).
    static func stowResponse(_ outcomes: [PartOutcome], urlStudy: String?, base: String) -> HTTPResponse {
        func ui(_ value: String) -> JSONValue { .object([("vr", .string("UI")), ("Value", .array([.string(value)]))]) }
        func ur(_ value: String) -> JSONValue { .object([("vr", .string("UR")), ("Value", .array([.string(value)]))]) }
        func us(_ value: Int) -> JSONValue { .object([("vr", .string("US")), ("Value", .array([.int(value)]))]) }
        var referenced: [JSONValue] = []
        var failed: [JSONValue] = []
        var studies = Set<String>()
        var warnings = false
        for outcome in outcomes {
            switch outcome {
            case .stored(let sopClass, let sop, let study, let duplicate):
                studies.insert(study)
                var item: [(String, JSONValue)] = [("00081150", ui(sopClass)), ("00081155", ui(sop)), ("00081190", ur("\(base)/v1/instances/\(sop)"))]
                if duplicate {
                    item.append(("00081196", us(duplicateWarning)))
                    warnings = true
                }
                referenced.append(.object(item))
            case .failed(let sopClass, let sop, let reason):
                var item: [(String, JSONValue)] = []
                if let sopClass { item.append(("00081150", ui(sopClass))) }
                if let sop { item.append(("00081155", ui(sop))) }
                item.append(("00081197", us(reason.rawValue)))
                failed.append(.object(item))
            }
        }
        var members: [(String, JSONValue)] = []
        if let study = urlStudy ?? (studies.count == 1 ? studies.first : nil) {
            members.append(("00081190", ur("\(base)/dicomweb/studies/\(study)")))
        }
        if !referenced.isEmpty { members.append(("00081199", .object([("vr", .string("SQ")), ("Value", .array(referenced))]))) }
        if !failed.isEmpty { members.append(("00081198", .object([("vr", .string("SQ")), ("Value", .array(failed))]))) }
        let status = referenced.isEmpty ? 409 : (failed.isEmpty && !warnings ? 200 : 202)
        return HTTPResponse(status: status, headers: HTTPHeaders([("Content-Type", "application/dicom+json")]),
                            body: JSONValue.object(members).serialized())
    }
}
