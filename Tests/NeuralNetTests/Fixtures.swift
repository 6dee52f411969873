import Foundation
@testable import NeuralNet

func makeManifest(_ architecture: Manifest.Architecture, size: Int, sha256: String = String(repeating: "0", count: 64),
                  golden: Manifest.FileReference? = nil) -> Manifest {
    Manifest(
        formatVersion: 1, name: "test", version: "1", architecture: architecture, convention: "keras",
        input: .init(height: size, width: size, channels: 3), inputScale: 1, inputOffset: 0,
        batchNormEpsilon: architecture == .resnet50 ? 1.001e-5 : 1e-3,
        labels: Manifest.labels, thresholds: [Double](repeating: 0.5, count: 6),
        preprocessing: .init(windows: [.init(center: 40, width: 80), .init(center: 80, width: 200), .init(center: 40, width: 380)],
                             order: "window-then-resize", resize: "linear", rsnaCorrection: true, airHU: -1000),
        provenance: .init(trainedOn: "random weights for tests", syntheticData: true, clinicalUse: false),
        weights: .init(file: "weights.safetensors", sha256: sha256), golden: golden)
}

/// Every tensor the graph binds, with seeded random values scaled so activations stay O(1).
func randomWeights(for graph: Graph, seed: UInt64 = 7) -> SafeTensorsWriter {
    var writer = SafeTensorsWriter()
    var seed = seed
    func next(_ count: Int) -> [Float] { seed += 1; return randomFloats(count, seed: seed) }
    for op in graph.operations {
        switch op {
        case .conv(let layer):
            let g = layer.geometry
            let scale = (6 / Float(g.patchSize)).squareRoot()  // He: keeps the signal alive through ReLUs
            writer.add("\(layer.name).kernel", [g.kernelHeight, g.kernelWidth, g.inputChannels, g.outputChannels],
                       next(g.patchSize * g.outputChannels).map { $0 * scale })
            let c = g.outputChannels
            if layer.hasBias { writer.add("\(layer.name).bias", [c], next(c).map { $0 * 0.1 }) }
            if let bn = layer.batchNorm {
                if layer.batchNormHasScale { writer.add("\(bn).gamma", [c], next(c).map { 1 + 0.2 * $0 }) }
                writer.add("\(bn).beta", [c], next(c).map { 0.1 * $0 })
                writer.add("\(bn).moving_mean", [c], next(c).map { 0.1 * $0 })
                writer.add("\(bn).moving_variance", [c], next(c).map { 1 + 0.5 * $0 })
            }
        case .dense(let name, let input, let output):
            writer.add("\(name).kernel", [input.channels, output.channels], next(input.channels * output.channels).map { $0 * 0.05 })
            writer.add("\(name).bias", [output.channels], next(output.channels).map { $0 * 0.1 })
        default: break
        }
    }
    return writer
}

func parseSafeTensors(_ bytes: [UInt8]) throws -> SafeTensors {
    let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 16)
    bytes.withUnsafeBytes { copy.copyMemory(from: $0) }
    return try SafeTensors(bytes: UnsafeRawBufferPointer(copy))  // leaked on purpose: lives for the test process
}

func graph(_ architecture: Manifest.Architecture, size: Int) throws -> Graph {
    switch architecture {
    case .resnet50: try ResNet50.graph(height: size, width: size, classes: 6)
    case .inceptionV3: try InceptionV3.graph(height: size, width: size, classes: 6)
    }
}

func temporaryDirectory() -> String {
    let path = NSTemporaryDirectory() + "nn-test-" + UUID().uuidString
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}
