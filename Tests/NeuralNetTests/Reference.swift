@testable import NeuralNet

/// Deterministic values in [-1, 1).
func randomFloats(_ count: Int, seed: UInt64) -> [Float] {
    var state = seed &* 0x9E3779B97F4A7C15 | 1
    return (0..<count).map { _ in
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return Float(state >> 40) / Float(1 << 23) - 1
    }
}

/// Direct convolution, one output at a time: the reference the im2col + GEMM path is tested against.
func conv2DNaive(x: [Float], w: [Float], bias: [Float], g: ConvGeometry, batch: Int, relu: Bool) -> [Float] {
    var y = [Float](repeating: 0, count: batch * g.outputHeight * g.outputWidth * g.outputChannels)
    for n in 0..<batch {
        for oy in 0..<g.outputHeight {
            for ox in 0..<g.outputWidth {
                for co in 0..<g.outputChannels {
                    var sum = Double(bias[co])
                    for ky in 0..<g.kernelHeight {
                        for kx in 0..<g.kernelWidth {
                            let iy = oy * g.strideY - g.padding.top + ky, ix = ox * g.strideX - g.padding.left + kx
                            guard iy >= 0, iy < g.inputHeight, ix >= 0, ix < g.inputWidth else { continue }
                            for ci in 0..<g.inputChannels {
                                let xv = x[((n * g.inputHeight + iy) * g.inputWidth + ix) * g.inputChannels + ci]
                                let wv = w[((ky * g.kernelWidth + kx) * g.inputChannels + ci) * g.outputChannels + co]
                                sum += Double(xv) * Double(wv)
                            }
                        }
                    }
                    let v = Float(sum)
                    y[((n * g.outputHeight + oy) * g.outputWidth + ox) * g.outputChannels + co] = relu ? max(v, 0) : v
                }
            }
        }
    }
    return y
}

/// Writes safetensors files for tests (F32 only, or raw headers for hostile cases).
struct SafeTensorsWriter {
    var tensors: [(name: String, shape: [Int], values: [Float])] = []

    mutating func add(_ name: String, _ shape: [Int], _ values: [Float]) {
        precondition(shape.reduce(1, *) == values.count)
        tensors.append((name, shape, values))
    }

    func bytes() -> [UInt8] {
        var header: [String] = []
        var offset = 0
        for t in tensors {
            let size = t.values.count * 4
            header.append("\"\(t.name)\":{\"dtype\":\"F32\",\"shape\":\(t.shape),\"data_offsets\":[\(offset),\(offset + size)]}")
            offset += size
        }
        var data: [UInt8] = []
        for t in tensors { t.values.withUnsafeBytes { data += $0 } }
        return Self.file(header: "{" + header.joined(separator: ",") + "}", data: data)
    }

    static func file(header: String, data: [UInt8]) -> [UInt8] {
        let h = Array(header.utf8)
        return (0..<8).map { UInt8((UInt64(h.count) >> (8 * UInt64($0))) & 0xFF) } + h + data
    }
}
