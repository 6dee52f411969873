import ArgumentParser
import DICOM
import Foundation
import Imaging

struct BenchPreprocess: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-preprocess",
        abstract: "Time decode + preprocess of DICOM files held in memory; prints one JSON object.")

    @Argument(help: "DICOM files (read once, then decoded from memory).")
    var files: [String]

    @Option(help: "Passes over all files after one warm-up pass.")
    var iterations = 5

    @Flag(help: "Time only the header read that ingest does per upload (it stops at the Pixel Data).")
    var headerOnly = false

    @OptionGroup var options: PreprocessOptions

    func run() throws {
        let preprocessor = try Preprocessor(settings: try options.settings())
        let inputs = try files.map { path in try readFile(path) }
        if headerOnly { return try timeHeaders(inputs) }
        var output = [Float](repeating: 0, count: preprocessor.outputCount)
        var decodeSeconds = 0.0, preprocessSeconds = 0.0

        for pass in 0...iterations {
            for bytes in inputs {
                let start = DispatchTime.now().uptimeNanoseconds
                let slice = try DICOMDecoder.decode(bytes)
                let decoded = DispatchTime.now().uptimeNanoseconds
                try output.withUnsafeMutableBufferPointer { try preprocessor.run(slice, into: $0) }
                let done = DispatchTime.now().uptimeNanoseconds
                if pass > 0 {
                    decodeSeconds += Double(decoded - start) / 1e9
                    preprocessSeconds += Double(done - decoded) / 1e9
                }
            }
        }
        let slices = Double(inputs.count * iterations)
        let report: [String: Any] = [
            "slices": Int(slices),
            "slices_per_second": slices / (decodeSeconds + preprocessSeconds),
            "decode_ms_per_slice": decodeSeconds / slices * 1000,
            "preprocess_ms_per_slice": preprocessSeconds / slices * 1000,
        ]
        try printReport(report)
    }

    private func printReport(_ report: [String: Any]) throws {
        let data = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }

    private func timeHeaders(_ inputs: [[UInt8]]) throws {
        var seconds = 0.0
        for pass in 0...iterations {
            for bytes in inputs {
                let start = DispatchTime.now().uptimeNanoseconds
                _ = try DICOMDecoder.header(bytes)
                if pass > 0 { seconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
            }
        }
        let files = Double(inputs.count * iterations)
        try printReport(["files": Int(files), "header_ms_per_file": seconds / files * 1000])
    }
}
