import Imaging
import NeuralNet

extension PreprocessSettings {
    /// The preprocessing a bundle's weights were trained with.
    public init(_ manifest: Manifest) throws(NeuralNetError) {
        let p = manifest.preprocessing
        guard let order = Order(rawValue: p.order), let resize = ResizeMode(rawValue: p.resize) else {
            throw NeuralNetError.manifest("preprocessing order '\(p.order)' or resize '\(p.resize)' is unknown")
        }
        self.init(
            windows: p.windows.map { CTWindow(center: $0.center, width: $0.width) },
            height: manifest.input.height, width: manifest.input.width, order: order, resize: resize,
            rsnaCorrection: p.rsnaCorrection, airHU: p.airHU)
    }
}
