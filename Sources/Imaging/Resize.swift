/// Where one destination pixel samples the source along one axis:
/// `source[i0] * (1 - w1) + source[i1] * w1`.
struct ResizeTap {
    var i0: Int
    var i1: Int
    var w1: Float

    /// OpenCV's coordinate rules (`imgproc/src/resize.cpp`), so that the
    /// output matches `cv2.resize` for the same mode.
    init(destination d: Int, sourceCount: Int, destinationCount: Int, mode: PreprocessSettings.ResizeMode) {
        let scale = Double(sourceCount) / Double(destinationCount)
        switch mode {
        case .nearest:
            let s = min(Int((Double(d) * scale).rounded(.down)), sourceCount - 1)
            (i0, i1, w1) = (s, s, 0)
        case .linear:
            // Half-pixel centres; taps outside the image clamp to the edge pixel.
            let f = Float((Double(d) + 0.5) * scale - 0.5)
            var s = Int(f.rounded(.down))
            var w = f - Float(s)
            if s < 0 { (s, w) = (0, 0) }
            if s >= sourceCount - 1 { (s, w) = (sourceCount - 1, 0) }
            (i0, i1, w1) = (s, min(s + 1, sourceCount - 1), w)
        }
    }
}

@inline(__always)
func lerp(_ a: Float, _ b: Float, _ w: Float) -> Float {
    a * (1 - w) + b * w
}
