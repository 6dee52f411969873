import DICOM
import Foundation
import HTTP
import Logging
import Synchronization
import Testing

@testable import Service

/// The service in this process, without a socket or a model: each request goes
/// through the same head check and handler as over HTTP, `classify` (if given)
/// stands in for the forward pass and `clock` moves only when the test says.
/// Everything lives in a temporary directory that `close` removes.
final class ServiceHarness: Sendable {
    let service: TriageService
    let directory: String
    let tokens: [Scope: String]
    let clock: FakeClock
    var context: ServiceContext { service.context }

    /// The repository's default bundle: only its manifest is read (labels, thresholds, provenance).
    static let modelDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../../Models/default").standardized.path

    init(stableAge: Double = 0, maxBatch: Int = 8, directory: String? = nil, clock: FakeClock = FakeClock(),
         configure: (inout ServiceConfiguration) -> Void = { _ in }, classify: Pipeline.Classify? = nil) throws {
        let directory = directory ?? FileManager.default.temporaryDirectory.appendingPathComponent("ich-\(UUID().uuidString)").path
        var configuration = ServiceConfiguration(http: HTTPServerConfiguration(), dataDirectory: directory,
                                                 modelDirectory: Self.modelDirectory)
        configuration.stableAge = stableAge
        configuration.maxBatch = maxBatch
        configuration.maxDelay = 0.001
        configuration.authFailureLimit = 0
        configure(&configuration)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        service = try TriageService(configuration: configuration, logger: logger, clock: clock.wallClock)
        self.clock = clock
        self.directory = directory
        var tokens: [Scope: String] = [:]
        for scope in Scope.allCases {
            tokens[scope] = try TriageService.createToken(dataDirectory: directory, scope: scope, name: "test-\(scope)")
        }
        self.tokens = tokens
        try service.context.pipeline.recover()
        if let classify {
            service.context.pipeline.start(classify: classify)
            service.context.modelReady = true
        }
    }

    /// Stops the pipeline and, unless `keep`, removes the data directory.
    func close(keep: Bool = false) {
        context.pipeline.stop()
        if !keep { try? FileManager.default.removeItem(atPath: directory) }
    }

    /// One request as the HTTP server would deliver it; `token` nil sends no Authorization.
    func request(_ method: String, _ target: String, token: Scope? = nil, authorization: String? = nil,
                 contentType: String? = nil, body: [UInt8]? = nil) async throws -> Response {
        var headers = HTTPHeaders()
        if let token { headers.add("Authorization", "Bearer \(tokens[token]!)") }
        if let authorization { headers.add("Authorization", authorization) }
        if let contentType { headers.add("Content-Type", contentType) }
        if let body { headers.add("Content-Length", String(body.count)) }
        var head = try HTTPRequestHead(method: method, target: target, headers: headers)
        switch Routes.check(head, from: "192.0.2.1", router: service.router, context: context) {
        case .refuse(let response):
            return Response(response)
        case .admit(let admission):
            head.admission = admission
            let request = HTTPRequest(head: head, body: body.map { $0.isEmpty ? .empty : .bytes($0) } ?? .empty,
                                      remoteAddress: "192.0.2.1")
            return Response(await Routes.handle(request, context: context))
        }
    }

    func get(_ target: String, token: Scope? = .read) async throws -> Response {
        try await request("GET", target, token: token)
    }

    func post(instance: [UInt8], token: Scope = .ingest) async throws -> Response {
        try await request("POST", "/v1/instances", token: token, contentType: "application/dicom", body: instance)
    }

    func stow(_ parts: [[UInt8]], study: String? = nil, token: Scope = .ingest) async throws -> Response {
        let (contentType, body) = Multipart.related(parts)
        return try await request("POST", "/dicomweb/studies" + (study.map { "/\($0)" } ?? ""), token: token,
                                 contentType: contentType, body: body)
    }

    /// The study once `done` holds for it, or its last state after `seconds`.
    func study(_ uid: String, until done: ([String: Any]) -> Bool = { $0["status"] as? String == "complete" },
               seconds: Double = 20) async throws -> [String: Any] {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            let study = try await get("/v1/studies/\(uid)").object()
            if done(study) || Date() > deadline { return study }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}

/// A response with its JSON read for the assertions.
struct Response: CustomStringConvertible {
    var status: Int
    var headers: HTTPHeaders
    var body: [UInt8]

    init(_ response: HTTPResponse) {
        (status, headers, body) = (response.status, response.headers, response.body)
    }

    func object() throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any], "\(self)")
    }

    /// "status slug" of a problem+json body, as in "404 not-found" (nil if it is not one).
    var problem: String? {
        guard headers["Content-Type"] == "application/problem+json",
              let json = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
              let type = json["type"] as? String
        else { return nil }
        return type.split(separator: ":").last.map { "\(status) \($0)" }
    }

    var description: String { "\(status) \(String(decoding: body.prefix(300), as: UTF8.self))" }
}

/// Wall-clock time that passes only in `advance`.
final class FakeClock: Sendable {
    private let time = Mutex(1_795_794_199.0)

    func advance(_ seconds: Double) { time.withLock { $0 += seconds } }
    var wallClock: WallClock { WallClock { [self] in time.withLock { $0 } } }
}

/// Test-chosen probabilities for a fake forward pass, by SOP Instance UID (or by "UID/frame" for one frame
/// of a multi-frame object), and the slices it was given.
final class FakeModel: Sendable {
    private let state = Mutex<(table: [String: [Float]], seen: [String], frames: [String], fail: Bool)>(([:], [], [], false))

    func set(_ sop: String, frame: Int? = nil, _ probabilities: [Float]) {
        state.withLock { $0.table[frame.map { "\(sop)/\($0)" } ?? sop] = probabilities }
    }
    func failNext() { state.withLock { $0.fail = true } }
    var seen: [String] { state.withLock { $0.seen } }
    /// "UID/frame" of each slice seen.
    var seenFrames: [String] { state.withLock { $0.frames } }

    struct Failure: Error {}

    func classify(_ slices: [CTSlice]) throws -> [[Float]] {
        try state.withLock { state in
            state.seen += slices.map(\.sopInstanceUID)
            state.frames += slices.map { "\($0.sopInstanceUID)/\($0.frameNumber)" }
            if state.fail {
                state.fail = false
                throw Failure()
            }
            return slices.map {
                state.table["\($0.sopInstanceUID)/\($0.frameNumber)"] ?? state.table[$0.sopInstanceUID] ?? [Float](repeating: 0.01, count: 6)
            }
        }
    }
}
