@testable import NeuralNet
import Testing

@Suite struct GraphTests {
    /// DESIGN.md's measured costs at 256x256: ResNet50 5.0 GMAC, InceptionV3 3.9 GMAC.
    @Test(arguments: [(Manifest.Architecture.resnet50, 5.0), (.inceptionV3, 3.9)])
    func multiplyAddsMatchTheKnownCost(architecture: Manifest.Architecture, gmac: Double) throws {
        let g = try graph(architecture, size: 256)
        #expect(abs(Double(g.multiplyAdds) / 1e9 - gmac) < 0.1, "\(architecture): \(Double(g.multiplyAdds) / 1e9)")
    }

    @Test func layerCountsAndShapes() throws {
        let resnet = try graph(.resnet50, size: 256)
        #expect(resnet.convolutions.count == 53)
        #expect(resnet.convolutions.last?.output.height == 8)
        let inception = try graph(.inceptionV3, size: 299)
        #expect(inception.convolutions.count == 94)
        #expect(inception.convolutions.last?.output.height == 8)  // 8x8x2048 at 299, as Keras documents
        let at256 = try graph(.inceptionV3, size: 256)
        #expect(at256.convolutions.last?.output.height == 6)
    }

    @Test func inputTooSmallIsATypedError() {
        #expect(throws: NeuralNetError.self) { try InceptionV3.graph(height: 40, width: 40, classes: 6) }
    }

    /// Two buffers that are alive at the same time never share arena memory.
    @Test(arguments: [Manifest.Architecture.resnet50, .inceptionV3])
    func memoryPlanKeepsLiveBuffersApart(architecture: Manifest.Architecture) throws {
        let g = try graph(architecture, size: 96)
        let plan = MemoryPlan(graph: g, batch: 3)
        var first = [Int](repeating: Int.max, count: g.buffers.count), last = [Int](repeating: -1, count: g.buffers.count)
        first[g.input.buffer] = -1
        for (i, op) in g.operations.enumerated() {
            for v in op.reads + [op.writes] { first[v.buffer] = min(first[v.buffer], i); last[v.buffer] = max(last[v.buffer], i) }
        }
        last[g.output.buffer] = g.operations.count
        let range = { (b: Int) in plan.offsets[b]..<(plan.offsets[b] + g.buffers[b].elementsPerImage * 3) }
        for a in 0..<g.buffers.count where first[a] != Int.max {
            #expect(range(a).upperBound <= plan.arenaCount)
            for b in (a + 1)..<g.buffers.count where first[b] != Int.max {
                let overlapInTime = first[a] <= last[b] && first[b] <= last[a]
                #expect(!(overlapInTime && range(a).overlaps(range(b))), "buffers \(a) and \(b)")
            }
        }
        let total = g.buffers.map(\.elementsPerImage).reduce(0, +) * 3
        #expect(plan.arenaCount < total / 2, "reuse should at least halve the arena")
    }
}
