public struct PoolGeometry: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case max
        /// Keras's AveragePooling2D: padded taps are left out of the count.
        case averageExcludingPadding
    }

    public var kind: Kind
    public var inputHeight: Int, inputWidth: Int, channels: Int
    public var size: Int, stride: Int
    public var padding: Padding

    public var outputHeight: Int { padding.outputSize(input: (inputHeight, inputWidth), kernel: (size, size), stride: (stride, stride)).0 }
    public var outputWidth: Int { padding.outputSize(input: (inputHeight, inputWidth), kernel: (size, size), stride: (stride, stride)).1 }
}

/// Max pooling ignores padded taps. Where Keras pads with ZeroPadding2D before
/// a max pool (ResNet's pool1) this is still exact, because the input comes out
/// of a ReLU: with every value >= 0, an extra 0 never changes the maximum.
func pool2D(
    y: UnsafeMutablePointer<Float>, yStride: Int, x: UnsafePointer<Float>, xStride: Int,
    geometry g: PoolGeometry, batch: Int, threads: Int
) {
    let (oh, ow, channels) = (g.outputHeight, g.outputWidth, g.channels)
    parallelFor(batch * oh, threads: threads, minimumPerThread: 2) { rows in
        for outRow in rows {
            let n = outRow / oh, oy = outRow % oh
            let y0 = max(oy * g.stride - g.padding.top, 0)
            let y1 = min(oy * g.stride - g.padding.top + g.size, g.inputHeight)
            for ox in 0..<ow {
                let x0 = max(ox * g.stride - g.padding.left, 0)
                let x1 = min(ox * g.stride - g.padding.left + g.size, g.inputWidth)
                let out = y + (outRow * ow + ox) * yStride
                let first = x + ((n * g.inputHeight + y0) * g.inputWidth + x0) * xStride
                out.update(from: first, count: channels)
                for iy in y0..<y1 {
                    for ix in x0..<x1 where iy != y0 || ix != x0 {
                        let src = x + ((n * g.inputHeight + iy) * g.inputWidth + ix) * xStride
                        switch g.kind {
                        case .max: for c in 0..<channels { out[c] = max(out[c], src[c]) }
                        case .averageExcludingPadding: for c in 0..<channels { out[c] += src[c] }
                        }
                    }
                }
                if g.kind == .averageExcludingPadding {
                    let scale = 1 / Float((y1 - y0) * (x1 - x0))
                    for c in 0..<channels { out[c] *= scale }
                }
            }
        }
    }
}

/// y: [batch, channels] = mean over the height * width pixels of each image.
func globalAveragePool(
    y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, xStride: Int,
    pixels: Int, channels: Int, batch: Int
) {
    for n in 0..<batch {
        let out = y + n * channels
        out.update(repeating: 0, count: channels)
        for p in 0..<pixels {
            let src = x + (n * pixels + p) * xStride
            for c in 0..<channels { out[c] += src[c] }
        }
        let scale = 1 / Float(pixels)
        for c in 0..<channels { out[c] *= scale }
    }
}

/// y: [batch, outputs] = x: [batch, inputs] * w: [inputs, outputs] + bias.
func dense(
    y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, weights: UnsafePointer<Float>,
    bias: UnsafePointer<Float>, inputs: Int, outputs: Int, batch: Int
) {
    for n in 0..<batch { (y + n * outputs).update(from: bias, count: outputs) }
    sgemm(m: batch, n: outputs, k: inputs, a: x, lda: inputs, b: weights, ldb: outputs, c: y, ldc: outputs, beta: 1)
}
