import DICOM

/// `CTSlice` → model input: corrected Hounsfield units, CT windows and resize,
/// written as NHWC Float32 (`height * width * channels`) into the caller's buffer.
///
/// The stages are fused per output pixel: each of its source taps is corrected
/// and windowed on the fly, so no intermediate image is allocated. For the
/// default order this equals windowing the whole slice and then resizing it,
/// because the resize is linear in its inputs.
public struct Preprocessor: Sendable {
    public let settings: PreprocessSettings

    public init(settings: PreprocessSettings = .rsnaBaseline) throws(ImagingError) {
        try settings.validate()
        self.settings = settings
    }

    public var outputCount: Int { settings.height * settings.width * settings.channels }

    public func run(_ slice: CTSlice, into output: UnsafeMutableBufferPointer<Float>) throws(ImagingError) {
        guard output.count == outputCount else { throw .outputSize(expected: outputCount, actual: output.count) }
        let correction = HounsfieldCorrection(slice: slice, settings: settings)
        let (height, width, channels) = (settings.height, settings.width, settings.channels)
        let (rows, columns) = (slice.rows, slice.columns)
        let mode = settings.resize
        let windowFirst = settings.order == .windowThenResize

        withUnsafeTemporaryAllocation(of: Float.self, capacity: 3 * channels) { window in
            for (c, w) in settings.windows.enumerated() {
                window[3 * c] = Float(w.lower)
                window[3 * c + 1] = Float(1 / (w.upper - w.lower))
                window[3 * c + 2] = Float(w.upper)
            }
            @inline(__always) func windowed(_ hu: Float, _ c: Int) -> Float {
                let (lower, scale, upper) = (window[3 * c], window[3 * c + 1], window[3 * c + 2])
                return (min(max(hu, lower), upper) - lower) * scale
            }

            withUnsafeTemporaryAllocation(of: ResizeTap.self, capacity: width) { xTaps in
                for dx in 0..<width {
                    xTaps.initializeElement(
                        at: dx, to: ResizeTap(destination: dx, sourceCount: columns, destinationCount: width, mode: mode))
                }
                slice.storedValues.withUnsafeBufferPointer { stored in
                    for dy in 0..<height {
                        let y = ResizeTap(destination: dy, sourceCount: rows, destinationCount: height, mode: mode)
                        let row0 = y.i0 * columns, row1 = y.i1 * columns
                        var out = dy * width * channels
                        for dx in 0..<width {
                            let x = xTaps[dx]
                            let h00 = correction.hounsfield(stored[row0 + x.i0])
                            let h01 = correction.hounsfield(stored[row0 + x.i1])
                            let h10 = correction.hounsfield(stored[row1 + x.i0])
                            let h11 = correction.hounsfield(stored[row1 + x.i1])
                            if windowFirst {
                                for c in 0..<channels {
                                    let top = lerp(windowed(h00, c), windowed(h01, c), x.w1)
                                    let bottom = lerp(windowed(h10, c), windowed(h11, c), x.w1)
                                    output[out + c] = lerp(top, bottom, y.w1)
                                }
                            } else {
                                let hu = lerp(lerp(h00, h01, x.w1), lerp(h10, h11, x.w1), y.w1)
                                for c in 0..<channels { output[out + c] = windowed(hu, c) }
                            }
                            out += channels
                        }
                    }
                }
            }
        }
    }

    /// Convenience for tools and tests; the service passes its own buffers.
    public func run(_ slice: CTSlice) throws(ImagingError) -> [Float] {
        var output = [Float](repeating: 0, count: outputCount)
        let result: Result<Void, ImagingError> = output.withUnsafeMutableBufferPointer { buffer in
            Result { () throws(ImagingError) in try run(slice, into: buffer) }
        }
        try result.get()
        return output
    }
}
