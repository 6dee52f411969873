import ArgumentParser
import DICOM
import Foundation

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print each file's DICOM metadata and Hounsfield statistics, or why it cannot be decoded.",
        discussion: """
            Exits non-zero when any file fails. Hounsfield statistics use the modality LUT only (no corrections). \
            A multi-frame object (Enhanced CT) lists each frame with its position, rescale and statistics; the \
            top level describes frame 1.
            """
    )

    @Flag(help: "One JSON object per file and line.")
    var json = false

    @Argument(help: "DICOM files.")
    var files: [String]

    func run() throws {
        var failures = 0
        for file in files {
            let result = Result { () throws(InputError) in try decodeFrames(file) }
            if case .failure = result { failures += 1 }
            print(json ? jsonLine(file: file, result) : text(file: file, result))
        }
        if failures > 0 { throw ExitCode(1) }
    }

    private func jsonLine(file: String, _ result: Result<[CTSlice], InputError>) -> String {
        var object: [String: Any] = ["file": file]
        switch result {
        case .success(let frames):
            let slice = frames[0]
            let stats = frames.map { HounsfieldStatistics($0.hounsfieldUnits()) }
            object["study_instance_uid"] = slice.studyInstanceUID
            object["series_instance_uid"] = slice.seriesInstanceUID
            object["sop_instance_uid"] = slice.sopInstanceUID
            object["sop_class_uid"] = slice.sopClassUID ?? NSNull()
            object["modality"] = slice.modality ?? NSNull()
            object["transfer_syntax_uid"] = slice.transferSyntaxUID
            object["instance_number"] = slice.instanceNumber ?? NSNull()
            object["image_position_patient"] = slice.imagePositionPatient ?? NSNull()
            object["image_orientation_patient"] = slice.imageOrientationPatient ?? NSNull()
            object["pixel_spacing"] = slice.pixelSpacing ?? NSNull()
            object["rows"] = slice.rows
            object["columns"] = slice.columns
            object["bits_allocated"] = slice.bitsAllocated
            object["bits_stored"] = slice.bitsStored
            object["pixel_representation"] = slice.pixelRepresentation.rawValue
            object["photometric_interpretation"] = slice.photometricInterpretation.rawValue
            object["rescale_slope"] = slice.rescaleSlope
            object["rescale_intercept"] = slice.rescaleIntercept
            object["pixel_padding_value"] = slice.pixelPaddingValue ?? NSNull()
            object["window"] = slice.storedWindow.map { ["center": $0.center, "width": $0.width] } ?? NSNull()
            object["hu"] = stats[0].json
            object["number_of_frames"] = frames.count
            object["frames"] = zip(frames, stats).map { frame, stats -> [String: Any] in
                [
                    "frame_number": frame.frameNumber,
                    "image_position_patient": frame.imagePositionPatient ?? NSNull(),
                    "image_orientation_patient": frame.imageOrientationPatient ?? NSNull(),
                    "rescale_slope": frame.rescaleSlope, "rescale_intercept": frame.rescaleIntercept,
                    "hu": stats.json,
                ]
            }
        case .failure(let error):
            object["error"] = ["type": error.type, "detail": error.detail]
        }
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self)
    }

    private func text(file: String, _ result: Result<[CTSlice], InputError>) -> String {
        switch result {
        case .failure(let error):
            return "\(file): error \(error.type): \(error.detail)"
        case .success(let frames):
            let slice = frames[0]
            let perFrame = frames.map { HounsfieldStatistics($0.hounsfieldUnits()) }
            let stats = perFrame[0]
            func list(_ values: [Double]?) -> String { values.map { $0.map { "\($0)" }.joined(separator: "\\") } ?? "-" }
            let frameLines = frames.count == 1 ? "" : "\n  frames             \(frames.count)" + zip(frames, perFrame).map { frame, stats in
                "\n    \(frame.frameNumber)  position \(list(frame.imagePositionPatient))   intercept \(frame.rescaleIntercept)"
                    + "   HU min/max/mean \(stats.min) / \(stats.max) / \(stats.mean)"
            }.joined()
            return """
                \(file)
                  study/series/sop   \(slice.studyInstanceUID) / \(slice.seriesInstanceUID) / \(slice.sopInstanceUID)
                  modality           \(slice.modality ?? "-")   instance \(slice.instanceNumber.map(String.init) ?? "-")
                  transfer syntax    \(slice.transferSyntaxUID)
                  size               \(slice.rows)x\(slice.columns), bits \(slice.bitsStored)/\(slice.bitsAllocated), \(slice.pixelRepresentation), \(slice.photometricInterpretation.rawValue)
                  position           \(list(slice.imagePositionPatient))   spacing \(list(slice.pixelSpacing))
                  rescale            slope \(slice.rescaleSlope) intercept \(slice.rescaleIntercept)   padding \(slice.pixelPaddingValue.map(String.init) ?? "-")
                  HU min/max/mean    \(stats.min) / \(stats.max) / \(stats.mean)
                """ + frameLines
        }
    }
}

struct HounsfieldStatistics {
    var min: Double = .infinity
    var max: Double = -.infinity
    var mean: Double = 0

    init(_ values: [Float]) {
        var sum = 0.0
        for value in values {
            let v = Double(value)
            min = Swift.min(min, v)
            max = Swift.max(max, v)
            sum += v
        }
        mean = values.isEmpty ? 0 : sum / Double(values.count)
    }

    var json: [String: Double] { ["min": min, "max": max, "mean": mean] }
}
