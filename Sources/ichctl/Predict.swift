import ArgumentParser
import DICOM
import Foundation
import Inference
import Imaging
import NeuralNet

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a model bundle on DICOM files or .npy inputs; one JSON object per input and line.",
        discussion: """
            A .dcm input is preprocessed with the bundle's settings; a .npy input must be float32 [H, W, 3] \
            and is used as it is. Exits 1 if any input failed.
            """)

    @OptionGroup var options: ModelOptions

    @Flag(help: "Also print the pre-sigmoid logits.")
    var logits = false

    @Argument(help: "DICOM (.dcm) or NumPy (.npy) inputs.")
    var inputs: [String]

    func run() throws {
        let (batch, threads) = (options.batch, options.threads)
        BLASThreads.set(threads)
        let model = try ModelBundle.load(directory: options.model, threads: threads, batch: batch)
        let preprocessor = try Preprocessor(settings: PreprocessSettings(model.manifest))
        let pass = ForwardPass(model: model, capacity: batch, threads: threads)
        let labels = model.manifest.labels
        var failures = 0

        for chunk in stride(from: 0, to: inputs.count, by: batch).map({ Array(inputs[$0..<min($0 + batch, inputs.count)]) }) {
            var tensor: [Float] = []
            var ready: [String] = []
            for path in chunk {
                do {
                    tensor += try load(path, preprocessor: preprocessor, expected: pass.inputCount)
                    ready.append(path)
                } catch {
                    failures += 1
                    emit(["input": path, "error": ["type": error.type, "detail": error.detail]])
                }
            }
            var out = [Float](repeating: 0, count: ready.count * labels.count)
            try tensor.withUnsafeBufferPointer { input in
                try out.withUnsafeMutableBufferPointer { try pass.run(inputs: input, count: ready.count, logits: $0) }
            }
            for (i, path) in ready.enumerated() {
                let row = out[(i * labels.count)..<((i + 1) * labels.count)]
                var object: [String: Any] = [
                    "input": path,
                    "probabilities": Dictionary(uniqueKeysWithValues: zip(labels, row.map { Double(sigmoid($0)) })),
                ]
                if logits { object["logits"] = Dictionary(uniqueKeysWithValues: zip(labels, row.map(Double.init))) }
                emit(object)
            }
        }
        if failures > 0 { throw ExitCode(1) }
    }

    private func load(_ path: String, preprocessor: Preprocessor, expected: Int) throws(InputError) -> [Float] {
        if path.hasSuffix(".npy") {
            let settings = preprocessor.settings
            guard let (values, shape) = NPYFile.read(float32: try readFile(path)),
                  shape == [settings.height, settings.width, settings.channels]
            else {
                throw .unreadable("expected a float32 .npy of shape [\(preprocessor.settings.height), \(preprocessor.settings.width), 3]")
            }
            return values
        }
        let slice = try decodeFile(path)
        do {
            return try preprocessor.run(slice)
        } catch {
            throw .imaging(error)
        }
    }

    private func emit(_ object: [String: Any]) {
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        print(String(decoding: data, as: UTF8.self))
    }
}
