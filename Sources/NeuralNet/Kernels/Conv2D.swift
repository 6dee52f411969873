/// Shape of one 2-D convolution over NHWC input; written out once and used by
/// the planner, the kernels and the tests alike.
public struct ConvGeometry: Sendable, Equatable {
    public var inputHeight: Int, inputWidth: Int, inputChannels: Int
    public var kernelHeight: Int, kernelWidth: Int
    public var strideY: Int, strideX: Int
    public var padding: Padding
    public var outputChannels: Int

    public var outputHeight: Int {
        padding.outputSize(input: (inputHeight, inputWidth), kernel: (kernelHeight, kernelWidth), stride: (strideY, strideX)).0
    }
    public var outputWidth: Int {
        padding.outputSize(input: (inputHeight, inputWidth), kernel: (kernelHeight, kernelWidth), stride: (strideY, strideX)).1
    }
    /// Length of one im2col row, ordered (ky, kx, ci) like a Keras HWIO kernel.
    public var patchSize: Int { kernelHeight * kernelWidth * inputChannels }
    /// A 1x1, stride-1, unpadded convolution is a plain GEMM on the input.
    public var isPointwise: Bool {
        kernelHeight == 1 && kernelWidth == 1 && strideY == 1 && strideX == 1 && padding == .none
    }
    /// Floats of im2col workspace for `batch` images (0 when pointwise).
    public func workspaceCount(batch: Int) -> Int {
        isPointwise ? 0 : batch * outputHeight * outputWidth * patchSize
    }
    public var multiplyAdds: Int { outputHeight * outputWidth * patchSize * outputChannels }
}

/// col: [batch * OH * OW, patchSize]; x: [batch, H, W] pixels of `xStride` floats,
/// the convolution's `inputChannels` starting at `x`. Out-of-image taps are zero.
func im2col(
    col: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, xStride: Int,
    geometry g: ConvGeometry, batch: Int, threads: Int
) {
    let (oh, ow, cin) = (g.outputHeight, g.outputWidth, g.inputChannels)
    let rowLength = g.patchSize
    parallelFor(batch * oh, threads: threads, minimumPerThread: 4) { rows in
        for outRow in rows {
            let n = outRow / oh, oy = outRow % oh
            for ox in 0..<ow {
                var dst = col + ((outRow * ow) + ox) * rowLength
                for ky in 0..<g.kernelHeight {
                    let iy = oy * g.strideY - g.padding.top + ky
                    for kx in 0..<g.kernelWidth {
                        let ix = ox * g.strideX - g.padding.left + kx
                        if iy >= 0, iy < g.inputHeight, ix >= 0, ix < g.inputWidth {
                            let src = x + ((n * g.inputHeight + iy) * g.inputWidth + ix) * xStride
                            dst.update(from: src, count: cin)
                        } else {
                            dst.update(repeating: 0, count: cin)
                        }
                        dst += cin
                    }
                }
            }
        }
    }
}

/// y = relu?(conv(x, w) + bias + residual?), all NHWC with per-view pixel strides.
/// w: [patchSize, outputChannels] (BatchNorm already folded in); bias: [outputChannels];
/// workspace: at least `geometry.workspaceCount(batch:)` floats.
func conv2D(
    y: UnsafeMutablePointer<Float>, yStride: Int,
    x: UnsafePointer<Float>, xStride: Int,
    weights: UnsafePointer<Float>, bias: UnsafePointer<Float>,
    residual: UnsafePointer<Float>?, residualStride: Int, relu: Bool,
    geometry g: ConvGeometry, batch: Int,
    workspace: UnsafeMutablePointer<Float>, threads: Int
) {
    let m = batch * g.outputHeight * g.outputWidth
    if g.isPointwise {
        sgemm(m: m, n: g.outputChannels, k: g.inputChannels, a: x, lda: xStride,
              b: weights, ldb: g.outputChannels, c: y, ldc: yStride)
    } else {
        im2col(col: workspace, x: x, xStride: xStride, geometry: g, batch: batch, threads: threads)
        sgemm(m: m, n: g.outputChannels, k: g.patchSize, a: workspace, lda: g.patchSize,
              b: weights, ldb: g.outputChannels, c: y, ldc: yStride)
    }
    biasActivation(y: y, yStride: yStride, rows: m, channels: g.outputChannels, bias: bias,
                   residual: residual, residualStride: residualStride, relu: relu, threads: threads)
}

/// The fused epilogue OpenBLAS cannot do inside its GEMM: one pass adding the
/// bias and the residual, then clamping at zero.
func biasActivation(
    y: UnsafeMutablePointer<Float>, yStride: Int, rows: Int, channels: Int,
    bias: UnsafePointer<Float>, residual: UnsafePointer<Float>?, residualStride: Int,
    relu: Bool, threads: Int
) {
    parallelFor(rows, threads: threads, minimumPerThread: 64) { range in
        for r in range {
            let out = y + r * yStride
            if let residual {
                let res = residual + r * residualStride
                if relu {
                    for c in 0..<channels { out[c] = max(out[c] + bias[c] + res[c], 0) }
                } else {
                    for c in 0..<channels { out[c] = out[c] + bias[c] + res[c] }
                }
            } else if relu {
                for c in 0..<channels { out[c] = max(out[c] + bias[c], 0) }
            } else {
                for c in 0..<channels { out[c] += bias[c] }
            }
        }
    }
}
