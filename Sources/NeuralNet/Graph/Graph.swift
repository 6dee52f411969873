/// A convolution with its BatchNorm and activation, as one operation.
public struct ConvLayer: Sendable {
    /// Weight names: `<name>.kernel` [kh, kw, cin, cout] and `<name>.bias`.
    public var name: String
    public var hasBias: Bool
    /// `<batchNorm>.gamma|beta|moving_mean|moving_variance`; no gamma when `batchNormHasScale` is false.
    public var batchNorm: String?
    public var batchNormHasScale: Bool
    public var geometry: ConvGeometry
    public var input: TensorView
    public var output: TensorView
    /// Added before the activation (ResNet's shortcut).
    public var residual: TensorView?
    public var relu: Bool
}

public enum Operation: Sendable {
    case conv(ConvLayer)
    case pool(PoolGeometry, input: TensorView, output: TensorView)
    case globalAveragePool(input: TensorView, output: TensorView)
    /// `<name>.kernel` [inputs, outputs] and `<name>.bias`; writes logits.
    case dense(name: String, input: TensorView, output: TensorView)

    var reads: [TensorView] {
        switch self {
        case .conv(let layer): [layer.input] + (layer.residual.map { [$0] } ?? [])
        case .pool(_, let input, _), .globalAveragePool(let input, _), .dense(_, let input, _): [input]
        }
    }

    var writes: TensorView {
        switch self {
        case .conv(let layer): layer.output
        case .pool(_, _, let output), .globalAveragePool(_, let output), .dense(_, _, let output): output
        }
    }
}

/// The operations of one architecture at one input size, in execution order,
/// over per-image buffers. Batch size is chosen later, by the memory plan.
public struct Graph: Sendable {
    public var buffers: [BufferShape]
    public var operations: [Operation]
    public var input: TensorView
    public var output: TensorView

    public var convolutions: [ConvLayer] {
        operations.compactMap { if case .conv(let layer) = $0 { layer } else { nil } }
    }

    /// Multiply-adds per image, convolutions and the head.
    public var multiplyAdds: Int {
        operations.reduce(0) { total, op in
            switch op {
            case .conv(let layer): total + layer.geometry.multiplyAdds
            case .dense(_, let input, let output): total + input.channels * output.channels
            default: total
            }
        }
    }
}

/// Builds graphs the way `keras.applications` writes models: one call per layer.
struct GraphBuilder {
    private(set) var buffers: [BufferShape] = []
    private(set) var operations: [Operation] = []

    mutating func buffer(height: Int, width: Int, channels: Int) -> TensorView {
        buffers.append(BufferShape(height: height, width: width, channels: channels))
        return TensorView(buffer: buffers.count - 1, height: height, width: width, channels: channels,
                          channelOffset: 0, stride: channels)
    }

    /// One buffer holding the concatenation of parts with these channel counts; returns a view per part.
    mutating func concatenation(height: Int, width: Int, channels parts: [Int]) -> [TensorView] {
        let whole = buffer(height: height, width: width, channels: parts.reduce(0, +))
        var offset = 0
        return parts.map { count in
            defer { offset += count }
            var view = whole
            view.channels = count
            view.channelOffset = offset
            return view
        }
    }

    enum PaddingMode {
        case same, valid
        case explicit(Padding)
    }

    static func padding(_ mode: PaddingMode, input: TensorView, kernel: (Int, Int), stride: (Int, Int)) -> Padding {
        switch mode {
        case .same: .same(input: (input.height, input.width), kernel: kernel, stride: stride)
        case .valid: .none
        case .explicit(let padding): padding
        }
    }

    @discardableResult
    mutating func conv(
        _ name: String, batchNorm: String?, batchNormHasScale: Bool = true, hasBias: Bool,
        _ input: TensorView, filters: Int, kernel: (Int, Int), stride: Int = 1, padding: PaddingMode,
        relu: Bool = true, residual: TensorView? = nil, into target: TensorView? = nil
    ) throws(NeuralNetError) -> TensorView {
        let geometry = ConvGeometry(
            inputHeight: input.height, inputWidth: input.width, inputChannels: input.channels,
            kernelHeight: kernel.0, kernelWidth: kernel.1, strideY: stride, strideX: stride,
            padding: Self.padding(padding, input: input, kernel: kernel, stride: (stride, stride)),
            outputChannels: filters)
        guard geometry.outputHeight >= 1, geometry.outputWidth >= 1 else {
            throw .inputTooSmall(layer: name, height: input.height, width: input.width)
        }
        let output = target ?? buffer(height: geometry.outputHeight, width: geometry.outputWidth, channels: filters)
        precondition(output.height == geometry.outputHeight && output.width == geometry.outputWidth
                     && output.channels == filters, "\(name): output view does not match the convolution")
        operations.append(.conv(ConvLayer(
            name: name, hasBias: hasBias, batchNorm: batchNorm, batchNormHasScale: batchNormHasScale,
            geometry: geometry, input: input, output: output, residual: residual, relu: relu)))
        return output
    }

    @discardableResult
    mutating func pool(
        _ kind: PoolGeometry.Kind, _ input: TensorView, size: Int, stride: Int, padding: PaddingMode,
        into target: TensorView? = nil
    ) throws(NeuralNetError) -> TensorView {
        let geometry = PoolGeometry(
            kind: kind, inputHeight: input.height, inputWidth: input.width, channels: input.channels,
            size: size, stride: stride,
            padding: Self.padding(padding, input: input, kernel: (size, size), stride: (stride, stride)))
        guard geometry.outputHeight >= 1, geometry.outputWidth >= 1 else {
            throw .inputTooSmall(layer: "pool", height: input.height, width: input.width)
        }
        let output = target ?? buffer(height: geometry.outputHeight, width: geometry.outputWidth, channels: input.channels)
        operations.append(.pool(geometry, input: input, output: output))
        return output
    }

    /// GlobalAveragePooling2D + Dense(classes): the RSNA Kaggle head. Returns the logits view.
    mutating func classifierHead(_ input: TensorView, classes: Int) -> TensorView {
        let pooled = buffer(height: 1, width: 1, channels: input.channels)
        operations.append(.globalAveragePool(input: input, output: pooled))
        let logits = buffer(height: 1, width: 1, channels: classes)
        operations.append(.dense(name: "head", input: pooled, output: logits))
        return logits
    }
}
