/// `model.json` of a model bundle (see README, "Model bundles").
public struct Manifest: Codable, Sendable, Equatable {
    public enum Architecture: String, Codable, Sendable {
        case resnet50
        case inceptionV3 = "inception_v3"
    }

    public struct InputShape: Codable, Sendable, Equatable {
        public var height: Int
        public var width: Int
        public var channels: Int
    }

    public struct Window: Codable, Sendable, Equatable {
        public var center: Double
        public var width: Double
    }

    /// How slices become input; mirrors `Imaging.PreprocessSettings`, which NeuralNet cannot import.
    public struct Preprocessing: Codable, Sendable, Equatable {
        public var windows: [Window]
        public var order: String
        public var resize: String
        public var rsnaCorrection: Bool
        public var airHU: Float

        enum CodingKeys: String, CodingKey {
            case windows, order, resize
            case rsnaCorrection = "rsna_correction"
            case airHU = "air_hu"
        }
    }

    public struct Provenance: Codable, Sendable, Equatable {
        public var trainedOn: String
        public var syntheticData: Bool
        public var clinicalUse: Bool
        public var source: String?
        public var notes: String?

        enum CodingKeys: String, CodingKey {
            case trainedOn = "trained_on"
            case syntheticData = "synthetic_data"
            case clinicalUse = "clinical_use"
            case source, notes
        }
    }

    public struct FileReference: Codable, Sendable, Equatable {
        public var file: String
        public var sha256: String?
        public var tolerance: Float?
    }

    /// The RSNA 2019 label order, used everywhere.
    public static let labels = ["any", "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"]

    public var formatVersion: Int
    public var name: String
    public var version: String
    public var architecture: Architecture
    public var convention: String
    public var input: InputShape
    public var inputScale: Float
    public var inputOffset: Float
    public var batchNormEpsilon: Double
    public var labels: [String]
    public var thresholds: [Double]
    public var preprocessing: Preprocessing
    public var provenance: Provenance
    public var weights: FileReference
    public var golden: FileReference?

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version"
        case name, version, architecture, convention, input
        case inputScale = "input_scale"
        case inputOffset = "input_offset"
        case batchNormEpsilon = "batch_norm_epsilon"
        case labels, thresholds, preprocessing, provenance, weights, golden
    }

    public func validate() throws(NeuralNetError) {
        guard formatVersion == 1 else { throw .manifest("format_version \(formatVersion) is not supported (expected 1)") }
        guard convention == "keras" else { throw .manifest("convention '\(convention)' is not supported (expected keras)") }
        guard input.channels == 3, (32...2048).contains(input.height), (32...2048).contains(input.width) else {
            throw .manifest("input must be 3 channels of 32 to 2048 pixels per side")
        }
        guard labels == Self.labels else { throw .manifest("labels must be \(Self.labels.joined(separator: ", ")) in that order") }
        guard thresholds.count == labels.count, thresholds.allSatisfy({ (0...1).contains($0) }) else {
            throw .manifest("thresholds must give one probability in [0, 1] per label")
        }
        guard inputScale.isFinite, inputOffset.isFinite, batchNormEpsilon > 0, batchNormEpsilon.isFinite else {
            throw .manifest("input_scale, input_offset and batch_norm_epsilon must be finite (epsilon > 0)")
        }
        guard preprocessing.windows.count == input.channels else {
            throw .manifest("preprocessing needs one window per input channel")
        }
        for reference in [weights] + (golden.map { [$0] } ?? []) {
            guard !reference.file.isEmpty, !reference.file.contains("/"), !reference.file.hasPrefix(".") else {
                throw .manifest("file '\(reference.file)' must be a plain file name inside the bundle")
            }
        }
        guard let sha = weights.sha256, sha.count == 64, sha.allSatisfy(\.isHexDigit) else {
            throw .manifest("weights.sha256 must be 64 hexadecimal digits")
        }
        if let tolerance = golden?.tolerance, !(tolerance > 0 && tolerance <= 0.01) {
            throw .manifest("golden.tolerance must be in (0, 0.01]")
        }
    }
}
