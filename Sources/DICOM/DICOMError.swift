/// Why a DICOM object could not become a `CTSlice`. Cases name attributes and
/// sizes, never attribute values: those may identify a patient.
public enum DICOMError: Error, Equatable, Sendable {
    case notDICOM
    case truncated
    case malformed
    case noPixelData
    case unsupportedTransferSyntax(uid: String)
    case unsupportedPhotometricInterpretation(String)
    case unsupportedPixelFormat(samplesPerPixel: Int, bitsAllocated: Int)
    case multiFrame(frames: Int)
    case tooManyFrames(Int)
    case frameOutOfRange(frame: Int, frames: Int)
    case modalityLUTSequence
    case missingAttribute(String)
    case invalidAttribute(String)
    case malformedUID(attribute: String)
    case absurdDimensions(rows: Int, columns: Int)
    case pixelDataTooShort(expected: Int, actual: Int)
    case corruptPixelData
    case pixelDataMismatch
    case outOfMemory
    case internalError

    /// A stable machine-readable name (used as the problem `type` suffix and in `ichctl --json`).
    public var type: String {
        switch self {
        case .notDICOM: "not-dicom"
        case .truncated: "truncated"
        case .malformed: "malformed"
        case .noPixelData: "no-pixel-data"
        case .unsupportedTransferSyntax: "unsupported-transfer-syntax"
        case .unsupportedPhotometricInterpretation: "unsupported-photometric-interpretation"
        case .unsupportedPixelFormat: "unsupported-pixel-format"
        case .multiFrame: "multi-frame"
        case .tooManyFrames: "too-many-frames"
        case .frameOutOfRange: "frame-out-of-range"
        case .modalityLUTSequence: "unsupported-modality-lut"
        case .missingAttribute: "missing-attribute"
        case .invalidAttribute: "invalid-attribute"
        case .malformedUID: "malformed-uid"
        case .absurdDimensions: "absurd-dimensions"
        case .pixelDataTooShort: "pixel-data-too-short"
        case .corruptPixelData: "corrupt-pixel-data"
        case .pixelDataMismatch: "pixel-data-mismatch"
        case .outOfMemory: "out-of-memory"
        case .internalError: "internal-error"
        }
    }

    public var detail: String {
        switch self {
        case .notDICOM:
            "The data is not DICOM: no 'DICM' preamble and no DICOM data set at the start."
        case .truncated:
            "The DICOM data ends in the middle of an element; the file is truncated."
        case .malformed:
            "The DICOM data could not be parsed."
        case .noPixelData:
            "The DICOM object has no Pixel Data (7FE0,0010); it is not an image."
        case .unsupportedTransferSyntax(let uid):
            "Transfer syntax \(uid) cannot be decoded; send it uncompressed, RLE, JPEG, JPEG-LS or JPEG 2000."
        case .unsupportedPhotometricInterpretation(let value):
            "Photometric interpretation \(value) is not supported; CT slices are MONOCHROME1 or MONOCHROME2."
        case .unsupportedPixelFormat(let samples, let bits):
            "Pixel format with \(samples) sample(s) per pixel and \(bits) bits allocated is not supported; expected 1 sample of 8 or 16 bits."
        case .multiFrame(let frames):
            "The object holds \(frames) frames; name the frame to decode (1 to \(frames))."
        case .tooManyFrames(let frames):
            "NumberOfFrames is \(frames); at most \(CTSlice.maximumFrames) frames per object are accepted."
        case .frameOutOfRange(let frame, let frames):
            "Frame \(frame) does not exist; the object has \(frames) frame(s), numbered from 1."
        case .modalityLUTSequence:
            "The object maps stored values through a Modality LUT Sequence, which is not supported; Hounsfield units need RescaleSlope/RescaleIntercept."
        case .missingAttribute(let name):
            "Required attribute \(name) is missing."
        case .invalidAttribute(let name):
            "Attribute \(name) has an invalid value."
        case .malformedUID(let attribute):
            "\(attribute) is not a valid identifier (1 to 64 characters of 0-9, A-Z, a-z, dot, underscore and hyphen)."
        case .absurdDimensions(let rows, let columns):
            "Image size \(rows)x\(columns) is outside the accepted range (1 to \(CTSlice.maximumDimension) per side)."
        case .pixelDataTooShort(let expected, let actual):
            "Pixel Data holds \(actual) bytes where the image attributes require \(expected)."
        case .corruptPixelData:
            "The compressed pixel data cannot be decoded; the codestream is corrupt or incomplete."
        case .pixelDataMismatch:
            "The compressed image's size, component count or precision does not match Rows, Columns, SamplesPerPixel and BitsAllocated."
        case .outOfMemory:
            "Not enough memory to decode the DICOM object."
        case .internalError:
            "The DICOM decoder failed unexpectedly."
        }
    }
}

extension DICOMError: CustomStringConvertible {
    public var description: String { detail }
}
