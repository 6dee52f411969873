public enum ImagingError: Error, Equatable, Sendable {
    case invalidSettings(String)
    case outputSize(expected: Int, actual: Int)

    public var type: String {
        switch self {
        case .invalidSettings: "invalid-preprocess-settings"
        case .outputSize: "output-size"
        }
    }

    public var detail: String {
        switch self {
        case .invalidSettings(let reason): "Invalid preprocessing settings: \(reason)."
        case .outputSize(let expected, let actual):
            "The output buffer holds \(actual) floats where \(expected) are needed."
        }
    }
}

extension ImagingError: CustomStringConvertible {
    public var description: String { detail }
}
