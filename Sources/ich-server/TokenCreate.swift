import ArgumentParser
import Service

struct TokenCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create a bearer token and print it alone on standard output (only its hash is stored).")

    @Option(help: "ingest (PACS: post instances), read (clinicians: query studies) or admin (everything).")
    var scope: String

    @Option(help: "The service's data directory (ICH_DATA_DIR; default ./data).")
    var dataDir: String?

    @Option(help: "A label for the token, e.g. the PACS router's name.")
    var name: String = "unnamed"

    func run() async throws {
        guard let scope = Scope(rawValue: scope) else {
            throw ValidationError("--scope must be one of: \(Scope.allCases.map(\.rawValue).joined(separator: ", ")).")
        }
        let directory = try setting(dataDir, "ICH_DATA_DIR", "data")
        print(try TriageService.createToken(dataDirectory: directory, scope: scope, name: name))
    }
}
