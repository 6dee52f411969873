import Foundation
import HTTPClient
import Testing

@testable import ichctl

@Suite struct ByteSizeTests {
    @Test(arguments: [
        ("64MiB", 64 << 20), ("512KiB", 512 << 10), ("1GiB", 1 << 30), ("2MB", 2_000_000), ("3kB", 3000),
        ("1000", 1000), ("7B", 7), (" 5 MiB ", 5 << 20),
    ])
    func parses(_ text: String, _ bytes: Int) {
        #expect(parseByteSize(text) == bytes, "\(text)")
    }

    @Test(arguments: ["", "MiB", "-1", "1.5MiB", "ten", "99999999999999999GiB"])
    func refuses(_ text: String) {
        #expect(parseByteSize(text) == nil, "\(text)")
    }
}

@Suite struct RequestPlanTests {
    let framing = MultipartRelated(boundary: "b")

    func files(_ sizes: [Int]) -> [DICOMFile] {
        sizes.enumerated().map { DICOMFile(path: "/f\($0.offset)", size: $0.element, study: "1.2", sop: "1.2.\($0.offset)") }
    }

    @Test func everyRequestFitsAndFilesKeepTheirOrder() {
        let input = files([400, 300, 500, 100, 100, 900, 50])
        let limit = 1000
        let requests = planRequests(input, maxBytes: limit, framing: framing)
        #expect(requests.flatMap { $0 } == input)
        for request in requests {
            let size = framing.body(request).reduce(0) { $0 + $1.size }
            #expect(size == request.reduce(0) { $0 + $1.size } + framing.overhead(parts: request.count))
            #expect(size <= limit, "\(request.map(\.size))")
        }
        #expect(requests.map { $0.map(\.size) } == [[400, 300], [500, 100, 100], [900], [50]])
    }

    @Test func aFileOverTheLimitTravelsAlone() {
        let requests = planRequests(files([10, 5000, 10]), maxBytes: 1000, framing: framing)
        #expect(requests.map { $0.map(\.size) } == [[10], [5000], [10]])
    }

    @Test func bodyIsMultipartRelatedWithOnePartPerFile() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ichctl-tests-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let paths = ["x", "y"].map { folder.appendingPathComponent($0).path }
        for (path, text) in zip(paths, ["AAA", "BB"]) { _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8)) }
        let body = framing.body(zip(paths, [3, 2]).map { DICOMFile(path: $0, size: $1, study: "1", sop: "1.1") })
        var bytes: [UInt8] = []
        for segment in body {
            switch segment {
            case .bytes(let b): bytes += b
            case .file(let path, _): bytes += [UInt8](FileManager.default.contents(atPath: path)!)
            }
        }
        let expected = "--b\r\nContent-Type: application/dicom\r\n\r\nAAA\r\n--b\r\nContent-Type: application/dicom\r\n\r\nBB\r\n--b--\r\n"
        #expect(String(decoding: bytes, as: UTF8.self) == expected)
        #expect(framing.contentType == "multipart/related; type=\"application/dicom\"; boundary=b")
    }
}

@Suite struct StowResultTests {
    @Test func sortsStoredDuplicatesAndFailures() throws {
        let json = """
            {"00081190": {"vr": "UR", "Value": ["http://h/dicomweb/studies/1.2"]},
             "00081199": {"vr": "SQ", "Value": [
                {"00081150": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]}, "00081155": {"vr": "UI", "Value": ["1.2.3"]},
                 "00081190": {"vr": "UR", "Value": ["http://h/v1/instances/1.2.3"]}},
                {"00081150": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]}, "00081155": {"vr": "UI", "Value": ["1.2.4"]},
                 "00081190": {"vr": "UR", "Value": ["http://h/v1/instances/1.2.4"]}, "00081196": {"vr": "US", "Value": [45070]}}]},
             "00081198": {"vr": "SQ", "Value": [
                {"00081155": {"vr": "UI", "Value": ["1.2.5"]}, "00081197": {"vr": "US", "Value": [43264]}},
                {"00081197": {"vr": "US", "Value": [49152]}}]}}
            """
        let result = try #require(StowResult(json: Array(json.utf8)))
        #expect(result.stored == ["1.2.3"])
        #expect(result.duplicates == ["1.2.4"])
        #expect(result.failed.map(\.sop) == ["1.2.5", nil])
        #expect(result.failed.map(\.reason) == [43264, 49152])
        #expect(failureReasonText(43264) == "0xA900 not CT or cannot be processed")
        #expect(failureReasonText(0xA7FF) == "0xA7FF")
    }

    @Test func emptyObjectIsNothingAndNonJSONIsNil() {
        #expect(StowResult(json: Array("{}".utf8)) == StowResult())
        #expect(StowResult(json: Array("<html>".utf8)) == nil)
        #expect(StowResult(json: Array("[1]".utf8)) == nil)
    }
}

@Suite struct RetryPolicyTests {
    @Test(arguments: [(408, true), (429, true), (500, true), (502, true), (503, true), (504, true),
                      (501, false), (505, false), (400, false), (404, false), (413, false), (200, false)])
    func retryableStatuses(_ status: Int, _ retryable: Bool) {
        #expect(RetryPolicy.isRetryable(status: status) == retryable, "\(status)")
    }

    @Test func backoffDoublesWithinJitterAndIsCapped() {
        let policy = RetryPolicy(retries: 10, baseDelay: 0.5, maxDelay: 5)
        for attempt in 1...8 {
            let ceiling = min(5, 0.5 * Double(1 << (attempt - 1)))
            #expect(policy.delay(attempt: attempt, retryAfter: nil, unit: 0) == ceiling / 2, "attempt \(attempt)")
            #expect(policy.delay(attempt: attempt, retryAfter: nil, unit: 0.999) <= ceiling, "attempt \(attempt)")
        }
    }

    @Test func retryAfterWinsUpToTheCap() {
        let policy = RetryPolicy(retries: 3, baseDelay: 0.5, maxDelay: 10)
        #expect(policy.delay(attempt: 1, retryAfter: "7", unit: 0.5) == 7)
        #expect(policy.delay(attempt: 1, retryAfter: "120", unit: 0.5) == 10)
        #expect(policy.delay(attempt: 1, retryAfter: "0", unit: 0.5) == 0)
        // An HTTP date or garbage falls back to the backoff.
        #expect(policy.delay(attempt: 2, retryAfter: "Wed, 21 Oct 2015 07:28:00 GMT", unit: 0) == 0.5)
    }
}

@Suite struct TableTests {
    @Test func studyTableShowsEveryLabelAndTheNotice() {
        let labels: [[String: Any]] = ["any", "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"]
            .enumerated().map { index, name in
                ["label": name, "probability": index == 0 ? 0.9 : 0.1, "threshold": 0.5, "positive": index == 0,
                 "slicesAboveThreshold": index == 0 ? 2 : 0,
                 "maxSlice": ["sopInstanceUID": "1.2.\(index)", "frameNumber": index == 5 ? 40 : 1, "instanceNumber": index + 1]]
            }
        let study: [String: Any] = [
            "studyInstanceUID": "1.2", "status": "complete",
            "counts": ["received": 3, "processed": 3, "failed": 0, "queued": 0], "labels": labels,
            "model": ["name": "m", "version": "1", "architecture": "resnet50", "clinicalUse": false,
                      "trainedOn": "x", "notice": "Trained on synthetic data; not for clinical use."],
        ]
        let lines = studyTable(study).split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.hasPrefix("any ") && $0.contains("0.900") && $0.contains("POSITIVE") && $0.hasSuffix("#1 1.2.0") })
        #expect(lines.contains { $0.hasPrefix("subdural ") && $0.contains("negative") && $0.hasSuffix("#6 1.2.5 frame 40") })
        #expect(lines.last == "model: m 1 (resnet50). Notice: Trained on synthetic data; not for clinical use.")
    }

    @Test func modelLineIsShownEvenWithoutANotice() {
        #expect(modelLine(nil) == "model: (not given by the server)")
        #expect(modelLine(["name": "m", "version": "2", "architecture": "inception_v3", "clinicalUse": true, "notice": ""])
            == "model: m 2 (inception_v3). Notice: marked fit for clinical use")
    }

    @Test func rowsAreAligned() {
        #expect(alignedRows([["a", "bb", "c"], ["ccc", "d", "e"]]) == ["a    bb  c", "ccc  d   e"])
    }
}

@Suite struct CurlTests {
    @Test func anUnreachablePortIsAConnectFailure() {
        do {
            _ = try Curl.perform(CurlRequest(url: "http://127.0.0.1:9/healthz", timeout: 5, connectTimeout: 2))
            Issue.record("expected a connection failure")
        } catch {
            #expect(error.isConnectFailure, "\(error)")
            #expect(error.description.hasPrefix("libcurl error 7: "))
        }
    }
}
