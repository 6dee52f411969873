/// One decoded greyscale frame (a slice) with the attributes the
/// preprocessing and the study view need. Pixels are kept as stored values
/// (masked to BitsStored and sign-extended), because the RSNA correction
/// works on stored values; `hounsfieldUnits()` applies the modality LUT.
public struct CTSlice: Sendable {
    /// Largest accepted Rows or Columns; checked before any pixel buffer is allocated.
    public static let maximumDimension = 4096
    /// Largest accepted NumberOfFrames: a whole-body thin-slice Enhanced CT stays well below it.
    public static let maximumFrames = 4096

    public enum PixelRepresentation: Int, Sendable {
        case unsigned = 0
        case signed = 1
    }

    public enum PhotometricInterpretation: String, Sendable {
        /// Display inverts grey levels; Hounsfield values do not change.
        case monochrome1 = "MONOCHROME1"
        case monochrome2 = "MONOCHROME2"
    }

    /// The stored VOI window (first value when several are given).
    public struct StoredWindow: Sendable, Equatable {
        public var center: Double
        public var width: Double

        public init(center: Double, width: Double) {
            self.center = center
            self.width = width
        }
    }

    public var studyInstanceUID: String
    public var seriesInstanceUID: String
    public var sopInstanceUID: String
    public var sopClassUID: String?
    public var modality: String?
    public var transferSyntaxUID: String
    /// 1-based; a single-frame object's one slice is frame 1.
    public var frameNumber: Int
    public var instanceNumber: Int?
    public var imagePositionPatient: [Double]?
    public var imageOrientationPatient: [Double]?
    public var pixelSpacing: [Double]?
    public var rows: Int
    public var columns: Int
    public var bitsAllocated: Int
    public var bitsStored: Int
    public var pixelRepresentation: PixelRepresentation
    public var photometricInterpretation: PhotometricInterpretation
    public var rescaleSlope: Double
    public var rescaleIntercept: Double
    /// Pixel Padding Value and, when present, Pixel Padding Range Limit, as stored values.
    public var pixelPaddingValue: Int?
    public var pixelPaddingRangeLimit: Int?
    public var storedWindow: StoredWindow?
    /// Row-major, `rows * columns` values.
    public var storedValues: [Int32]

    public init(
        studyInstanceUID: String, seriesInstanceUID: String, sopInstanceUID: String,
        sopClassUID: String? = nil, modality: String? = "CT",
        transferSyntaxUID: String = "1.2.840.10008.1.2.1", frameNumber: Int = 1,
        instanceNumber: Int? = nil, imagePositionPatient: [Double]? = nil,
        imageOrientationPatient: [Double]? = nil, pixelSpacing: [Double]? = nil,
        rows: Int, columns: Int, bitsAllocated: Int = 16, bitsStored: Int = 16,
        pixelRepresentation: PixelRepresentation = .signed,
        photometricInterpretation: PhotometricInterpretation = .monochrome2,
        rescaleSlope: Double = 1, rescaleIntercept: Double = 0,
        pixelPaddingValue: Int? = nil, pixelPaddingRangeLimit: Int? = nil,
        storedWindow: StoredWindow? = nil, storedValues: [Int32]
    ) {
        precondition(storedValues.count == rows * columns, "storedValues must hold rows * columns values")
        self.studyInstanceUID = studyInstanceUID
        self.seriesInstanceUID = seriesInstanceUID
        self.sopInstanceUID = sopInstanceUID
        self.sopClassUID = sopClassUID
        self.modality = modality
        self.transferSyntaxUID = transferSyntaxUID
        self.frameNumber = frameNumber
        self.instanceNumber = instanceNumber
        self.imagePositionPatient = imagePositionPatient
        self.imageOrientationPatient = imageOrientationPatient
        self.pixelSpacing = pixelSpacing
        self.rows = rows
        self.columns = columns
        self.bitsAllocated = bitsAllocated
        self.bitsStored = bitsStored
        self.pixelRepresentation = pixelRepresentation
        self.photometricInterpretation = photometricInterpretation
        self.rescaleSlope = rescaleSlope
        self.rescaleIntercept = rescaleIntercept
        self.pixelPaddingValue = pixelPaddingValue
        self.pixelPaddingRangeLimit = pixelPaddingRangeLimit
        self.storedWindow = storedWindow
        self.storedValues = storedValues
    }

    /// Modality LUT only (`stored * slope + intercept`, in double precision):
    /// the values pydicom's `apply_modality_lut` gives. No correction, no padding mask.
    public func hounsfieldUnits() -> [Float] {
        storedValues.map { Float(Double($0) * rescaleSlope + rescaleIntercept) }
    }
}
