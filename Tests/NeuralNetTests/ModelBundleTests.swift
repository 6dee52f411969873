import Foundation
@testable import NeuralNet
import Testing

@Suite struct ModelBundleTests {
    let size = 32
    /// Random ResNet50 weights, made once: generating 23.5 million floats per test is slow in debug builds.
    static let weights = randomWeights(for: try! ResNet50.graph(height: 32, width: 32, classes: 6))

    /// Writes a ResNet50 bundle at 32x32 with random weights; `edit` may change the tensors before writing.
    func writeBundle(golden: [Float]? = nil, manifestEdit: (inout Manifest) -> Void = { _ in },
                     edit: (inout SafeTensorsWriter) -> Void = { _ in }) throws -> String {
        let directory = temporaryDirectory()
        var writer = Self.weights
        edit(&writer)
        let bytes = writer.bytes()
        try Data(bytes).write(to: URL(fileURLWithPath: directory + "/weights.safetensors"))
        let sha = bytes.withUnsafeBytes { ModelBundle.sha256($0) }
        var manifest = makeManifest(.resnet50, size: size, sha256: sha,
                                    golden: golden == nil ? nil : .init(file: "golden.safetensors", tolerance: 1e-4))
        manifestEdit(&manifest)
        if let golden {
            var g = SafeTensorsWriter()
            g.add("inputs", [1, size, size, 3], [Float](repeating: 0.5, count: size * size * 3))
            g.add("outputs", [1, 6], golden)
            try Data(g.bytes()).write(to: URL(fileURLWithPath: directory + "/golden.safetensors"))
        }
        try JSONEncoder().encode(manifest).write(to: URL(fileURLWithPath: directory + "/model.json"))
        return directory
    }

    @Test func loadsAValidBundle() throws {
        let model = try ModelBundle.load(directory: try writeBundle())
        #expect(model.manifest.architecture == .resnet50)
    }

    @Test func refusesChangedWeights() throws {
        let directory = try writeBundle()
        let path = directory + "/weights.safetensors"
        var bytes = [UInt8](FileManager.default.contents(atPath: path)!)
        bytes[bytes.count - 1] ^= 1
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        #expect { try ModelBundle.load(directory: directory) } throws: {
            if case NeuralNetError.checksumMismatch = $0 { true } else { false }
        }
    }

    @Test func namesTheMissingTensor() throws {
        let directory = try writeBundle(edit: { $0.tensors.removeAll { $0.name == "conv3_block2_2_bn.moving_mean" } })
        #expect(throws: NeuralNetError.tensorMissing(name: "conv3_block2_2_bn.moving_mean")) {
            try ModelBundle.load(directory: directory)
        }
    }

    @Test func refusesUnusedTensors() throws {
        let directory = try writeBundle(edit: { $0.add("extra.kernel", [1], [0]) })
        #expect(throws: NeuralNetError.tensorsUnused(names: ["extra.kernel"])) { try ModelBundle.load(directory: directory) }
    }

    @Test func refusesAWrongShape() throws {
        let directory = try writeBundle(edit: {
            let i = $0.tensors.firstIndex { $0.name == "head.bias" }!
            $0.tensors[i] = ("head.bias", [5], [0, 0, 0, 0, 0])
        })
        #expect(throws: NeuralNetError.tensorShape(name: "head.bias", expected: [6], actual: [5])) {
            try ModelBundle.load(directory: directory)
        }
    }

    @Test func refusesNegativeVariance() throws {
        let directory = try writeBundle(edit: {
            let i = $0.tensors.firstIndex { $0.name == "conv1_bn.moving_variance" }!
            $0.tensors[i].values[3] = -2
        })
        #expect(throws: NeuralNetError.invalidTensor(name: "conv1_bn.moving_variance", reason: "channel 3 is negative or not finite")) {
            try ModelBundle.load(directory: directory)
        }
    }

    /// Golden vectors: the bundle loads when they match and is refused, naming the output, when one is off.
    @Test func checksGoldenVectors() throws {
        let probe = try ModelBundle.load(directory: try writeBundle())
        let pass = ForwardPass(model: probe, capacity: 1, threads: 1)
        var logits = [Float](repeating: 0, count: 6)
        let input = [Float](repeating: 0.5, count: size * size * 3)
        try input.withUnsafeBufferPointer { x in try logits.withUnsafeMutableBufferPointer { try pass.run(inputs: x, count: 1, logits: $0) } }
        var outputs = logits.map(sigmoid)
        _ = try ModelBundle.load(directory: try writeBundle(golden: outputs))

        outputs[4] += 0.001
        #expect { try ModelBundle.load(directory: try writeBundle(golden: outputs)) } throws: {
            guard case NeuralNetError.goldenMismatch(let input, let label, _, _, _) = $0 else { return false }
            return input == 0 && label == "subarachnoid"
        }
    }

    typealias ManifestEdit = @Sendable (inout Manifest) -> Void

    static let badManifests: [(String, ManifestEdit)] = [
        ("wrong labels", { $0.labels.swapAt(1, 2) }),
        ("path in file name", { $0.weights.file = "../weights.safetensors" }),
        ("bad sha", { $0.weights.sha256 = "abc" }),
        ("tiny input", { $0.input.height = 8 }),
        ("threshold above 1", { $0.thresholds[0] = 1.5 }),
        ("unknown convention", { $0.convention = "pytorch" }),
    ]

    @Test(arguments: badManifests)
    func refusesBadManifests(name: String, edit: ManifestEdit) throws {
        let directory = try writeBundle(manifestEdit: edit)
        #expect(throws: NeuralNetError.self, "\(name)") { try ModelBundle.load(directory: directory) }
    }

    @Test func missingManifestIsAnError() {
        #expect(throws: NeuralNetError.self) { try ModelBundle.load(directory: temporaryDirectory()) }
    }
}
