import Foundation
import Testing

@testable import Service

/// `POST /v1/instances` and STOW-RS through the head check and handlers: what is
/// acknowledged is recorded, what is refused says why, and nothing else is stored.
@Suite struct IngestTests {
    static let ctImage = "1.2.840.10008.5.1.4.1.1.2"
    static let mrImage = "1.2.840.10008.5.1.4.1.1.4"

    @Test func anInstanceIsQueuedThenADuplicate() async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        let slices = Slices()
        let sop = Slices.uid()
        let data = slices.instance(sop: sop)
        let first = try await harness.post(instance: data)
        #expect(first.status == 202)
        let expected: NSDictionary = [
            "sopInstanceUID": sop, "studyInstanceUID": slices.study, "seriesInstanceUID": slices.series,
            "study": "/v1/studies/\(slices.study)", "instance": "/v1/instances/\(sop)",
        ]
        var queued = expected as! [String: Any]
        queued["status"] = "queued"
        #expect(try first.object() as NSDictionary == queued as NSDictionary)
        let again = try await harness.post(instance: data)
        #expect(again.status == 200)
        #expect(try again.object()["status"] as? String == "duplicate")
        let study = try await harness.get("/v1/studies/\(slices.study)").object()
        #expect((study["counts"] as? [String: Int])?["received"] == 1, "a duplicate is stored once")
        #expect(harness.context.pipeline.depth == 1)
    }

    @Test(arguments: [nil, "text/plain", "application/json", "application/octet-stream",
                      "multipart/related; type=\"application/dicom\"; boundary=x"])
    func otherMediaTypesAre415(contentType: String?) async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        let response = try await harness.request("POST", "/v1/instances", token: .ingest, contentType: contentType,
                                                 body: Slices().instance())
        #expect(response.problem == "415 unsupported-media-type")
        #expect(harness.context.pipeline.depth == 0)
    }

    @Test func mediaTypeParametersAndCaseAreAccepted() async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        let response = try await harness.request("POST", "/v1/instances", token: .ingest,
                                                 contentType: "Application/DICOM; charset=binary", body: Slices().instance())
        #expect(response.status == 202, "\(response)")
    }

    @Test func emptyAndNonDICOMBodiesAre400() async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        #expect(try await harness.post(instance: []).problem == "400 empty-body")
        #expect(try await harness.request("POST", "/v1/instances", token: .ingest, contentType: "application/dicom").problem
            == "400 empty-body")
        let text = Array(String(repeating: "this is not a DICOM file", count: 40).utf8)
        #expect(try await harness.post(instance: text).problem == "400 not-dicom")
        var truncated = Slices().instance()
        truncated.removeLast(40)
        #expect(try await harness.post(instance: truncated).status == 400)
        #expect((try await harness.get("/v1/studies").object()["studies"] as? [Any])?.isEmpty == true)
    }

    /// A router forwards the whole study: a well-formed MR is acknowledged (a 4xx would be retried
    /// for ever), recorded without triage, counted, and its study says it was not assessed.
    @Test func aNonCTInstanceIsStoredAndSkipped() async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        let slices = Slices()
        let response = try await harness.post(instance: slices.instance(modality: "MR"))
        #expect(response.status == 200)
        #expect(try response.object()["status"] as? String == "skipped")
        #expect(try response.object()["reason"] as? String == "not-ct")
        #expect(harness.context.pipeline.depth == 0, "a skipped instance never reaches the forward pass")
        let study = try await harness.get("/v1/studies/\(slices.study)").object()
        #expect(study["assessable"] as? Bool == false)
        #expect(study["notAssessableReason"] as? String == "no-triageable-series")
        #expect((study["counts"] as? [String: Int])?["skipped"] == 1)
        let series = try #require(study["series"] as? [[String: Any]])
        #expect(series.map { $0["role"] as? String } == ["skipped"] && series[0]["reason"] as? String == "not-ct")
        #expect((study["labels"] as? [[String: Any]])?.allSatisfy { $0["probability"] is NSNull } == true)
        let metrics = String(decoding: try await harness.get("/metrics", token: .admin).body, as: UTF8.self)
        #expect(metrics.contains("ich_instances_skipped_total{reason=\"not-ct\"} 1"))
    }

    /// The slice plane is recorded with each instance: two stacks tilted 12 degrees apart in one series are a warning.
    @Test func slicePlanesAreRecorded() async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        let slices = Slices()
        let tilted = "1\\0\\0\\0\\\(cos(12 * Double.pi / 180))\\\(-sin(12 * Double.pi / 180))"
        let parts = (0..<4).map { k in slices.instance(number: k + 1, z: 5 * Double(k), orientation: k < 2 ? "1\\0\\0\\0\\1\\0" : tilted) }
        #expect(try await harness.stow(parts).status == 200)
        let series = try #require((try await harness.get("/v1/studies/\(slices.study)").object()["series"] as? [[String: Any]])?.first)
        #expect((series["warnings"] as? [String])?.contains("mixed-orientation") == true, "\(series)")
    }

    @Test func stowOfAWholeStudyIs200() async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        let slices = Slices()
        let sops = (0..<3).map { _ in Slices.uid() }
        let response = try await harness.stow(sops.enumerated().map { slices.instance(sop: $1, number: $0 + 1, z: 5 * Double($0)) })
        #expect(response.status == 200)
        #expect(response.headers["Content-Type"] == "application/dicom+json")
        let body = try response.object()
        #expect(body["00081198"] == nil)
        let items = try #require((body["00081199"] as? [String: Any])?["Value"] as? [[String: Any]])
        #expect(items.map { ($0["00081155"] as? [String: Any])?["Value"] as? [String] } == sops.map { [$0] })
        #expect(items.allSatisfy { ($0["00081150"] as? [String: Any])?["Value"] as? [String] == [Self.ctImage] })
        #expect(((body["00081190"] as? [String: Any])?["Value"] as? [String])?.first == "/dicomweb/studies/\(slices.study)")
        #expect(harness.context.pipeline.depth == 3)
    }

    /// Well-formed instances are stored whatever their modality (the MR is skipped, not refused);
    /// malformed DICOM fails with 0xA900, non-DICOM with 0xC000.
    @Test func stowWithFailuresIs202() async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        let slices = Slices()
        let (ct, mr) = (Slices.uid(), Slices.uid())
        let badUID = slices.instance(sop: "1.2.3:4")
        let response = try await harness.stow([slices.instance(sop: ct), slices.instance(sop: mr, modality: "MR"), badUID,
                                               Array(String(repeating: "definitely not DICOM", count: 20).utf8)])
        #expect(response.status == 202, "\(response)")
        let body = try response.object()
        let items = try #require((body["00081199"] as? [String: Any])?["Value"] as? [[String: Any]])
        #expect(items.map { ($0["00081155"] as? [String: Any])?["Value"] as? [String] } == [[ct], [mr]])
        #expect((items[1]["00081150"] as? [String: Any])?["Value"] as? [String] == [Self.mrImage])
        let failed = try #require((body["00081198"] as? [String: Any])?["Value"] as? [[String: Any]])
        #expect(failed.map { ($0["00081197"] as? [String: Any])?["Value"] as? [Int] } == [[0xA900], [0xC000]])
        #expect(try await harness.get("/v1/instances/\(mr)").object()["skipReason"] as? String == "not-ct")
    }

    @Test func stowOfNothingUsableIs409() async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        let response = try await harness.stow([Array(String(repeating: "garbage", count: 100).utf8)])
        #expect(response.status == 409)
        #expect(response.headers["Content-Type"] == "application/dicom+json")
        #expect(try response.object()["00081199"] == nil)
    }

    /// PS3.18 10.5: into a study's URL, instances of another study fail with 0xA901 and are not stored.
    @Test func stowIntoAStudyRefusesOtherStudies() async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        let (mine, other) = (Slices(), Slices())
        let otherSOP = Slices.uid()
        let response = try await harness.stow([mine.instance(), other.instance(sop: otherSOP), mine.instance(z: 5)], study: mine.study)
        #expect(response.status == 202)
        let body = try response.object()
        #expect(((body["00081199"] as? [String: Any])?["Value"] as? [Any])?.count == 2)
        let failed = try #require((body["00081198"] as? [String: Any])?["Value"] as? [[String: Any]])
        #expect(failed.map { ($0["00081197"] as? [String: Any])?["Value"] as? [Int] } == [[0xA901]])
        #expect(try await harness.get("/v1/instances/\(otherSOP)").problem == "404 instance-not-found")
        let alone = try await harness.stow([other.instance()], study: mine.study)
        #expect(alone.status == 409)
    }

    @Test func stowWithoutTypeParameterOrQuotesOrPartContentType() async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        let slices = Slices()
        let body = Array("--simple-boundary-42\r\n\r\n".utf8) + slices.instance() + Array("\r\n--simple-boundary-42--\r\n".utf8)
        let response = try await harness.request("POST", "/dicomweb/studies", token: .ingest,
                                                 contentType: "multipart/related; boundary=simple-boundary-42", body: body)
        #expect(response.status == 200, "\(response)")
    }

    @Test func malformedMultipartIs400() async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        let data = Slices().instance()
        let contentType = "multipart/related; type=\"application/dicom\"; boundary=\"b0undary\""
        let bodies: [[UInt8]] = [
            Array("--b0undary\r\nContent-Type: application/dicom\r\n\r\n".utf8) + data,
            Array("--other\r\nContent-Type: application/dicom\r\n\r\n".utf8) + data + Array("\r\n--other--\r\n".utf8),
            Array("--b0undary--\r\n".utf8),
            (0..<2000).map { _ in UInt8.random(in: 0...255) },
        ]
        for body in bodies {
            let response = try await harness.request("POST", "/dicomweb/studies", token: .ingest, contentType: contentType, body: body)
            #expect(response.problem == "400 bad-multipart")
        }
        let (_, body) = Multipart.related([data])
        let noBoundary = try await harness.request("POST", "/dicomweb/studies", token: .ingest,
                                                   contentType: "multipart/related; type=\"application/dicom\"", body: body)
        #expect(noBoundary.problem == "400 bad-multipart")
        #expect(harness.context.pipeline.depth == 0)
    }

    @Test(arguments: ["application/dicom", "application/json", nil, "multipart/related; type=\"application/json\"; boundary=x",
                      "multipart/mixed; boundary=x"])
    func stowOfOtherMediaTypesIs415(contentType: String?) async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        let (_, body) = Multipart.related([Slices().instance()], boundary: "x")
        let response = try await harness.request("POST", "/dicomweb/studies", token: .ingest, contentType: contentType, body: body)
        #expect(response.problem == "415 unsupported-media-type")
    }

    /// The hard limit refuses uploads before their body is read, with Retry-After.
    @Test func aFullQueueIs503() async throws {
        let harness = try ServiceHarness(configure: { $0.queueHardLimit = 2 })
        defer { harness.close() }
        let slices = Slices()
        for z in 0..<2 { #expect(try await harness.post(instance: slices.instance(z: Double(z))).status == 202) }
        let refused = try await harness.post(instance: slices.instance(z: 9))
        #expect(refused.status == 503)
        #expect(refused.headers["Retry-After"] != nil)
    }

    /// Patient data in a refused or skipped upload never comes back in a response body.
    @Test func noResponseEchoesPatientData() async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        let marker = "PATIENT^SECRET"
        let slices = Slices()
        let responses = [
            try await harness.get("/v1/studies/\(marker)"), try await harness.get("/v1/studies?since=\(marker)"),
            try await harness.get("/v1/studies?cursor=\(marker)"), try await harness.get("/\(marker)", token: nil),
            try await harness.request("GET", "/v1/studies", authorization: "Bearer \(marker)"),
            try await harness.post(instance: Array(String(repeating: marker, count: 50).utf8)),
            try await harness.post(instance: slices.instance(modality: "MR", patientName: marker)),
            try await harness.request("POST", "/v1/instances", token: .ingest, contentType: "application/\(marker)", body: [1]),
            try await harness.request("POST", "/dicomweb/studies", token: .ingest,
                                      contentType: "multipart/related; type=\"application/dicom\"; boundary=\"\(marker)\"",
                                      body: Array(marker.utf8)),
            try await harness.stow([slices.instance(modality: "MR", patientName: marker), slices.instance(patientName: marker)]),
        ]
        for response in responses {
            #expect(!String(decoding: response.body, as: UTF8.self).contains("SECRET"), "\(response)")
        }
    }
}
