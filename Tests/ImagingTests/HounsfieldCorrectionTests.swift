import DICOM
import Imaging
import Testing

@Suite struct HounsfieldCorrectionTests {
    /// A 12-bit unsigned slice as the defective RSNA files store it: stored = HU mod 4096, intercept 1.
    func rsnaSlice(hu: [Int32], intercept: Double = 1) -> CTSlice {
        CTSlice(
            studyInstanceUID: "1.2", seriesInstanceUID: "1.2.3", sopInstanceUID: "1.2.3.4",
            rows: 1, columns: hu.count, bitsStored: 12, pixelRepresentation: .unsigned,
            rescaleIntercept: intercept, storedValues: hu.map { ($0 % 4096 + 4096) % 4096 })
    }

    @Test func rsnaCorrectionRecoversHounsfieldUnits() {
        let hu: [Int32] = [-1000, -999, -1, 0, 1, 40, 80, 1000, 3000, 3095]
        let slice = rsnaSlice(hu: hu)
        #expect(HounsfieldCorrection.hasRSNADefect(slice))
        #expect(HounsfieldCorrection(slice: slice, settings: .rsnaBaseline).apply(to: slice) == hu.map(Float.init))
    }

    @Test(arguments: [
        (1.0, 12, CTSlice.PixelRepresentation.unsigned, true),
        (-99.5, 12, .unsigned, true),  // int(-99.5) == -99 > -100
        (-100.5, 12, .unsigned, false),  // int(-100.5) == -100
        (-1024, 12, .unsigned, false),
        (1, 16, .unsigned, false),
        (1, 12, .signed, false),
    ])
    func rsnaConditions(intercept: Double, bitsStored: Int, representation: CTSlice.PixelRepresentation, fires: Bool) {
        var slice = rsnaSlice(hu: [0], intercept: intercept)
        slice.bitsStored = bitsStored
        slice.pixelRepresentation = representation
        #expect(HounsfieldCorrection.hasRSNADefect(slice) == fires)
        #expect(HounsfieldCorrection(slice: slice, settings: .rsnaBaseline).rsnaWrap == fires)
    }

    @Test func correctionCanBeSwitchedOff() {
        let slice = rsnaSlice(hu: [-1])
        var settings = PreprocessSettings.rsnaBaseline
        settings.rsnaCorrection = false
        #expect(HounsfieldCorrection(slice: slice, settings: settings).apply(to: slice) == [4096])
    }

    @Test func paddingAndOutOfFieldBecomeAir() {
        let slice = makeSlice(rows: 1, columns: 6, edit: {
            $0.storedValues = [-2000, -1500, -1200, 0, 24, 3000]
            $0.pixelPaddingValue = -2000
            $0.pixelPaddingRangeLimit = -1500
        })
        let hu = HounsfieldCorrection(slice: slice, settings: .rsnaBaseline).apply(to: slice)
        // -2000...-1500 is padding; stored -1200 is -2224 HU, below air.
        #expect(hu == [-1000, -1000, -1000, -1000, -1000, 1976])
    }

    @Test func slopeAndInterceptInDoublePrecision() {
        let slice = makeSlice(rows: 1, columns: 3, edit: {
            $0.storedValues = [0, 1, 4001]
            $0.rescaleSlope = 0.5
            $0.rescaleIntercept = -1000.25
        })
        #expect(HounsfieldCorrection(slice: slice, settings: .rsnaBaseline).apply(to: slice) == [-1000, -999.75, 1000.25])
    }
}
