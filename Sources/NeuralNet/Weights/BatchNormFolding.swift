/// A convolution's weights ready for the kernel: BatchNorm folded in.
/// `weights` is [kh * kw * cin, cout] (the Keras HWIO kernel, flattened as is).
public struct FoldedConv: Sendable {
    public var weights: [Float]
    public var bias: [Float]
    /// [36, cin, cout] when this convolution runs as Winograd F(4x4, 3x3).
    public var winograd: [Float]? = nil
}

/// conv → BN(γ, β, μ, σ², ε) equals a conv with W' = W·s and b' = (b − μ)·s + β,
/// where s = γ / √(σ² + ε) per output channel. Folded in double precision.
func foldBatchNorm(
    name: String, kernel: [Float], bias: [Float]?, gamma: [Float]?, beta: [Float], mean: [Float], variance: [Float],
    epsilon: Double
) throws(NeuralNetError) -> FoldedConv {
    let cout = beta.count
    var scale = [Double](repeating: 0, count: cout)
    var folded = [Float](repeating: 0, count: cout)
    for c in 0..<cout {
        guard variance[c].isFinite, Double(variance[c]) + epsilon > 0 else {
            throw .invalidTensor(name: "\(name).moving_variance", reason: "channel \(c) is negative or not finite")
        }
        scale[c] = Double(gamma?[c] ?? 1) / (Double(variance[c]) + epsilon).squareRoot()
        folded[c] = Float((Double(bias?[c] ?? 0) - Double(mean[c])) * scale[c] + Double(beta[c]))
    }
    var weights = kernel
    for i in 0..<weights.count { weights[i] = Float(Double(weights[i]) * scale[i % cout]) }
    return FoldedConv(weights: weights, bias: folded)
}
