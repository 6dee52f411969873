@testable import NeuralNet
import Testing

/// Each output from its window, the slow way; padded taps are skipped (max) or not counted (average).
func poolNaive(_ x: [Float], _ g: PoolGeometry, batch: Int) -> [Float] {
    var y: [Float] = []
    for n in 0..<batch {
        for oy in 0..<g.outputHeight {
            for ox in 0..<g.outputWidth {
                for c in 0..<g.channels {
                    var taps: [Float] = []
                    for ky in 0..<g.size {
                        for kx in 0..<g.size {
                            let iy = oy * g.stride - g.padding.top + ky, ix = ox * g.stride - g.padding.left + kx
                            if iy >= 0, iy < g.inputHeight, ix >= 0, ix < g.inputWidth {
                                taps.append(x[((n * g.inputHeight + iy) * g.inputWidth + ix) * g.channels + c])
                            }
                        }
                    }
                    y.append(g.kind == .max ? taps.max()! : taps.reduce(0, +) / Float(taps.count))
                }
            }
        }
    }
    return y
}

@Test(arguments: [
    PoolGeometry(kind: .max, inputHeight: 9, inputWidth: 7, channels: 3, size: 3, stride: 2, padding: .none),
    PoolGeometry(kind: .max, inputHeight: 8, inputWidth: 8, channels: 2, size: 3, stride: 2, padding: .uniform(1)),
    PoolGeometry(kind: .averageExcludingPadding, inputHeight: 5, inputWidth: 6, channels: 4, size: 3, stride: 1,
                 padding: .uniform(1)),
    PoolGeometry(kind: .averageExcludingPadding, inputHeight: 4, inputWidth: 4, channels: 1, size: 3, stride: 1,
                 padding: .uniform(1)),
])
func poolMatchesNaive(g: PoolGeometry) {
    let batch = 2
    let x = randomFloats(batch * g.inputHeight * g.inputWidth * g.channels, seed: 9)
    var y = [Float](repeating: 0, count: batch * g.outputHeight * g.outputWidth * g.channels)
    pool2D(y: &y, yStride: g.channels, x: x, xStride: g.channels, geometry: g, batch: batch, threads: 2)
    let expected = poolNaive(x, g, batch: batch)
    #expect(zip(y, expected).allSatisfy { abs($0 - $1) <= 1e-6 }, "\(g)")
}

/// Keras's 'same' average pooling divides a corner by 4 taps, not 9.
@Test func averageExcludesPadding() {
    let g = PoolGeometry(kind: .averageExcludingPadding, inputHeight: 2, inputWidth: 2, channels: 1, size: 3, stride: 1,
                         padding: .uniform(1))
    var y = [Float](repeating: 0, count: 4)
    pool2D(y: &y, yStride: 1, x: [1, 2, 3, 4], xStride: 1, geometry: g, batch: 1, threads: 1)
    #expect(y == [2.5, 2.5, 2.5, 2.5])
}
