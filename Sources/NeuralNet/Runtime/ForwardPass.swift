import Dispatch
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs a `Model` on up to `capacity` images at a time. All memory (the
/// activation arena and the im2col workspace) is allocated here, once; `run`
/// allocates nothing. Not thread-safe: give each worker its own.
public final class ForwardPass {
    public let model: Model
    public let capacity: Int
    public let threads: Int
    public let plan: MemoryPlan
    /// Seconds spent in each operation since the last reset, when profiling is on.
    public private(set) var profile: [Double]?
    private let arena: UnsafeMutablePointer<Float>
    private let workspace: UnsafeMutablePointer<Float>

    public init(model: Model, capacity: Int, threads: Int) {
        precondition(capacity >= 1 && threads >= 1)
        self.model = model
        self.capacity = capacity
        self.threads = threads
        plan = MemoryPlan(graph: model.graph, batch: capacity)
        arena = .allocate(capacity: max(plan.arenaCount, 1))
        arena.initialize(repeating: 0, count: max(plan.arenaCount, 1))
        let workspaceCount = max(model.workspaceCount(batch: capacity, threads: threads), 1)
        workspace = .allocate(capacity: workspaceCount)
        workspace.initialize(repeating: 0, count: workspaceCount)
    }

    deinit {
        arena.deallocate()
        workspace.deallocate()
    }

    public func enableProfiling() { profile = [Double](repeating: 0, count: model.graph.operations.count) }

    public var inputCount: Int { model.graph.buffers[model.graph.input.buffer].elementsPerImage }
    public var outputCount: Int { model.graph.output.channels }

    /// inputs: [count, H, W, 3] preprocessed images (before the manifest's input scaling);
    /// logits: [count, classes] pre-sigmoid outputs.
    public func run(
        inputs: UnsafeBufferPointer<Float>, count: Int, logits: UnsafeMutableBufferPointer<Float>
    ) throws(NeuralNetError) {
        guard count <= capacity else { throw .batchTooLarge(requested: count, capacity: capacity) }
        guard inputs.count == count * inputCount else { throw .inputSize(expected: count * inputCount, actual: inputs.count) }
        guard logits.count == count * outputCount else { throw .inputSize(expected: count * outputCount, actual: logits.count) }
        guard count > 0 else { return }

        let graph = model.graph
        let input = pointer(graph.input)
        let (scale, offset) = (model.manifest.inputScale, model.manifest.inputOffset)
        for i in 0..<inputs.count { input[i] = inputs[i] * scale + offset }

        for (index, op) in graph.operations.enumerated() {
            let start = profile == nil ? 0 : DispatchTime.now().uptimeNanoseconds
            defer { if profile != nil { profile![index] += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 } }
            switch op {
            case .conv(let layer):
                let parameters = model.parameters[index]!
                // Both kernels take the same arguments; Winograd's weights are the transformed ones.
                let kernel = parameters.winograd == nil ? conv2D : winogradConv2D
                (parameters.winograd ?? parameters.weights).withUnsafeBufferPointer { w in
                    parameters.bias.withUnsafeBufferPointer { b in
                        kernel(pointer(layer.output), layer.output.stride, pointer(layer.input), layer.input.stride,
                               w.baseAddress!, b.baseAddress!, layer.residual.map { UnsafePointer(pointer($0)) },
                               layer.residual?.stride ?? 0, layer.relu, layer.geometry, count, workspace, threads)
                    }
                }
            case .pool(let geometry, let inputView, let output):
                pool2D(y: pointer(output), yStride: output.stride, x: pointer(inputView), xStride: inputView.stride,
                       geometry: geometry, batch: count, threads: threads)
            case .globalAveragePool(let inputView, let output):
                globalAveragePool(y: pointer(output), x: pointer(inputView), xStride: inputView.stride,
                                  pixels: inputView.height * inputView.width, channels: inputView.channels, batch: count)
            case .dense(_, let inputView, let output):
                let parameters = model.parameters[index]!
                parameters.weights.withUnsafeBufferPointer { w in
                    parameters.bias.withUnsafeBufferPointer { b in
                        dense(y: pointer(output), x: pointer(inputView), weights: w.baseAddress!, bias: b.baseAddress!,
                              inputs: inputView.channels, outputs: output.channels, batch: count)
                    }
                }
            }
        }
        let output = pointer(graph.output)
        for i in 0..<logits.count { logits[i] = output[i] }
    }

    private func pointer(_ view: TensorView) -> UnsafeMutablePointer<Float> {
        arena + plan.offsets[view.buffer] + view.channelOffset
    }
}

/// The logistic function, for turning logits into the six probabilities.
@inline(__always)
public func sigmoid(_ x: Float) -> Float { 1 / (1 + expf(-x)) }
