import ArgumentParser
import Foundation
import NeuralNet

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time the forward pass alone on synthetic input; prints one JSON object.")

    @Option(help: "Model bundle directory.")
    var model: String

    @Option(help: "Images per forward pass.")
    var batch = 1

    @Option(help: "Timed forward passes after one warm-up pass.")
    var iterations = 10

    @Option(help: "Threads for GEMM and the other kernels (default: all cores).")
    var threads = ProcessInfo.processInfo.activeProcessorCount

    func run() throws {
        guard batch >= 1, iterations >= 1, threads >= 1 else {
            throw ValidationError("--batch, --iterations and --threads must be at least 1")
        }
        BLASThreads.set(threads)
        let model = try ModelBundle.load(directory: self.model, checkGolden: false, threads: threads)
        let pass = ForwardPass(model: model, capacity: batch, threads: threads)
        var state: UInt32 = 12345
        let input = (0..<batch * pass.inputCount).map { _ -> Float in
            state = state &* 1664525 &+ 1013904223
            return Float(state >> 8) / Float(1 << 24)
        }
        var logits = [Float](repeating: 0, count: batch * pass.outputCount)
        var perImageMilliseconds: [Double] = []
        for iteration in 0...iterations {
            let start = DispatchTime.now().uptimeNanoseconds
            try input.withUnsafeBufferPointer { x in
                try logits.withUnsafeMutableBufferPointer { try pass.run(inputs: x, count: batch, logits: $0) }
            }
            let milliseconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
            if iteration > 0 { perImageMilliseconds.append(milliseconds / Double(batch)) }
        }
        let sorted = perImageMilliseconds.sorted()
        let total = perImageMilliseconds.reduce(0, +)
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let report: [String: Any] = [
            "architecture": model.manifest.architecture.rawValue,
            "input": [model.manifest.input.height, model.manifest.input.width, 3],
            "batch": batch, "threads": threads, "iterations": iterations,
            "images_per_second": 1000 / (total / Double(sorted.count)),
            "ms_per_image_median": sorted[sorted.count / 2],
            "ms_per_image_p90": sorted[min(sorted.count - 1, Int((Double(sorted.count) * 0.9).rounded(.up)) - 1)],
            "peak_rss_bytes": usage.ru_maxrss * 1024,
            "gmac_per_image": Double(model.graph.multiplyAdds) / 1e9,
        ]
        let data = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }
}
