import DICOM

/// Stored value → Hounsfield units with the known scanner defects fixed:
/// padding and out-of-field values become air, and the RSNA 2019 12-bit
/// intercept defect is undone. The display inversion of MONOCHROME1 is never
/// applied: Hounsfield values come from the modality LUT alone.
public struct HounsfieldCorrection: Sendable, Equatable {
    public var slope: Double
    public var intercept: Double
    /// Add 1000 to stored values and wrap at 4096 (then `intercept` is -1000).
    public var rsnaWrap: Bool
    /// Stored values that mean "no data" (Pixel Padding Value up to Pixel Padding Range Limit).
    public var padding: ClosedRange<Int32>?
    public var airHU: Float

    public init(slice: CTSlice, settings: PreprocessSettings) {
        let rsna = settings.rsnaCorrection && Self.hasRSNADefect(slice)
        slope = slice.rescaleSlope
        intercept = rsna ? -1000 : slice.rescaleIntercept
        rsnaWrap = rsna
        airHU = settings.airHU
        if let value = slice.pixelPaddingValue.flatMap(Int32.init(exactly:)) {
            let limit = slice.pixelPaddingRangeLimit.flatMap(Int32.init(exactly:)) ?? value
            padding = min(value, limit)...max(value, limit)
        }
    }

    /// The baseline's test: BitsStored 12, unsigned, and `int(RescaleIntercept) > -100`
    /// (Python's `int` truncates toward zero).
    public static func hasRSNADefect(_ slice: CTSlice) -> Bool {
        slice.bitsStored == 12 && slice.pixelRepresentation == .unsigned
            && slice.rescaleIntercept.rounded(.towardZero) > -100
    }

    @inline(__always)
    public func hounsfield(_ stored: Int32) -> Float {
        if let padding, padding.contains(stored) { return airHU }
        var value = stored
        if rsnaWrap {
            value += 1000
            if value >= 4096 { value -= 4096 }
        }
        return max(Float(Double(value) * slope + intercept), airHU)
    }

    /// The corrected image, `rows * columns` values.
    public func apply(to slice: CTSlice) -> [Float] {
        slice.storedValues.map(hounsfield)
    }
}
