import ArgumentParser
import Imaging

/// Preprocessing settings on the command line; the defaults are the RSNA baseline's.
struct PreprocessOptions: ParsableArguments {
    @Option(help: "CT windows as centre/width, one per channel, comma-separated.")
    var windows = "40/80,80/200,40/380"

    @Option(help: "Output size in pixels (square).")
    var size = 256

    @Option(help: "window-then-resize (RSNA baseline) or resize-then-window.")
    var order = PreprocessSettings.Order.windowThenResize.rawValue

    @Option(help: "Resize mode: linear (cv2.INTER_LINEAR) or nearest (cv2.INTER_NEAREST).")
    var resize = PreprocessSettings.ResizeMode.linear.rawValue

    @Flag(help: "Do not apply the RSNA 2019 12-bit intercept correction.")
    var noRSNACorrection = false

    func settings() throws -> PreprocessSettings {
        var windows: [CTWindow] = []
        for item in self.windows.split(separator: ",") {
            let parts = item.split(separator: "/")
            guard parts.count == 2, let center = Double(parts[0]), let width = Double(parts[1]) else {
                throw ValidationError("--windows expects centre/width pairs such as 40/80,80/200,40/380")
            }
            windows.append(CTWindow(center: center, width: width))
        }
        guard let order = PreprocessSettings.Order(rawValue: order) else {
            throw ValidationError("--order must be window-then-resize or resize-then-window")
        }
        guard let resize = PreprocessSettings.ResizeMode(rawValue: resize) else {
            throw ValidationError("--resize must be linear or nearest")
        }
        return PreprocessSettings(
            windows: windows, height: size, width: size, order: order, resize: resize,
            rsnaCorrection: !noRSNACorrection)
    }
}
