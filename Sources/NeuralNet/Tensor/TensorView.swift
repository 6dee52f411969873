/// A per-image NHWC activation buffer of the graph: `height * width * channels`
/// floats per image. Several views can share one buffer, each owning a run of
/// channels: that is how concatenation costs nothing.
public struct BufferShape: Sendable, Equatable {
    public var height: Int
    public var width: Int
    public var channels: Int

    public var elementsPerImage: Int { height * width * channels }
}

/// Channels `[channelOffset, channelOffset + channels)` of buffer `buffer`.
/// Pixel `p` of image `n` starts at `(n * height * width + p) * stride + channelOffset`.
public struct TensorView: Sendable, Equatable {
    public var buffer: Int
    public var height: Int
    public var width: Int
    public var channels: Int
    public var channelOffset: Int
    /// The buffer's total channel count: the distance between two pixels.
    public var stride: Int
}
