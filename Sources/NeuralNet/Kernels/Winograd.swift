/// Winograd F(4x4, 3x3) for 3x3 stride-1 convolutions (Lavin & Gray 2015):
/// each 6x6 input tile is transformed (Bᵀ d B), multiplied element-wise with
/// the transformed kernel (G g Gᵀ) — 36 independent GEMMs over channels, so
/// still BLAS-backed — and transformed back (Aᵀ m A) into a 4x4 output tile.
/// 36 multiplies per 16 outputs instead of 144: 4x fewer FLOPs in the GEMMs.
/// The direct path (`conv2D`) stays the reference it is tested against.
public enum Winograd {
    static let tile = 4, window = 6

    /// Convolutions worth it: 3x3, stride 1, and enough tiles per pass for the 36
    /// GEMMs not to be too thin (each reads all of its cin x cout weights). Measured
    /// here: an 8x8 map gains ~15% at batch 8 (32 tiles) but loses at batch 1 (4 tiles).
    public static func applies(to g: ConvGeometry, batch: Int) -> Bool {
        g.kernelHeight == 3 && g.kernelWidth == 3 && g.strideY == 1 && g.strideX == 1
            && g.outputHeight >= 8 && g.outputWidth >= 8 && tiles(g, batch: batch) >= 16
    }

    static func tiles(_ g: ConvGeometry, batch: Int) -> Int {
        batch * ((g.outputHeight + 3) / 4) * ((g.outputWidth + 3) / 4)
    }

    /// Floats of scratch: U [36, tiles, cin], M [36, tiles, cout], per-thread rows, a zero row.
    public static func workspaceCount(_ g: ConvGeometry, batch: Int, threads: Int) -> Int {
        let t = tiles(g, batch: batch)
        return 36 * t * (g.inputChannels + g.outputChannels) + threads * scratchPerThread(g) + g.inputChannels
    }

    /// Input side [36, cin]; output side [4, 6, cout] + [4, cout] (they are used one after the other).
    static func scratchPerThread(_ g: ConvGeometry) -> Int {
        max(36 * g.inputChannels, 28 * g.outputChannels)
    }

    /// kernel [3, 3, cin, cout] (HWIO) → V [36, cin, cout] = G g Gᵀ per (ci, co), in double precision.
    public static func transformKernel(_ kernel: [Float], inputChannels cin: Int, outputChannels cout: Int) -> [Float] {
        let G: [[Double]] = [
            [1.0 / 4, 0, 0], [-1.0 / 6, -1.0 / 6, -1.0 / 6], [-1.0 / 6, 1.0 / 6, -1.0 / 6],
            [1.0 / 24, 1.0 / 12, 1.0 / 6], [1.0 / 24, -1.0 / 12, 1.0 / 6], [0, 0, 1],
        ]
        var v = [Float](repeating: 0, count: 36 * cin * cout)
        for ci in 0..<cin {
            for co in 0..<cout {
                let g = (0..<3).map { ky in (0..<3).map { kx in Double(kernel[((ky * 3 + kx) * cin + ci) * cout + co]) } }
                for i in 0..<6 {
                    // (G g)[i][kx]
                    let gg = (0..<3).map { kx in (0..<3).reduce(0.0) { $0 + G[i][$1] * g[$1][kx] } }
                    for j in 0..<6 {
                        let value = (0..<3).reduce(0.0) { $0 + gg[$1] * G[j][$1] }
                        v[((i * 6 + j) * cin + ci) * cout + co] = Float(value)
                    }
                }
            }
        }
        return v
    }
}

/// Bᵀ x for six vectors of `count` floats: y_i = Σ_k Bᵀ[i][k] x_k.
/// x_k = x + k * xStep and y_i = y + i * yStep, steps in floats; x and y must not overlap.
@inline(__always)
private func inputTransform(_ x: (Int) -> UnsafePointer<Float>, _ y: (Int) -> UnsafeMutablePointer<Float>, count: Int) {
    let (x0, x1, x2, x3, x4, x5) = (x(0), x(1), x(2), x(3), x(4), x(5))
    let (y0, y1, y2, y3, y4, y5) = (y(0), y(1), y(2), y(3), y(4), y(5))
    for c in 0..<count {
        let (a0, a1, a2, a3, a4, a5) = (x0[c], x1[c], x2[c], x3[c], x4[c], x5[c])
        y0[c] = 4 * a0 - 5 * a2 + a4
        y1[c] = -4 * (a1 + a2) + a3 + a4
        y2[c] = 4 * (a1 - a2) - a3 + a4
        y3[c] = 2 * (a3 - a1) - a2 + a4
        y4[c] = 2 * (a1 - a3) - a2 + a4
        y5[c] = 4 * a1 - 5 * a3 + a5
    }
}

/// Aᵀ m for six vectors: four outputs. m and y must not overlap.
@inline(__always)
private func outputTransform(_ m: (Int) -> UnsafePointer<Float>, _ y: (Int) -> UnsafeMutablePointer<Float>, count: Int) {
    let (m0, m1, m2, m3, m4, m5) = (m(0), m(1), m(2), m(3), m(4), m(5))
    let (y0, y1, y2, y3) = (y(0), y(1), y(2), y(3))
    for c in 0..<count {
        let (a0, a1, a2, a3, a4, a5) = (m0[c], m1[c], m2[c], m3[c], m4[c], m5[c])
        let (s12, d12, s34, d34) = (a1 + a2, a1 - a2, a3 + a4, a3 - a4)
        y0[c] = a0 + s12 + s34
        y1[c] = d12 + 2 * d34
        y2[c] = s12 + 4 * s34
        y3[c] = d12 + 8 * d34 + a5
    }
}

/// y = relu?(conv3x3(x) + bias + residual?) by Winograd F(4x4, 3x3).
/// weights: [36, cin, cout] from `Winograd.transformKernel` (BatchNorm folded before transforming);
/// workspace: `Winograd.workspaceCount(geometry, batch:, threads:)` floats.
func winogradConv2D(
    y: UnsafeMutablePointer<Float>, yStride: Int,
    x: UnsafePointer<Float>, xStride: Int,
    weights v: UnsafePointer<Float>, bias: UnsafePointer<Float>,
    residual: UnsafePointer<Float>?, residualStride: Int, relu: Bool,
    geometry g: ConvGeometry, batch: Int,
    workspace: UnsafeMutablePointer<Float>, threads: Int
) {
    let (cin, cout) = (g.inputChannels, g.outputChannels)
    let (tilesY, tilesX) = ((g.outputHeight + 3) / 4, (g.outputWidth + 3) / 4)
    let tileCount = batch * tilesY * tilesX
    let u = workspace
    let m = u + 36 * tileCount * cin
    let scratch = m + 36 * tileCount * cout
    let perThread = Winograd.scratchPerThread(g)
    let zeros = scratch + threads * perThread
    zeros.update(repeating: 0, count: cin)
    let chunks = max(1, min(threads, tileCount))

    // 1. U[ξ][tile] = Bᵀ d B, channels innermost so every loop runs over contiguous floats.
    parallelFor(chunks, threads: threads) { range in
        for chunk in range {
            let tmp = scratch + chunk * perThread
            withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: 36) { d in
                for t in (tileCount * chunk / chunks)..<(tileCount * (chunk + 1) / chunks) {
                    let n = t / (tilesY * tilesX), ty = (t / tilesX) % tilesY, tx = t % tilesX
                    for r in 0..<6 {
                        let iy = ty * 4 - g.padding.top + r
                        for c in 0..<6 {
                            let ix = tx * 4 - g.padding.left + c
                            let inside = iy >= 0 && iy < g.inputHeight && ix >= 0 && ix < g.inputWidth
                            d[r * 6 + c] = inside ? x + ((n * g.inputHeight + iy) * g.inputWidth + ix) * xStride : UnsafePointer(zeros)
                        }
                    }
                    // Columns: tmp[i][col] = Σ_k Bᵀ[i][k] d[k][col]; rows: U[row][j] = Σ_l tmp[row][l] B[l][j].
                    for col in 0..<6 {
                        inputTransform({ d[$0 * 6 + col] }, { tmp + ($0 * 6 + col) * cin }, count: cin)
                    }
                    for row in 0..<6 {
                        inputTransform({ UnsafePointer(tmp + (row * 6 + $0) * cin) },
                                       { u + ((row * 6 + $0) * tileCount + t) * cin }, count: cin)
                    }
                }
            }
        }
    }

    // 2. 36 GEMMs: M[ξ] [tiles, cout] = U[ξ] [tiles, cin] · V[ξ] [cin, cout].
    for xi in 0..<36 {
        sgemm(m: tileCount, n: cout, k: cin, a: u + xi * tileCount * cin, lda: cin,
              b: v + xi * cin * cout, ldb: cout, c: m + xi * tileCount * cout, ldc: cout)
    }

    // 3. Y = Aᵀ M A into per-thread rows, then bias, residual and ReLU into the pixels inside the output.
    parallelFor(chunks, threads: threads) { range in
        for chunk in range {
            let columns = scratch + chunk * perThread  // [4][6][cout]: Aᵀ applied down each column
            let rows = columns + 24 * cout  // [4][cout]: one output row of the tile
            for t in (tileCount * chunk / chunks)..<(tileCount * (chunk + 1) / chunks) {
                let n = t / (tilesY * tilesX), ty = (t / tilesX) % tilesY, tx = t % tilesX
                for col in 0..<6 {
                    outputTransform({ UnsafePointer(m + (($0 * 6 + col) * tileCount + t) * cout) },
                                    { columns + ($0 * 6 + col) * cout }, count: cout)
                }
                for row in 0..<4 {
                    let oy = ty * 4 + row
                    guard oy < g.outputHeight else { break }
                    outputTransform({ UnsafePointer(columns + (row * 6 + $0) * cout) }, { rows + $0 * cout }, count: cout)
                    for j in 0..<4 where tx * 4 + j < g.outputWidth {
                        let pixel = (n * g.outputHeight + oy) * g.outputWidth + tx * 4 + j
                        let out = y + pixel * yStride, value = rows + j * cout
                        if let residual {
                            let res = residual + pixel * residualStride
                            for c in 0..<cout { out[c] = value[c] + bias[c] + res[c] }
                        } else {
                            for c in 0..<cout { out[c] = value[c] + bias[c] }
                        }
                        if relu { for c in 0..<cout { out[c] = max(out[c], 0) } }
                    }
                }
            }
        }
    }
}
