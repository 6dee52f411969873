import DICOMTestSupport
import Foundation

/// Small CT instances of one study for the service's tests, written byte by
/// byte (`DICOMWriter`), each with its own UIDs and position.
struct Slices {
    var study = Slices.uid()
    var series = Slices.uid()

    static func uid() -> String { "2.25.\(UInt64.random(in: 1...UInt64.max))\(UInt32.random(in: 0...UInt32.max))" }

    /// An axial slice at `z`; `modality`, `imageType` and `patientName` as a real study would vary them.
    func instance(sop: String = Slices.uid(), number: Int = 1, z: Double = 0, series: String? = nil,
                  modality: String = "CT", imageType: String = "ORIGINAL\\PRIMARY\\AXIAL",
                  patientName: String? = nil, priority: String? = nil, orientation: String = "1\\0\\0\\0\\1\\0") -> [UInt8] {
        var w = DICOMWriter.ct(rows: 8, columns: 8)
        w.string(0x0008, 0x0008, "CS", imageType)
        w.string(0x0008, 0x0018, "UI", sop)
        w.string(0x0008, 0x0060, "CS", modality)
        if modality != "CT" { w.string(0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.4") }
        w.string(0x0020, 0x000D, "UI", study)
        w.string(0x0020, 0x000E, "UI", series ?? self.series)
        w.string(0x0020, 0x0013, "IS", String(number))
        w.string(0x0020, 0x0032, "DS", "-125\\-120\\\(z)")
        w.string(0x0020, 0x0037, "DS", orientation)
        w.string(0x0018, 0x0050, "DS", "5")
        if let patientName { w.string(0x0010, 0x0010, "PN", patientName) }
        if let priority { w.string(0x0040, 0x1003, "SH", priority) }
        return w.bytes()
    }
}

extension Slices {
    /// An Enhanced CT object of this study: `frames` 3x4 frames at z = 10, 20... (`DICOMWriter.enhancedCT`).
    func enhanced(sop: String = Slices.uid(), frames: Int) -> [UInt8] {
        var w = DICOMWriter.enhancedCT(intercepts: [Double](repeating: -1024, count: frames))
        w.string(0x0008, 0x0018, "UI", sop)
        w.string(0x0020, 0x000D, "UI", study)
        w.string(0x0020, 0x000E, "UI", series)
        return w.bytes()
    }
}

enum Multipart {
    /// A multipart/related body of DICOM parts, as STOW-RS clients send it.
    static func related(_ parts: [[UInt8]], boundary: String = "b-\(UUID().uuidString)") -> (contentType: String, body: [UInt8]) {
        var body: [UInt8] = []
        for part in parts {
            body += Array("--\(boundary)\r\nContent-Type: application/dicom\r\n\r\n".utf8) + part + Array("\r\n".utf8)
        }
        body += Array("--\(boundary)--\r\n".utf8)
        return ("multipart/related; type=\"application/dicom\"; boundary=\"\(boundary)\"", body)
    }
}
