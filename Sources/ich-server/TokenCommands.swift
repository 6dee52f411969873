import ArgumentParser
import Foundation
import Service

struct TokenCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create a bearer token and print it alone on standard output (only its hash is stored).")

    @Option(help: "ingest (PACS: post instances), read (clinicians: query studies) or admin (everything).")
    var scope: String

    @OptionGroup var data: DataDirectory

    @Option(help: "A label for the token, e.g. the PACS router's name.")
    var name: String = "unnamed"

    @Option(help: "Refuse the token after this long: 3600s, 90m, 12h, 90d (default: valid until revoked).")
    var expiresIn: Lifetime?

    func run() async throws {
        guard let scope = Scope(rawValue: scope) else {
            throw ValidationError("--scope must be one of: \(Scope.allCases.map(\.rawValue).joined(separator: ", ")).")
        }
        print(try TriageService.createToken(dataDirectory: try data.path(), scope: scope, name: name, lifetime: expiresIn?.seconds))
    }
}

struct TokenList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List every token: id, name, scope, status, created, expires, last used (never a secret).")

    @OptionGroup var data: DataDirectory

    @Flag(help: "One JSON object per token and line, as GET /v1/tokens shows it.")
    var json = false

    func run() async throws {
        let tokens = try TriageService.listTokens(dataDirectory: try data.path())
        let now = Date().timeIntervalSince1970
        func time(_ t: Double?) -> String { t.map { Date(timeIntervalSince1970: $0).formatted(.iso8601) } ?? "-" }
        if json {
            for token in tokens { print(TriageService.tokenJSON(token, now: now)) }
            return
        }
        let rows = [["id", "name", "scope", "status", "created", "expires", "last used"]] + tokens.map {
            ["\($0.id)", $0.name, $0.scope, $0.status(at: now), time($0.createdAt), time($0.expiresAt), time($0.lastUsedAt)]
        }
        let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            print(zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ")
                .trimmingCharacters(in: .whitespaces))
        }
    }
}

struct TokenRevoke: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke",
        abstract: "Revoke a token by id; a running server refuses it within a second. Exits 1 for an unknown id.")

    @Argument(help: "The token's id (`ich-server token list`).")
    var id: Int

    @OptionGroup var data: DataDirectory

    func run() async throws {
        switch try TriageService.revokeToken(dataDirectory: try data.path(), id: id) {
        case .revoked: print("token \(id) revoked")
        case .alreadyRevoked: print("token \(id) was already revoked")
        case .notFound:
            FileHandle.standardError.write(Data("no token with id \(id)\n".utf8))
            throw ExitCode(1)
        }
    }
}

/// The data directory the token commands work on, the one `serve` uses.
struct DataDirectory: ParsableArguments {
    @Option(help: "The service's data directory (ICH_DATA_DIR; default ./data).")
    var dataDir: String?

    func path() throws -> String { try setting(dataDir, "ICH_DATA_DIR", "data") }
}

/// A token lifetime as operators write it: a number with s, m, h or d (plain seconds without).
struct Lifetime: ExpressibleByArgument {
    var seconds: Double

    init?(argument: String) {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        var text = Substring(argument)
        var unit = 1.0
        if let last = text.last, let factor = units[last] {
            unit = factor
            text = text.dropLast()
        }
        guard let value = Double(text), value > 0, value * unit <= 10 * 365 * 86400 else { return nil }
        seconds = value * unit
    }
}
