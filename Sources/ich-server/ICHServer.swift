import ArgumentParser

@main
struct ICHServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ich-server",
        abstract: "The intracranial-hemorrhage triage service: DICOMweb ingest, batched CPU inference, study results.",
        subcommands: [Serve.self, Token.self, BackupCommand.self],
        defaultSubcommand: Serve.self)
}

struct Token: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage API tokens.", subcommands: [TokenCreate.self, TokenList.self, TokenRevoke.self])
}
