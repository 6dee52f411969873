/// Explicit zero padding on four sides, and the output size it gives.
public struct Padding: Sendable, Equatable {
    public var top = 0, bottom = 0, left = 0, right = 0

    public init(top: Int = 0, bottom: Int = 0, left: Int = 0, right: Int = 0) {
        (self.top, self.bottom, self.left, self.right) = (top, bottom, left, right)
    }

    public static let none = Padding()

    public static func uniform(_ p: Int) -> Padding { Padding(top: p, bottom: p, left: p, right: p) }

    /// Keras/TensorFlow/XLA 'same': output = ceil(input / stride); the total
    /// padding is split with the smaller half first (top/left), so an even
    /// total is symmetric and an odd one puts the extra row at the bottom.
    public static func same(input: (Int, Int), kernel: (Int, Int), stride: (Int, Int)) -> Padding {
        func split(_ size: Int, _ k: Int, _ s: Int) -> (Int, Int) {
            let out = (size + s - 1) / s
            let total = max((out - 1) * s + k - size, 0)
            return (total / 2, total - total / 2)
        }
        let (top, bottom) = split(input.0, kernel.0, stride.0)
        let (left, right) = split(input.1, kernel.1, stride.1)
        return Padding(top: top, bottom: bottom, left: left, right: right)
    }

    /// Output size for a window `kernel` moved by `stride` over the padded input ('valid' after padding).
    public func outputSize(input: (Int, Int), kernel: (Int, Int), stride: (Int, Int)) -> (Int, Int) {
        ((input.0 + top + bottom - kernel.0) / stride.0 + 1, (input.1 + left + right - kernel.1) / stride.1 + 1)
    }
}
