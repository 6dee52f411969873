import Foundation
import HTTP
import Storage
import Testing

@testable import Service

@Suite struct IngestRoutesTests {
    typealias Outcome = IngestRoutes.PartOutcome
    static let stored = Outcome.stored(sopClass: "1.2.840.10008.5.1.4.1.1.2", sop: "1.2.3.1", study: "1.2.3", duplicate: false)
    static let duplicate = Outcome.stored(sopClass: "1.2.840.10008.5.1.4.1.1.2", sop: "1.2.3.2", study: "1.2.3", duplicate: true)
    static let failed = Outcome.failed(sopClass: nil, sop: nil, reason: .cannotUnderstand)

    /// PS3.18 10.5.3: 200 all stored, 202 stored with failures or warnings, 409 none stored.
    @Test(arguments: [
        ([stored], 200), ([stored, duplicate], 202), ([stored, failed], 202), ([duplicate], 202), ([failed], 409), ([failed, failed], 409),
    ] as [([Outcome], Int)])
    func stowStatus(outcomes: [Outcome], status: Int) {
        #expect(IngestRoutes.stowResponse(outcomes, urlStudy: nil, base: "").status == status)
    }

    @Test func stowBodyUsesTheDICOMJSONModel() throws {
        let response = IngestRoutes.stowResponse([Self.stored, Self.duplicate, Self.failed], urlStudy: nil, base: "")
        #expect(response.headers["Content-Type"] == "application/dicom+json")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
        #expect((json["00081190"] as? [String: Any])?["Value"] as? [String] == ["/dicomweb/studies/1.2.3"])
        let referenced = try #require((json["00081199"] as? [String: Any])?["Value"] as? [[String: Any]])
        #expect(referenced.count == 2)
        #expect((referenced[0]["00081155"] as? [String: Any])?["Value"] as? [String] == ["1.2.3.1"])
        #expect(referenced[0]["00081196"] == nil)
        #expect((referenced[1]["00081196"] as? [String: Any])?["Value"] as? [Int] == [IngestRoutes.duplicateWarning])
        let failed = try #require((json["00081198"] as? [String: Any])?["Value"] as? [[String: Any]])
        #expect((failed[0]["00081197"] as? [String: Any])?["Value"] as? [Int] == [0xC000])
        #expect((failed[0]["00081197"] as? [String: Any])?["vr"] as? String == "US")
    }

    @Test func retrieveURLsStartWithThePublicURL() throws {
        let response = IngestRoutes.stowResponse([Self.stored], urlStudy: nil, base: "https://ich.example.org/triage")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
        #expect((json["00081190"] as? [String: Any])?["Value"] as? [String] == ["https://ich.example.org/triage/dicomweb/studies/1.2.3"])
        let referenced = try #require((json["00081199"] as? [String: Any])?["Value"] as? [[String: Any]])
        #expect((referenced[0]["00081190"] as? [String: Any])?["Value"] as? [String] == ["https://ich.example.org/triage/v1/instances/1.2.3.1"])
    }
}

@Suite struct StudyRoutesTests {
    @Test(arguments: [(0.25, "1.2.3"), (-1, "1.2.840.113619.2.55"), (0.999999, "9")])
    func cursorRoundTrips(any: Double, uid: String) {
        let cursor = ResultStore.Cursor(anyMaximum: any, studyInstanceUID: uid)
        #expect(StudyRoutes.decodeCursor(StudyRoutes.encodeCursor(cursor)) == cursor)
    }

    @Test(arguments: ["", "!!!", "bm90LWEtY3Vyc29y", String(repeating: "A", count: 300), "aW5mfDEuMg"])
    func garbageCursorsAreRejected(text: String) {
        #expect(StudyRoutes.decodeCursor(text) == nil, "cursor \(text.prefix(20))")
    }

    @Test func timesRoundTripWithAndWithoutFractions() {
        #expect(Representation.parseTime("2026-11-27T15:43:19Z") == 1_795_794_199)
        #expect(Representation.parseTime("2026-11-27T15:43:19.250Z") == 1_795_794_199.25)
        #expect(Representation.parseTime("yesterday") == nil)
        #expect(Representation.time(1_795_794_199.25) == .string("2026-11-27T15:43:19.250Z"))
        #expect(Representation.time(1_795_794_199) == .string("2026-11-27T15:43:19.000Z"))
        #expect(Representation.parseTime("2026-11-27T16:43:19+01:00") == 1_795_794_199, "offsets are honoured")
    }
}

@Suite struct AuthTests {
    @Test func tokensAreLongRandomAndURLSafe() {
        let a = Auth.makeToken(), b = Auth.makeToken()
        #expect(a != b)
        #expect(a.hasPrefix("ich_") && a.count == 47)
        #expect(a.dropFirst(4).allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" })
    }

    @Test func constantTimeComparison() {
        #expect(Auth.constantTimeEqual([1, 2, 3], [1, 2, 3]))
        #expect(!Auth.constantTimeEqual([1, 2, 3], [1, 2, 4]))
        #expect(!Auth.constantTimeEqual([1, 2, 3], [1, 2]))
    }

    @Test(arguments: [(Scope.admin, Scope.read, true), (.admin, .ingest, true), (.read, .read, true), (.read, .ingest, false),
                      (.ingest, .read, false), (.ingest, .admin, false), (.read, .admin, false)])
    func scopes(granted: Scope, needed: Scope, allowed: Bool) {
        #expect(granted.allows(needed) == allowed)
    }
}

