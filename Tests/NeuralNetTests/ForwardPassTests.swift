@testable import NeuralNet
import Testing

@Suite struct ForwardPassTests {
    /// Each image's output in a batch of 8 equals its output alone.
    @Test(arguments: [(Manifest.Architecture.resnet50, 64), (.inceptionV3, 75)])
    func batchInvariance(architecture: Manifest.Architecture, size: Int) throws {
        let weights = try parseSafeTensors(randomWeights(for: try graph(architecture, size: size)).bytes())
        let model = try Model(manifest: makeManifest(architecture, size: size), weights: weights)
        let batch = ForwardPass(model: model, capacity: 8, threads: 2)
        let single = ForwardPass(model: model, capacity: 1, threads: 1)
        let inputs = randomFloats(8 * batch.inputCount, seed: 11).map { ($0 + 1) / 2 }
        var together = [Float](repeating: 0, count: 8 * 6)
        try inputs.withUnsafeBufferPointer { x in
            try together.withUnsafeMutableBufferPointer { try batch.run(inputs: x, count: 8, logits: $0) }
        }
        #expect(together.allSatisfy { $0.isFinite })
        let spread = (1..<8).map { i in (0..<6).map { abs(together[i * 6 + $0] - together[$0]) }.max()! }.max()!
        #expect(spread > 1e-3, "outputs should differ between images")
        for i in 0..<8 {
            var alone = [Float](repeating: 0, count: 6)
            try inputs.withUnsafeBufferPointer { x in
                let one = UnsafeBufferPointer(rebasing: x[(i * single.inputCount)..<((i + 1) * single.inputCount)])
                try alone.withUnsafeMutableBufferPointer { try single.run(inputs: one, count: 1, logits: $0) }
            }
            for j in 0..<6 {
                #expect(abs(sigmoid(alone[j]) - sigmoid(together[i * 6 + j])) <= 1e-5, "image \(i) label \(j)")
            }
        }
        // A partial batch runs on the same plan.
        var three = [Float](repeating: 0, count: 3 * 6)
        try inputs.withUnsafeBufferPointer { x in
            try three.withUnsafeMutableBufferPointer {
                try batch.run(inputs: UnsafeBufferPointer(rebasing: x[0..<(3 * batch.inputCount)]), count: 3, logits: $0)
            }
        }
        #expect(zip(three, together.prefix(18)).allSatisfy { abs(sigmoid($0) - sigmoid($1)) <= 1e-5 })
    }

    @Test func refusesOversizedBatch() throws {
        let weights = try parseSafeTensors(randomWeights(for: try graph(.resnet50, size: 32)).bytes())
        let pass = ForwardPass(model: try Model(manifest: makeManifest(.resnet50, size: 32), weights: weights), capacity: 1, threads: 1)
        var out = [Float](repeating: 0, count: 12)
        let x = [Float](repeating: 0, count: 2 * pass.inputCount)
        #expect(throws: NeuralNetError.batchTooLarge(requested: 2, capacity: 1)) {
            try x.withUnsafeBufferPointer { x in try out.withUnsafeMutableBufferPointer { try pass.run(inputs: x, count: 2, logits: $0) } }
        }
    }
}
