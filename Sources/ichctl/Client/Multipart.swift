import HTTPClient

/// STOW-RS request bodies: `multipart/related; type="application/dicom"`, one part per
/// Part-10 file, the files read from disk while sending.
struct MultipartRelated {
    let boundary: String

    init(boundary: String = "ichctl-" + (0..<4).map { _ in String(UInt32.random(in: .min ... .max), radix: 16) }.joined()) {
        self.boundary = boundary
    }

    var contentType: String { "multipart/related; type=\"application/dicom\"; boundary=\(boundary)" }

    /// Bytes the framing adds around `parts` files.
    func overhead(parts: Int) -> Int {
        parts * partHead.count + parts * 2 + closing.count
    }

    func body(_ files: [DICOMFile]) -> [BodySegment] {
        var segments: [BodySegment] = []
        for file in files {
            segments.append(.bytes(partHead))
            segments.append(.file(path: file.path, size: file.size))
            segments.append(.bytes(Array("\r\n".utf8)))
        }
        segments.append(.bytes(closing))
        return segments
    }

    private var partHead: [UInt8] { Array("--\(boundary)\r\nContent-Type: application/dicom\r\n\r\n".utf8) }
    private var closing: [UInt8] { Array("--\(boundary)--\r\n".utf8) }
}

/// One DICOM file found by `push`: where it is, its size and the UIDs read from it.
struct DICOMFile: Sendable, Equatable {
    var path: String
    var size: Int
    var study: String
    var sop: String
}

/// Splits one study's files into requests of at most `maxBytes` (framing included); a
/// file larger than that on its own travels alone.
func planRequests(_ files: [DICOMFile], maxBytes: Int, framing: MultipartRelated) -> [[DICOMFile]] {
    var requests: [[DICOMFile]] = []
    var current: [DICOMFile] = []
    var bytes = 0
    for file in files {
        let added = file.size + framing.overhead(parts: current.count + 1) - framing.overhead(parts: current.count)
        if !current.isEmpty, bytes + added + framing.overhead(parts: 0) > maxBytes {
            requests.append(current)
            current = []
            bytes = 0
        }
        current.append(file)
        bytes += file.size + framing.overhead(parts: current.count) - framing.overhead(parts: current.count - 1)
    }
    if !current.isEmpty { requests.append(current) }
    return requests
}
