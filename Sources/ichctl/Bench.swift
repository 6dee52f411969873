import ArgumentParser
import Foundation
import NeuralNet

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time the forward pass alone on synthetic input; prints one JSON object.")

    @OptionGroup var options: ModelOptions

    @Option(help: "Timed forward passes after one warm-up pass.")
    var iterations = 10

    @Flag(help: "Print the slowest operations (per-layer profile) to standard error.")
    var profile = false

    @Flag(help: "Run every convolution directly (im2col + GEMM), without Winograd: the reference path.")
    var noWinograd = false

    func run() throws {
        let (batch, threads) = (options.batch, options.threads)
        guard iterations >= 1 else { throw ValidationError("--iterations must be at least 1") }
        BLASThreads.set(threads)
        let model = try ModelBundle.load(directory: options.model, checkGolden: false, threads: threads, batch: batch, winograd: !noWinograd)
        let pass = ForwardPass(model: model, capacity: batch, threads: threads)
        var state: UInt32 = 12345
        let input = (0..<batch * pass.inputCount).map { _ -> Float in
            state = state &* 1664525 &+ 1013904223
            return Float(state >> 8) / Float(1 << 24)
        }
        var logits = [Float](repeating: 0, count: batch * pass.outputCount)
        if profile { pass.enableProfiling() }
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
        let report: [String: Any] = [
            "architecture": model.manifest.architecture.rawValue,
            "input": [model.manifest.input.height, model.manifest.input.width, 3],
            "batch": batch, "threads": threads, "iterations": iterations,
            "images_per_second": 1000 / (total / Double(sorted.count)),
            "ms_per_image_median": sorted[sorted.count / 2],
            "ms_per_image_p90": sorted[min(sorted.count - 1, Int((Double(sorted.count) * 0.9).rounded(.up)) - 1)],
            "peak_rss_bytes": peakResidentBytes(),
            "gmac_per_image": Double(model.graph.multiplyAdds) / 1e9,
        ]
        if let times = pass.profile { printProfile(times.map { $0 / Double(iterations + 1) }, graph: model.graph, batch: batch) }
        let data = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }
}

/// The slowest operations (seconds per pass) with their share of the total and their effective rate.
private func printProfile(_ times: [Double], graph: Graph, batch: Int) {
    let total = times.reduce(0, +)
    var lines = ["op  share  ms/pass  GFLOP/s  layer"]
    for (index, time) in times.enumerated().sorted(by: { $0.1 > $1.1 }).prefix(25) {
        let op = graph.operations[index]
        var name = "", flops = 0.0
        switch op {
        case .conv(let layer):
            let g = layer.geometry
            name = "\(layer.name) \(g.kernelHeight)x\(g.kernelWidth)/\(g.strideY) \(g.inputChannels)->\(g.outputChannels) @\(g.outputHeight)x\(g.outputWidth)"
            flops = 2 * Double(g.multiplyAdds * batch)
        case .pool(let g, _, _): name = "pool \(g.kind) \(g.size)/\(g.stride) @\(g.inputHeight)x\(g.inputWidth)x\(g.channels)"
        case .globalAveragePool: name = "global average pool"
        case .dense(let n, _, _): name = "dense \(n)"
        }
        let share = String(format: "%5.1f%%", 100 * time / total)
        let rate = flops > 0 ? String(format: "%7.1f", flops / time / 1e9) : "      -"
        lines.append("\(index)  \(share)  \(String(format: "%7.2f", time * 1000))  \(rate)  \(name)")
    }
    var byKind: [String: Double] = [:]
    for (op, time) in zip(graph.operations, times) {
        let kind = switch op {
        case .conv(let layer) where layer.geometry.isPointwise: "conv 1x1"
        case .conv(let layer) where layer.geometry.kernelHeight == 3 && layer.geometry.kernelWidth == 3: "conv 3x3"
        case .conv: "conv other"
        case .pool: "pooling"
        case .globalAveragePool, .dense: "head"
        }
        byKind[kind, default: 0] += time
    }
    lines.append(byKind.sorted { $0.value > $1.value }.map { String(format: "%@ %.1f ms", $0.key, $0.value * 1000) }
        .joined(separator: ", "))
    FileHandle.standardError.write(Data((lines.joined(separator: "\n") + "\n").utf8))
}

/// VmHWM from /proc/self/status: unlike getrusage, it is not inherited from a large parent process.
private func peakResidentBytes() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
          let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "")
    else { return 0 }
    return kilobytes * 1024
}
