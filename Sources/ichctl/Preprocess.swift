import ArgumentParser
import Foundation
import Imaging

struct Preprocess: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the model input of one DICOM file as a NumPy .npy (float32, [H, W, C]).")

    enum Stage: String, ExpressibleByArgument, CaseIterable {
        /// The model input tensor.
        case input
        /// Corrected Hounsfield units at native size, [rows, columns].
        case hounsfield
        /// Modality LUT only (`stored * slope + intercept`), [rows, columns].
        case modality
    }

    @Argument(help: "A DICOM file.")
    var file: String

    @Option(help: "Where to write the .npy file.")
    var out: String

    @Option(help: "What to write: input, hounsfield or modality.")
    var stage = Stage.input

    @Option(help: "The frame of a multi-frame object (Enhanced CT) to write, from 1.")
    var frame: Int?

    @OptionGroup var options: PreprocessOptions

    func run() throws {
        let settings = try options.settings()
        do {
            let slice = try decodeFile(file, frame: frame)
            let npy: Data
            switch stage {
            case .input:
                let preprocessor = try Preprocessor(settings: settings)
                let input = try preprocessor.run(slice)
                npy = NPYFile.data(float32: input, shape: [settings.height, settings.width, settings.channels])
            case .hounsfield:
                let hu = HounsfieldCorrection(slice: slice, settings: settings).apply(to: slice)
                npy = NPYFile.data(float32: hu, shape: [slice.rows, slice.columns])
            case .modality:
                npy = NPYFile.data(float32: slice.hounsfieldUnits(), shape: [slice.rows, slice.columns])
            }
            try npy.write(to: URL(fileURLWithPath: out))
        } catch let error as InputError {
            FileHandle.standardError.write(Data("\(file): error \(error.type): \(error.detail)\n".utf8))
            throw ExitCode(1)
        } catch let error as ImagingError {
            FileHandle.standardError.write(Data("error \(error.type): \(error.detail)\n".utf8))
            throw ExitCode(1)
        }
    }
}
