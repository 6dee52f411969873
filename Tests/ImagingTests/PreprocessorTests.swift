import DICOM
import Imaging
import Testing

/// The slow, obvious pipeline the fused `Preprocessor` must match: correct the
/// whole image, window it into planes, then resize each plane separably the way
/// OpenCV does (rows first, then columns).
func referencePreprocess(_ slice: CTSlice, _ settings: PreprocessSettings) -> [Float] {
    let hu = HounsfieldCorrection(slice: slice, settings: settings).apply(to: slice)
    let (h, w, channels) = (settings.height, settings.width, settings.windows.count)
    func axis(_ d: Int, _ source: Int, _ destination: Int) -> (Int, Int, Float) {
        let scale = Double(source) / Double(destination)
        if settings.resize == .nearest {
            let s = min(Int((Double(d) * scale).rounded(.down)), source - 1)
            return (s, s, 0)
        }
        let f = Float((Double(d) + 0.5) * scale - 0.5)
        let s = Int(f.rounded(.down))
        if s < 0 { return (0, 0, 0) }
        if s >= source - 1 { return (source - 1, source - 1, 0) }
        return (s, s + 1, f - Float(s))
    }
    func window(_ x: Float, _ wnd: CTWindow) -> Float {
        let (lo, hi) = (Float(wnd.lower), Float(wnd.upper))
        return (min(max(x, lo), hi) - lo) * Float(1 / (wnd.upper - wnd.lower))
    }
    func resize(_ plane: [Float]) -> [Float] {
        var horizontal = [Float](repeating: 0, count: slice.rows * w)
        for r in 0..<slice.rows {
            for dx in 0..<w {
                let (a, b, t) = axis(dx, slice.columns, w)
                horizontal[r * w + dx] = plane[r * slice.columns + a] * (1 - t) + plane[r * slice.columns + b] * t
            }
        }
        var out = [Float](repeating: 0, count: h * w)
        for dy in 0..<h {
            let (a, b, t) = axis(dy, slice.rows, h)
            for dx in 0..<w { out[dy * w + dx] = horizontal[a * w + dx] * (1 - t) + horizontal[b * w + dx] * t }
        }
        return out
    }
    let planes: [[Float]] = settings.order == .windowThenResize
        ? settings.windows.map { wnd in resize(hu.map { window($0, wnd) }) }
        : settings.windows.map { wnd in resize(hu).map { window($0, wnd) } }
    var nhwc = [Float](repeating: 0, count: h * w * channels)
    for i in 0..<h * w { for c in 0..<channels { nhwc[i * channels + c] = planes[c][i] } }
    return nhwc
}

@Suite struct PreprocessorTests {
    static let shapes: [(rows: Int, columns: Int, size: Int)] = [
        (512, 512, 256), (7, 5, 256), (1, 1, 8), (300, 200, 224), (256, 256, 256), (64, 96, 299),
    ]

    @Test(arguments: shapes, [PreprocessSettings.Order.windowThenResize, .resizeThenWindow])
    func matchesReference(shape: (rows: Int, columns: Int, size: Int), order: PreprocessSettings.Order) throws {
        let slice = makeSlice(rows: shape.rows, columns: shape.columns, low: -1100, high: 400)
        for mode in [PreprocessSettings.ResizeMode.linear, .nearest] {
            let settings = PreprocessSettings(height: shape.size, width: shape.size, order: order, resize: mode)
            let ours = try Preprocessor(settings: settings).run(slice)
            let reference = referencePreprocess(slice, settings)
            let worst = zip(ours, reference).map { abs($0 - $1) }.max() ?? 0
            // Both are float32 with the same operations in a different association order.
            #expect(worst <= 1e-6, "\(shape) \(order) \(mode): max diff \(worst)")
            #expect(ours.allSatisfy { (0...1).contains($0) })
        }
    }

    /// Halving with INTER_LINEAR averages each 2x2 block (OpenCV then even switches to INTER_AREA).
    @Test func halvingAveragesBlocks() throws {
        let slice = makeSlice(rows: 2, columns: 2, edit: { $0.storedValues = [1024, 1044, 1064, 1084] })  // 0, 20, 40, 60 HU
        let settings = PreprocessSettings(windows: [.brain], height: 1, width: 1)
        #expect(try Preprocessor(settings: settings).run(slice) == [0.375])  // mean 30 HU → (30 - 0) / 80
    }

    @Test func monochrome1GivesTheSameInput() throws {
        let slice = makeSlice(rows: 40, columns: 30)
        var inverted = slice
        inverted.photometricInterpretation = .monochrome1
        let preprocessor = try Preprocessor()
        #expect(try preprocessor.run(slice) == preprocessor.run(inverted))
    }

    @Test func backgroundIsBlack() throws {
        let slice = makeSlice(rows: 64, columns: 64, edit: {
            $0.storedValues = [Int32](repeating: -2000, count: 64 * 64)
            $0.pixelPaddingValue = -2000
        })
        #expect(try Preprocessor().run(slice).allSatisfy { $0 == 0 })
    }

    @Test func outputBufferMustFit() throws {
        let preprocessor = try Preprocessor()
        var small = [Float](repeating: 0, count: 10)
        #expect(throws: ImagingError.outputSize(expected: 256 * 256 * 3, actual: 10)) {
            try small.withUnsafeMutableBufferPointer { try preprocessor.run(makeSlice(rows: 4, columns: 4), into: $0) }
        }
    }
}
