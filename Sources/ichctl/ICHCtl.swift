import ArgumentParser

@main
struct ICHCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ichctl",
        abstract: "Command line for the ICH triage service: inspect and preprocess DICOM files.",
        subcommands: [Inspect.self, Preprocess.self, BenchPreprocess.self]
    )
}
