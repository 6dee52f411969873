import Crypto
import Foundation

/// A model bundle directory: `model.json`, `weights.safetensors` and optional
/// golden vectors. Loading refuses anything inconsistent: a bad manifest, a
/// checksum mismatch, a missing, misshapen or unused tensor, and outputs that
/// differ from the ones the training framework computed.
public enum ModelBundle {
    public static func load(
        directory: String, checkGolden: Bool = true, threads: Int = 1, batch: Int = 1, winograd: Bool = true
    ) throws(NeuralNetError) -> Model {
        let manifest = try readManifest(directory: directory)
        let weightsPath = directory + "/" + manifest.weights.file
        let mapped = try MappedFile(path: weightsPath)
        let actual = withExtendedLifetime(mapped) { sha256(mapped.bytes) }
        guard actual == manifest.weights.sha256?.lowercased() else {
            throw .checksumMismatch(file: manifest.weights.file, expected: manifest.weights.sha256 ?? "", actual: actual)
        }
        let model = try Model(manifest: manifest, weights: try SafeTensors(bytes: mapped.bytes, owner: mapped), batch: batch, winograd: winograd)
        if checkGolden, let golden = manifest.golden {
            try GoldenVectors(path: directory + "/" + golden.file, model: model)
                .check(model: model, tolerance: golden.tolerance ?? 1e-4, threads: threads)
        }
        return model
    }

    public static func readManifest(directory: String) throws(NeuralNetError) -> Manifest {
        let path = directory + "/model.json"
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw .fileUnreadable(path: path, reason: "no such file or not readable")
        }
        let manifest: Manifest
        do {
            manifest = try JSONDecoder().decode(Manifest.self, from: data)
        } catch let DecodingError.keyNotFound(key, _) {
            throw .manifest("field '\(key.stringValue)' is missing")
        } catch let DecodingError.dataCorrupted(context) {
            throw .manifest("not valid JSON (\(context.debugDescription))")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            throw .manifest("field '\(context.codingPath.map(\.stringValue).joined(separator: "."))' has the wrong type")
        } catch {
            throw .manifest("cannot be decoded")
        }
        try manifest.validate()
        return manifest
    }

    static func sha256(_ bytes: UnsafeRawBufferPointer) -> String {
        SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }
}

/// Inputs and the outputs the training framework computed for them; a bundle
/// whose outputs differ is refused at load time.
struct GoldenVectors {
    let inputs: [Float]
    let outputs: [Float]
    let count: Int

    init(path: String, model: Model) throws(NeuralNetError) {
        let file = try SafeTensors(path: path)
        let input = model.manifest.input
        guard let entry = file.entries["inputs"] else { throw .tensorMissing(name: "inputs") }
        count = entry.shape.first ?? 0
        guard (1...64).contains(count) else { throw .tensorShape(name: "inputs", expected: [1, input.height, input.width, 3], actual: entry.shape) }
        inputs = try file.floats("inputs", shape: [count, input.height, input.width, input.channels])
        outputs = try file.floats("outputs", shape: [count, model.manifest.labels.count])
    }

    func check(model: Model, tolerance: Float, threads: Int) throws(NeuralNetError) {
        let pass = ForwardPass(model: model, capacity: count, threads: threads)
        var logits = [Float](repeating: 0, count: outputs.count)
        let result: Result<Void, NeuralNetError> = inputs.withUnsafeBufferPointer { input in
            logits.withUnsafeMutableBufferPointer { out in
                Result { () throws(NeuralNetError) in try pass.run(inputs: input, count: count, logits: out) }
            }
        }
        try result.get()
        let labels = model.manifest.labels
        var worst = (index: 0, difference: Float(-1))
        for i in 0..<outputs.count {
            let difference = abs(sigmoid(logits[i]) - outputs[i])
            if !(difference <= worst.difference) { worst = (i, difference.isNaN ? .infinity : difference) }
        }
        if worst.difference > tolerance {
            throw .goldenMismatch(input: worst.index / labels.count, label: labels[worst.index % labels.count],
                                  expected: outputs[worst.index], actual: sigmoid(logits[worst.index]), tolerance: tolerance)
        }
    }
}
