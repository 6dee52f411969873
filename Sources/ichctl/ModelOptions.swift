import ArgumentParser
import Foundation

/// The options every command that runs a bundle shares.
struct ModelOptions: ParsableArguments {
    @Option(help: "Model bundle directory (model.json, weights.safetensors).")
    var model: String

    @Option(help: "Images per forward pass.")
    var batch = 1

    @Option(help: "Threads for GEMM and the other kernels; the default is the number of cores.")
    var threads = ProcessInfo.processInfo.activeProcessorCount

    func validate() throws {
        guard batch >= 1, threads >= 1 else { throw ValidationError("--batch and --threads must be at least 1") }
    }
}
