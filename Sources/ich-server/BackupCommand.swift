import ArgumentParser
import Service

struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Write a consistent copy of the service's database to a new file, while the server runs.")

    @OptionGroup var data: DataDirectory

    @Option(help: "The backup file to create (refused if it exists).")
    var to: String

    func run() async throws {
        try TriageService.backup(dataDirectory: try data.path(), to: to)
        print("database backed up to \(to)")
    }
}
