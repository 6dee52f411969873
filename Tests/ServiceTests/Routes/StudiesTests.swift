import Foundation
import Storage
import Testing

@testable import Service

/// The study resource, the worklist and deletion, over results that a fake
/// forward pass (`FakeModel`) produced with probabilities the test chose.
@Suite struct StudiesTests {
    static let labels = ["any", "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"]

    /// A one-series study of `probabilities.count` slices, posted and processed.
    static func study(_ harness: ServiceHarness, _ model: FakeModel, _ probabilities: [[Float]]) async throws -> String {
        let slices = Slices()
        var parts: [[UInt8]] = []
        for (k, p) in probabilities.enumerated() {
            let sop = Slices.uid()
            model.set(sop, p)
            parts.append(slices.instance(sop: sop, number: k + 1, z: 5 * Double(k)))
        }
        #expect(try await harness.stow(parts).status == 200)
        _ = try await harness.study(slices.study)
        return slices.study
    }

    static func any(_ value: Float) -> [Float] { [value, 0.01, 0.01, 0.01, 0.01, 0.01] }

    @Test(arguments: ["wait=abc", "wait=-1", "wait=121", "wait=nan", "wait=inf", "wait="])
    func invalidWaitIs400(query: String) async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        let slices = Slices()
        #expect(try await harness.post(instance: slices.instance()).status == 202)
        #expect(try await harness.get("/v1/studies/\(slices.study)?\(query)").problem == "400 invalid-parameter")
    }

    @Test(arguments: ["limit=0", "limit=201", "limit=ten", "limit=1.5", "positive=yes", "positive=1", "assessable=no",
                      "since=yesterday", "since=2025-01-31", "cursor=%25%25", "cursor=bm90LWEtY3Vyc29y"])
    func invalidWorklistParametersAre400(query: String) async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        #expect(try await harness.get("/v1/studies?\(query)").problem == "400 invalid-parameter")
    }

    @Test func unknownQueryParametersAreIgnored() async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        #expect(try await harness.get("/v1/studies?colour=blue&limit=3").status == 200)
        #expect(try await harness.get("/healthz?x=1", token: nil).status == 200)
    }

    @Test func unknownStudiesAndInstancesAre404() async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        let uid = Slices.uid()
        #expect(try await harness.get("/v1/studies/\(uid)").problem == "404 study-not-found")
        #expect(try await harness.get("/v1/studies/\(uid)?wait=0.1").problem == "404 study-not-found")
        #expect(try await harness.get("/v1/instances/\(uid)").problem == "404 instance-not-found")
    }

    /// Each label is the maximum over the slices, with the first slice (in order) that reaches
    /// it and the count at or above the threshold; slices come back ordered along z.
    @Test func aStudysLabelsAreItsSlicesMaxima() async throws {
        let model = FakeModel()
        let harness = try ServiceHarness(classify: model.classify)
        defer { harness.close() }
        let thresholds = harness.context.manifest.thresholds
        let values: [[Float]] = [
            [0.2, 0.30, 0.1, 0.01, 0.5, 0.1], [0.99995, 0.1, 0.2, 0.06, 0.3, 0.2], [0.4, 0.30, 0.9, 0.07, 0.1, 0.3],
        ]
        let uid = try await Self.study(harness, model, values)
        let study = try await harness.study(uid)
        #expect(study["status"] as? String == "complete")
        #expect(study["assessable"] as? Bool == true)
        let slices = try #require(study["slices"] as? [[String: Any]])
        #expect(slices.map { $0["position"] as? Double } == [0, 5, 10])
        let labels = try #require(study["labels"] as? [[String: Any]])
        #expect(labels.map { $0["label"] as? String } == Self.labels)
        for (i, entry) in labels.enumerated() {
            let column = values.map { Double($0[i]) }
            let top = column.max()!
            let first = column.firstIndex(of: top)!
            #expect(abs((entry["probability"] as? Double ?? -1) - top) < 1e-6, "\(Self.labels[i])")
            #expect((entry["maxSlice"] as? [String: Any])?["sopInstanceUID"] as? String == slices[first]["sopInstanceUID"] as? String)
            #expect(entry["slicesAboveThreshold"] as? Int == column.filter { $0 >= thresholds[i] }.count)
            #expect(entry["positive"] as? Bool == (top >= thresholds[i]))
        }
        // epidural: 0.30 on two slices, the first in order is named
        #expect(labels[1]["slicesAboveThreshold"] as? Int == 2)
        let instance = try await harness.get("/v1/instances/\(slices[1]["sopInstanceUID"] as! String)").object()
        #expect(instance["status"] as? String == "done")
        #expect(abs(((instance["probabilities"] as? [String: Double])?["any"] ?? 0) - 0.99995) < 1e-6)
        #expect((study["model"] as? [String: Any])?["clinicalUse"] as? Bool == false)
    }

    @Test func worklistOrderFiltersAndPaging() async throws {
        let model = FakeModel()
        let harness = try ServiceHarness(classify: model.classify)
        defer { harness.close() }
        var expected: [(uid: String, any: Double)] = []
        for any: Float in [0.3, 0.99999, 0.7, 0.99990, 0.05] {
            expected.append((try await Self.study(harness, model, [Self.any(any / 2), Self.any(any)]), Double(any)))
        }
        let skipped = Slices()
        #expect(try await harness.post(instance: skipped.instance(modality: "MR")).status == 200)
        expected.sort { ($0.any, $1.uid) > ($1.any, $0.uid) }
        let full = try await harness.get("/v1/studies?limit=200").object()
        let rows = try #require(full["studies"] as? [[String: Any]])
        #expect(rows.map { $0["studyInstanceUID"] as? String } == expected.map(\.uid) + [skipped.study],
                "by any probability, highest first; not assessable last")
        #expect(full["nextCursor"] is NSNull)
        for limit in 1...3 {
            #expect(try await pages(harness, "", limit: limit) == expected.map(\.uid) + [skipped.study], "limit=\(limit)")
        }
        let threshold = harness.context.manifest.thresholds[0]
        #expect(try await pages(harness, "positive=true", limit: 1) == expected.filter { $0.any >= threshold }.map(\.uid))
        #expect(try await pages(harness, "assessable=false", limit: 5) == [skipped.study])
        #expect(try await pages(harness, "since=2999-01-01T00:00:00Z", limit: 5) == [])
        #expect(try await pages(harness, "since=2000-01-01T00:00:00%2B01:00", limit: 200).count == 6)
    }

    /// Every page of the worklist from the first to the last.
    func pages(_ harness: ServiceHarness, _ query: String, limit: Int) async throws -> [String] {
        var uids: [String] = []
        var cursor: String?
        repeat {
            let target = "/v1/studies?limit=\(limit)" + (query.isEmpty ? "" : "&\(query)") + (cursor.map { "&cursor=\($0)" } ?? "")
            let page = try await harness.get(target).object()
            let rows = try #require(page["studies"] as? [[String: Any]])
            #expect(rows.count <= limit)
            uids += rows.compactMap { $0["studyInstanceUID"] as? String }
            cursor = page["nextCursor"] as? String
        } while cursor != nil && uids.count < 1000
        return uids
    }

    @Test func anOperatorSetsAStudysPriority() async throws {
        let harness = try ServiceHarness()
        defer { harness.close() }
        let slices = Slices()
        #expect(try await harness.post(instance: slices.instance()).status == 202)
        let target = "/v1/studies/\(slices.study)/priority"
        func put(_ body: String, _ contentType: String = "application/json", token: Scope = .admin) async throws -> Response {
            try await harness.request("PUT", target, token: token, contentType: contentType, body: Array(body.utf8))
        }
        #expect(try await harness.get("/v1/studies/\(slices.study)").object()["urgent"] as? Bool == false)
        let set = try await put(#"{"urgent": true}"#)
        #expect(set.status == 200)
        #expect(try set.object() as NSDictionary == ["studyInstanceUID": slices.study, "urgent": true])
        #expect(try await harness.get("/v1/studies/\(slices.study)").object()["urgent"] as? Bool == true)
        let row = try #require((try await harness.get("/v1/studies").object()["studies"] as? [[String: Any]])?.first)
        #expect(row["urgent"] as? Bool == true)
        #expect(try await put(#"{"urgent": false}"#).status == 200)
        #expect(try await harness.get("/v1/studies/\(slices.study)").object()["urgent"] as? Bool == false)
        for bad in [#"{"urgent": 1}"#, #"{"urgent": "yes"}"#, "{}", "[true]", "urgent"] {
            #expect(try await put(bad).problem == "400 invalid-body", "\(bad)")
        }
        #expect(try await put(#"{"urgent": true}"#, "text/plain").problem == "415 unsupported-media-type")
        #expect(try await put(#"{"urgent": true}"#, token: .read).problem == "403 forbidden")
        #expect(try await harness.request("PUT", "/v1/studies/\(Slices.uid())/priority", token: .admin,
                                          contentType: "application/json", body: Array(#"{"urgent": true}"#.utf8)).problem
            == "404 study-not-found")
        let actions = try harness.context.reader.sync { db in try AuditLog.entries(db, study: slices.study).map(\.action) }
        #expect(actions.filter { $0.hasSuffix("prioritize-study") } == ["prioritize-study", "deprioritize-study"])
    }

    @Test func deletionIsForAdminsThenTheStudyIsGone() async throws {
        let model = FakeModel()
        let harness = try ServiceHarness(classify: model.classify)
        defer { harness.close() }
        let uid = try await Self.study(harness, model, [Self.any(0.2), Self.any(0.4)])
        let sops = try #require((try await harness.study(uid)["slices"] as? [[String: Any]])?.compactMap { $0["sopInstanceUID"] as? String })
        #expect(try await harness.request("DELETE", "/v1/studies/\(uid)", token: .read).problem == "403 forbidden")
        #expect(try await harness.request("DELETE", "/v1/studies/\(uid)", token: .ingest).problem == "403 forbidden")
        let deleted = try await harness.request("DELETE", "/v1/studies/\(uid)", token: .admin)
        #expect(deleted.status == 204 && deleted.body.isEmpty)
        #expect(try await harness.get("/v1/studies/\(uid)").problem == "404 study-not-found")
        for sop in sops { #expect(try await harness.get("/v1/instances/\(sop)").problem == "404 instance-not-found") }
        #expect(try await harness.request("DELETE", "/v1/studies/\(uid)", token: .admin).problem == "404 study-not-found")
        #expect(try await pages(harness, "", limit: 200).isEmpty)
    }
}
