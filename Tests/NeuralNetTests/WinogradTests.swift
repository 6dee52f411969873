@testable import NeuralNet
import Testing

@Suite struct WinogradTests {
    static let cases: [ConvGeometry] = [
        .init(inputHeight: 16, inputWidth: 16, inputChannels: 8, kernelHeight: 3, kernelWidth: 3, strideY: 1, strideX: 1,
              padding: .uniform(1), outputChannels: 8),
        .init(inputHeight: 17, inputWidth: 13, inputChannels: 5, kernelHeight: 3, kernelWidth: 3, strideY: 1, strideX: 1,
              padding: .uniform(1), outputChannels: 7),  // partial tiles on both edges
        .init(inputHeight: 19, inputWidth: 18, inputChannels: 3, kernelHeight: 3, kernelWidth: 3, strideY: 1, strideX: 1,
              padding: .none, outputChannels: 4),  // 'valid' (InceptionV3's stem)
        .init(inputHeight: 5, inputWidth: 3, inputChannels: 2, kernelHeight: 3, kernelWidth: 3, strideY: 1, strideX: 1,
              padding: .uniform(1), outputChannels: 3),  // smaller than one tile
    ]

    @Test(arguments: cases, [1, 2])
    func matchesNaive(g: ConvGeometry, batch: Int) {
        let x = randomFloats(batch * g.inputHeight * g.inputWidth * g.inputChannels, seed: 21)
        let w = randomFloats(g.patchSize * g.outputChannels, seed: 22)
        let bias = randomFloats(g.outputChannels, seed: 23)
        let residual = randomFloats(batch * g.outputHeight * g.outputWidth * g.outputChannels, seed: 24)
        var expected = conv2DNaive(x: x, w: w, bias: bias, g: g, batch: batch, relu: false)
        for i in 0..<expected.count { expected[i] = max(expected[i] + residual[i], 0) }

        // Output into a view of a wider buffer: the transform must not write outside its channels.
        let yStride = g.outputChannels + 2
        var y = [Float](repeating: -9, count: batch * g.outputHeight * g.outputWidth * yStride)
        let v = Winograd.transformKernel(w, inputChannels: g.inputChannels, outputChannels: g.outputChannels)
        var workspace = [Float](repeating: .nan, count: Winograd.workspaceCount(g, batch: batch, threads: 2))
        y.withUnsafeMutableBufferPointer { yp in
            winogradConv2D(y: yp.baseAddress! + 1, yStride: yStride, x: x, xStride: g.inputChannels, weights: v, bias: bias,
                           residual: residual, residualStride: g.outputChannels, relu: true,
                           geometry: g, batch: batch, workspace: &workspace, threads: 2)
        }
        var worst: Float = 0
        for p in 0..<(batch * g.outputHeight * g.outputWidth) {
            #expect(y[p * yStride] == -9 && y[p * yStride + yStride - 1] == -9, "wrote outside its view")
            for c in 0..<g.outputChannels { worst = max(worst, abs(y[p * yStride + 1 + c] - expected[p * g.outputChannels + c])) }
        }
        // F(4x4, 3x3) in float32 carries a few more rounding steps than the direct sum.
        #expect(worst <= 2e-4, "\(g) batch \(batch): max diff \(worst)")
    }

    /// The whole network with Winograd layers against the same network run directly.
    @Test func resnetWithWinogradMatchesDirect() throws {
        let size = 64
        let bytes = randomWeights(for: try graph(.resnet50, size: size)).bytes()
        let fast = try Model(manifest: makeManifest(.resnet50, size: size), weights: try parseSafeTensors(bytes))
        let direct = try Model(manifest: makeManifest(.resnet50, size: size), weights: try parseSafeTensors(bytes), winograd: false)
        #expect(fast.parameters.contains { $0?.winograd != nil }, "some layer should use Winograd at this size")
        let inputs = randomFloats(2 * size * size * 3, seed: 5).map { ($0 + 1) / 2 }
        func run(_ model: Model) throws -> [Float] {
            let pass = ForwardPass(model: model, capacity: 2, threads: 2)
            var out = [Float](repeating: 0, count: 12)
            try inputs.withUnsafeBufferPointer { x in try out.withUnsafeMutableBufferPointer { try pass.run(inputs: x, count: 2, logits: $0) } }
            return out
        }
        let (a, b) = (try run(fast), try run(direct))
        for i in 0..<12 { #expect(abs(sigmoid(a[i]) - sigmoid(b[i])) <= 1e-5, "output \(i): \(a[i]) vs \(b[i])") }
    }
}
