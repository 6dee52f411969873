import ArgumentParser

@main
struct ICHCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ichctl",
        abstract: "Command line for the ICH triage service: inspect and preprocess DICOM files, run and time model bundles, push studies and query results.",
        subcommands: [Inspect.self, Preprocess.self, BenchPreprocess.self, Predict.self, Bench.self,
                      Push.self, Study.self, Worklist.self, Wait.self]
    )
}
