/// Why a model could not be loaded or run. Cases name tensors, files and
/// fields, so a broken bundle says exactly what is wrong with it.
public enum NeuralNetError: Error, Equatable, Sendable {
    case fileUnreadable(path: String, reason: String)
    case safetensorsHeader(String)
    case tensorMissing(name: String)
    case tensorShape(name: String, expected: [Int], actual: [Int])
    case tensorsUnused(names: [String])
    case invalidTensor(name: String, reason: String)
    case unsupportedDType(name: String, dtype: String)
    case manifest(String)
    case checksumMismatch(file: String, expected: String, actual: String)
    case goldenMismatch(input: Int, label: String, expected: Float, actual: Float, tolerance: Float)
    case inputTooSmall(layer: String, height: Int, width: Int)
    case batchTooLarge(requested: Int, capacity: Int)
    case inputSize(expected: Int, actual: Int)

    public var type: String {
        switch self {
        case .fileUnreadable: "file-unreadable"
        case .safetensorsHeader: "safetensors-header"
        case .tensorMissing: "tensor-missing"
        case .tensorShape: "tensor-shape"
        case .tensorsUnused: "tensors-unused"
        case .invalidTensor: "invalid-tensor"
        case .unsupportedDType: "unsupported-dtype"
        case .manifest: "manifest"
        case .checksumMismatch: "checksum-mismatch"
        case .goldenMismatch: "golden-mismatch"
        case .inputTooSmall: "input-too-small"
        case .batchTooLarge: "batch-too-large"
        case .inputSize: "input-size"
        }
    }

    public var detail: String {
        switch self {
        case .fileUnreadable(let path, let reason): "Cannot read \(path): \(reason)."
        case .safetensorsHeader(let reason): "Invalid safetensors file: \(reason)."
        case .tensorMissing(let name): "The weights have no tensor '\(name)'."
        case .tensorShape(let name, let expected, let actual):
            "Tensor '\(name)' has shape \(actual) where the graph needs \(expected)."
        case .tensorsUnused(let names):
            "The weights hold \(names.count) tensor(s) the graph does not use, first '\(names[0])'."
        case .invalidTensor(let name, let reason): "Tensor '\(name)' is invalid: \(reason)."
        case .unsupportedDType(let name, let dtype): "Tensor '\(name)' has dtype \(dtype); expected F32, F16 or BF16."
        case .manifest(let reason): "Invalid model.json: \(reason)."
        case .checksumMismatch(let file, let expected, let actual):
            "\(file) has sha256 \(actual) but model.json says \(expected)."
        case .goldenMismatch(let input, let label, let expected, let actual, let tolerance):
            "Golden vector \(input), label '\(label)': the framework computed \(expected), this engine \(actual) (tolerance \(tolerance)); the bundle is refused."
        case .inputTooSmall(let layer, let height, let width):
            "Input too small: layer \(layer) receives \(height)x\(width) and would produce an empty output."
        case .batchTooLarge(let requested, let capacity): "Batch of \(requested) exceeds the planned capacity \(capacity)."
        case .inputSize(let expected, let actual): "Input holds \(actual) floats where \(expected) are needed."
        }
    }
}

extension NeuralNetError: CustomStringConvertible {
    public var description: String { detail }
}
