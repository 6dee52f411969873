/// An architecture bound to its weights, BatchNorm folded: immutable and
/// shared by every `ForwardPass` that runs it.
public struct Model: Sendable {
    public let manifest: Manifest
    public let graph: Graph
    /// Folded weights of each operation that has them (convolutions and the head), by operation index.
    let parameters: [FoldedConv?]

    /// Scratch floats the largest convolution needs at this batch size and thread count.
    func workspaceCount(batch: Int, threads: Int) -> Int {
        zip(graph.operations, parameters).map { op, parameters in
            guard case .conv(let layer) = op else { return 0 }
            return parameters?.winograd != nil
                ? Winograd.workspaceCount(layer.geometry, batch: batch, threads: threads)
                : layer.geometry.workspaceCount(batch: batch)
        }.max() ?? 0
    }

    /// `batch` is the batch size the model will mostly run at: it decides which
    /// layers use Winograd. `winograd: false` runs every convolution directly (the reference path).
    public init(manifest: Manifest, weights: SafeTensors, batch: Int = 1, winograd: Bool = true) throws(NeuralNetError) {
        let (height, width) = (manifest.input.height, manifest.input.width)
        let classes = manifest.labels.count
        let graph = switch manifest.architecture {
        case .resnet50: try ResNet50.graph(height: height, width: width, classes: classes)
        case .inceptionV3: try InceptionV3.graph(height: height, width: width, classes: classes)
        }
        var store = WeightStore(weights)
        var parameters: [FoldedConv?] = []
        for op in graph.operations {
            switch op {
            case .conv(let layer):
                var folded = try Self.load(layer, from: &store, epsilon: manifest.batchNormEpsilon)
                if winograd, Winograd.applies(to: layer.geometry, batch: batch) {
                    folded.winograd = Winograd.transformKernel(
                        folded.weights, inputChannels: layer.geometry.inputChannels, outputChannels: layer.geometry.outputChannels)
                    folded.weights = []  // the direct kernel is not used again

                }
                parameters.append(folded)
            case .dense(let name, let input, let output):
                let kernel = try store.floats("\(name).kernel", shape: [input.channels, output.channels])
                let bias = try store.floats("\(name).bias", shape: [output.channels])
                parameters.append(FoldedConv(weights: kernel, bias: bias))
            default:
                parameters.append(nil)
            }
        }
        try store.checkAllUsed()
        self.manifest = manifest
        self.graph = graph
        self.parameters = parameters
    }

    private static func load(_ layer: ConvLayer, from store: inout WeightStore, epsilon: Double) throws(NeuralNetError) -> FoldedConv {
        let g = layer.geometry
        let cout = g.outputChannels
        let kernel = try store.floats("\(layer.name).kernel", shape: [g.kernelHeight, g.kernelWidth, g.inputChannels, cout])
        let bias = layer.hasBias ? try store.floats("\(layer.name).bias", shape: [cout]) : nil
        guard let bn = layer.batchNorm else {
            return FoldedConv(weights: kernel, bias: bias ?? [Float](repeating: 0, count: cout))
        }
        return try foldBatchNorm(
            name: bn, kernel: kernel, bias: bias,
            gamma: layer.batchNormHasScale ? try store.floats("\(bn).gamma", shape: [cout]) : nil,
            beta: try store.floats("\(bn).beta", shape: [cout]),
            mean: try store.floats("\(bn).moving_mean", shape: [cout]),
            variance: try store.floats("\(bn).moving_variance", shape: [cout]),
            epsilon: epsilon)
    }
}
