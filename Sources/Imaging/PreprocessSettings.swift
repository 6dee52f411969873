/// Everything that decides what the model sees. A model bundle carries one of
/// these, because weights only work on input prepared the way they were trained.
public struct PreprocessSettings: Sendable, Equatable, Codable {
    /// Whether CT windows are applied at native resolution before resizing
    /// (the RSNA Keras baseline) or to the resized Hounsfield image.
    public enum Order: String, Sendable, Codable {
        case windowThenResize = "window-then-resize"
        case resizeThenWindow = "resize-then-window"
    }

    /// Resampling rule, named after the OpenCV mode it reproduces exactly.
    public enum ResizeMode: String, Sendable, Codable {
        /// `cv2.INTER_LINEAR`: half-pixel centres, edge clamped, no antialiasing.
        case linear
        /// `cv2.INTER_NEAREST`: the source pixel at `floor(dst * scale)`.
        case nearest
    }

    /// One window per output channel, in channel order.
    public var windows: [CTWindow]
    public var height: Int
    public var width: Int
    public var order: Order
    public var resize: ResizeMode
    /// Apply the RSNA 2019 12-bit intercept correction when its conditions hold.
    public var rsnaCorrection: Bool
    /// Hounsfield value given to padding and to anything below it (out-of-field pixels).
    public var airHU: Float

    public init(
        windows: [CTWindow] = [.brain, .subdural, .softTissue], height: Int = 256, width: Int = 256,
        order: Order = .windowThenResize, resize: ResizeMode = .linear,
        rsnaCorrection: Bool = true, airHU: Float = -1000
    ) {
        self.windows = windows
        self.height = height
        self.width = width
        self.order = order
        self.resize = resize
        self.rsnaCorrection = rsnaCorrection
        self.airHU = airHU
    }

    /// What the widely used RSNA 2019 Keras baseline fed its models
    /// (brain, subdural, soft tissue; window first, then `cv2.resize` linear to 256x256).
    public static let rsnaBaseline = PreprocessSettings()

    public var channels: Int { windows.count }

    public func validate() throws(ImagingError) {
        guard !windows.isEmpty else { throw .invalidSettings("at least one window is required") }
        for window in windows where !(window.upper > window.lower) || !window.center.isFinite {
            throw .invalidSettings("window \(window.center)/\(window.width) is empty; width must be at least 2")
        }
        guard (1...4096).contains(height), (1...4096).contains(width) else {
            throw .invalidSettings("output size \(height)x\(width) must be 1 to 4096 per side")
        }
        guard airHU.isFinite else { throw .invalidSettings("airHU must be finite") }
    }
}
