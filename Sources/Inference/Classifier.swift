import DICOM
import Dispatch
import Imaging
import NeuralNet

/// A loaded bundle with its preprocessing: slices in, six probabilities per
/// slice out. Buffers are sized once for `capacity` slices; `classify` is not
/// reentrant and is called from the batcher's one thread.
public final class Classifier: @unchecked Sendable {
    // @unchecked: the buffers are only used inside `classify`, which the batcher serialises.
    public let manifest: Manifest
    public let capacity: Int
    private let preprocessor: Preprocessor
    private let pass: ForwardPass
    private var inputs: [Float]
    private var logits: [Float]
    private let threads: Int

    /// Loads the bundle (checksum and golden vectors included) for batches of up to `capacity`.
    public init(bundle directory: String, capacity: Int, threads: Int) throws {
        let model = try ModelBundle.load(directory: directory, checkGolden: true, threads: threads, batch: capacity)
        manifest = model.manifest
        self.capacity = capacity
        self.threads = threads
        preprocessor = try Preprocessor(settings: PreprocessSettings(model.manifest))
        pass = ForwardPass(model: model, capacity: capacity, threads: threads)
        inputs = [Float](repeating: 0, count: capacity * pass.inputCount)
        logits = [Float](repeating: 0, count: capacity * pass.outputCount)
    }

    /// Preprocesses the slices in parallel into one batch, runs one forward
    /// pass and returns each slice's probabilities in the manifest's label order.
    public func classify(_ slices: [CTSlice]) throws -> [[Float]] {
        precondition(slices.count <= capacity, "a batch larger than the classifier's capacity")
        guard !slices.isEmpty else { return [] }
        let perImage = pass.inputCount
        let preprocessor = self.preprocessor
        var failure: (any Error)?
        inputs.withUnsafeMutableBufferPointer { buffer in
            nonisolated(unsafe) let base = buffer.baseAddress!
            let errors = UnsafeMutableBufferPointer<(any Error)?>.allocate(capacity: slices.count)
            errors.initialize(repeating: nil)
            defer { errors.deallocate() }
            nonisolated(unsafe) let errorSlots = errors
            DispatchQueue.concurrentPerform(iterations: slices.count) { i in
                do {
                    try preprocessor.run(slices[i], into: UnsafeMutableBufferPointer(start: base + i * perImage, count: perImage))
                } catch {
                    errorSlots[i] = error
                }
            }
            failure = errors.compactMap { $0 }.first
        }
        if let failure { throw failure }
        let count = slices.count
        try inputs.withUnsafeBufferPointer { input in
            try logits.withUnsafeMutableBufferPointer { output in
                try pass.run(
                    inputs: UnsafeBufferPointer(rebasing: input[0..<count * perImage]), count: count,
                    logits: UnsafeMutableBufferPointer(rebasing: output[0..<count * pass.outputCount]))
            }
        }
        let classes = pass.outputCount
        return (0..<count).map { i in (0..<classes).map { sigmoid(logits[i * classes + $0]) } }
    }

    /// One forward pass over a zero batch, so the first real batch does not
    /// pay for page faults in the weights and arena; readiness waits for it.
    public func warmUp() throws {
        let count = capacity
        try inputs.withUnsafeBufferPointer { input in
            try logits.withUnsafeMutableBufferPointer { output in
                try pass.run(inputs: UnsafeBufferPointer(rebasing: input[0..<count * pass.inputCount]), count: count,
                             logits: UnsafeMutableBufferPointer(rebasing: output[0..<count * pass.outputCount]))
            }
        }
    }
}
