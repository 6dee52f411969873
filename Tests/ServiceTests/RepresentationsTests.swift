import Foundation
@testable import Storage
import Testing

@testable import Service

/// `GET /v1/instances/{sop}` of a multi-frame instance: the top level sums up its frames.
@Suite struct RepresentationsTests {
    static func frame(_ number: Int, _ state: InstanceState, any: Float? = nil, error: String? = nil) -> InstanceRecord {
        InstanceRecord(
            sopInstanceUID: "1.2.3", frameNumber: number, studyInstanceUID: "1", seriesInstanceUID: "1.1",
            sopClassUID: "1.2.840.10008.5.1.4.1.1.2.1", instanceNumber: 1, position: 10 * Double(number), receivedAt: 0,
            state: state, probabilities: any.map { [$0, 1 - $0, 0, 0, 0, 0] }, errorType: error, errorDetail: error.map { "\($0)!" })
    }

    func object(_ frames: [InstanceRecord]) throws -> [String: Any] {
        let body = Representation.instance(frames, model: .null).serialized()
        return try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])
    }

    @Test(arguments: [
        ([InstanceState.done, .queued, .failed], "queued"),
        ([.failed, .done, .done], "done"),
        ([.failed, .failed], "failed"),
        ([.skipped, .skipped], "skipped"),
        ([.done], "done"),
    ])
    func statusOfTheWholeObject(states: [InstanceState], expected: String) throws {
        let frames = states.enumerated().map { k, state in
            Self.frame(k + 1, state, any: state == .done ? 0.25 * Float(k + 1) : nil, error: state == .failed ? "corrupt-pixel-data" : nil)
        }
        let instance = try object(frames)
        #expect(instance["status"] as? String == expected)
        #expect(instance["numberOfFrames"] as? Int == frames.count)
        #expect((instance["frames"] as? [[String: Any]])?.compactMap { $0["status"] as? String }
                == states.map { Representation.state($0) })
        #expect(instance["position"] as? Double == 10, "frame 1's")
    }

    @Test func probabilitiesAreTheMaximaOverFramesAndAFailureShowsOnlyWithoutAResult() throws {
        let mixed = try object([Self.frame(1, .done, any: 0.2), Self.frame(2, .failed, error: "x"), Self.frame(3, .done, any: 0.7)])
        let p = try #require(mixed["probabilities"] as? [String: Double])
        #expect(abs(p["any"]! - 0.7) < 1e-6 && abs(p["epidural"]! - 0.8) < 1e-6, "each label's own maximum")
        #expect(mixed["error"] is NSNull)
        let failed = try object([Self.frame(1, .failed, error: "a"), Self.frame(2, .failed, error: "b")])
        #expect((failed["error"] as? [String: Any])?["type"] as? String == "a")
        #expect(failed["probabilities"] is NSNull)
    }
}
