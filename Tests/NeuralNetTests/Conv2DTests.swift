@testable import NeuralNet
import Testing

@Suite struct Conv2DTests {
    /// Odd shapes on purpose: non-square, strides, asymmetric padding, 1x1 fast path, views into wider buffers.
    static let cases: [ConvGeometry] = [
        .init(inputHeight: 7, inputWidth: 5, inputChannels: 3, kernelHeight: 3, kernelWidth: 3, strideY: 1, strideX: 1,
              padding: .uniform(1), outputChannels: 4),
        .init(inputHeight: 8, inputWidth: 8, inputChannels: 5, kernelHeight: 3, kernelWidth: 3, strideY: 2, strideX: 2,
              padding: Padding(top: 0, bottom: 1, left: 0, right: 1), outputChannels: 6),
        .init(inputHeight: 9, inputWidth: 6, inputChannels: 4, kernelHeight: 1, kernelWidth: 1, strideY: 1, strideX: 1,
              padding: .none, outputChannels: 7),
        .init(inputHeight: 9, inputWidth: 6, inputChannels: 4, kernelHeight: 1, kernelWidth: 1, strideY: 2, strideX: 2,
              padding: .none, outputChannels: 3),
        .init(inputHeight: 11, inputWidth: 10, inputChannels: 3, kernelHeight: 7, kernelWidth: 7, strideY: 2, strideX: 2,
              padding: .uniform(3), outputChannels: 8),
        .init(inputHeight: 6, inputWidth: 9, inputChannels: 2, kernelHeight: 1, kernelWidth: 7, strideY: 1, strideX: 1,
              padding: Padding(top: 0, bottom: 0, left: 3, right: 3), outputChannels: 5),
        .init(inputHeight: 9, inputWidth: 6, inputChannels: 2, kernelHeight: 7, kernelWidth: 1, strideY: 1, strideX: 1,
              padding: Padding(top: 3, bottom: 3, left: 0, right: 0), outputChannels: 5),
        .init(inputHeight: 5, inputWidth: 5, inputChannels: 3, kernelHeight: 5, kernelWidth: 5, strideY: 1, strideX: 1,
              padding: .uniform(2), outputChannels: 2),
    ]

    @Test(arguments: cases, [1, 3])
    func matchesNaive(g: ConvGeometry, batch: Int) {
        let x = randomFloats(batch * g.inputHeight * g.inputWidth * g.inputChannels, seed: 1)
        let w = randomFloats(g.patchSize * g.outputChannels, seed: 2)
        let bias = randomFloats(g.outputChannels, seed: 3)
        let expected = conv2DNaive(x: x, w: w, bias: bias, g: g, batch: batch, relu: true)

        // Read from and write into views with extra channels around them, as concatenation does.
        let (xPad, yPad) = (2, 3)
        let xStride = g.inputChannels + xPad, yStride = g.outputChannels + yPad
        var xWide = [Float](repeating: .nan, count: batch * g.inputHeight * g.inputWidth * xStride)
        for p in 0..<(batch * g.inputHeight * g.inputWidth) {
            for c in 0..<g.inputChannels { xWide[p * xStride + 1 + c] = x[p * g.inputChannels + c] }
        }
        let pixels = batch * g.outputHeight * g.outputWidth
        var yWide = [Float](repeating: -7, count: pixels * yStride)
        var workspace = [Float](repeating: 0, count: max(g.workspaceCount(batch: batch), 1))
        xWide.withUnsafeBufferPointer { xp in
            yWide.withUnsafeMutableBufferPointer { yp in
                conv2D(y: yp.baseAddress! + 2, yStride: yStride, x: xp.baseAddress! + 1, xStride: xStride,
                       weights: w, bias: bias, residual: nil, residualStride: 0, relu: true,
                       geometry: g, batch: batch, workspace: &workspace, threads: 2)
            }
        }
        var worst: Float = 0
        for p in 0..<pixels {
            for c in 0..<g.outputChannels { worst = max(worst, abs(yWide[p * yStride + 2 + c] - expected[p * g.outputChannels + c])) }
            #expect(yWide[p * yStride] == -7 && yWide[p * yStride + 1] == -7, "wrote outside its view")
        }
        // float32 sums of at most 7*7*5 products of values in [-1, 1].
        #expect(worst <= 1e-4, "\(g) batch \(batch): max diff \(worst)")
    }

    @Test func residualIsAddedBeforeReLU() {
        let g = Conv2DTests.cases[2]
        let x = randomFloats(g.inputHeight * g.inputWidth * g.inputChannels, seed: 4)
        let w = randomFloats(g.patchSize * g.outputChannels, seed: 5)
        let bias = [Float](repeating: 0, count: g.outputChannels)
        let residual = randomFloats(g.outputHeight * g.outputWidth * g.outputChannels, seed: 6)
        let plain = conv2DNaive(x: x, w: w, bias: bias, g: g, batch: 1, relu: false)
        var y = [Float](repeating: 0, count: plain.count)
        var workspace: [Float] = [0]
        conv2D(y: &y, yStride: g.outputChannels, x: x, xStride: g.inputChannels, weights: w, bias: bias,
               residual: residual, residualStride: g.outputChannels, relu: true, geometry: g, batch: 1,
               workspace: &workspace, threads: 1)
        for i in 0..<y.count { #expect(abs(y[i] - max(plain[i] + residual[i], 0)) <= 1e-5) }
    }
}
