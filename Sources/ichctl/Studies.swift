import ArgumentParser
import Foundation

struct Study: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print one study's status and per-label result.",
        discussion: "Exit status: 0 printed, 2 usage error, unreachable server, refused token or unknown study."
    )

    @OptionGroup var serverOptions: ServerOptions

    @Option(help: ArgumentHelp("Long-poll up to this many seconds (0 to 120) for the study to complete.", valueName: "seconds"))
    var wait = 0.0

    @Flag(help: "Print the service's JSON as it came.")
    var json = false

    @Argument(help: "The StudyInstanceUID.")
    var uid: String

    func validate() throws {
        guard wait >= 0, wait <= 120 else { throw ValidationError("--wait must be 0 to 120 seconds.") }
    }

    func run() throws {
        do {
            let client = try serverOptions.client()
            let answer = try client.getJSON(studyPath(uid, wait: wait), timeout: wait + 30)
            printStudy(answer, json: json)
        } catch {
            throw fail(error)
        }
    }
}

struct Wait: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Wait until a study is complete, then print it.",
        discussion: """
            Long-polls the study (a study not received yet is waited for too). \
            Exit status: 0 complete, 3 not complete within --timeout (the last state is printed), \
            2 usage error, unreachable server or refused token.
            """
    )

    @OptionGroup var serverOptions: ServerOptions

    @Option(help: ArgumentHelp("Seconds to wait in all.", valueName: "seconds"))
    var timeout = 300.0

    @Flag(help: "Print the service's JSON as it came.")
    var json = false

    @Argument(help: "The StudyInstanceUID.")
    var uid: String

    func validate() throws {
        guard timeout >= 0 else { throw ValidationError("--timeout must be 0 or more.") }
    }

    func run() throws {
        let deadline = Date().addingTimeInterval(timeout)
        do {
            let client = try serverOptions.client()
            while true {
                let remaining = max(0, deadline.timeIntervalSinceNow)
                let wait = min(120, (remaining * 10).rounded(.down) / 10)
                let answer: (raw: [UInt8], object: [String: Any])
                do {
                    answer = try client.getJSON(studyPath(uid, wait: wait), timeout: wait + 30)
                } catch {
                    guard error.isNotFound else { throw error }
                    guard remaining > 0 else {
                        FileHandle.standardError.write(Data("ichctl: study \(uid) not received within \(timeout) s\n".utf8))
                        throw ExitCode(3)
                    }
                    Thread.sleep(forTimeInterval: min(1, remaining))
                    continue
                }
                let complete = answer.object["status"] as? String == "complete"
                if complete || deadline.timeIntervalSinceNow <= 0 {
                    printStudy(answer, json: json)
                    if !complete {
                        FileHandle.standardError.write(Data("ichctl: study \(uid) not complete within \(timeout) s\n".utf8))
                        throw ExitCode(3)
                    }
                    return
                }
            }
        } catch let error as ClientError {
            throw fail(error)
        }
    }
}

struct Worklist: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the worklist: studies by their `any` probability, highest first.",
        discussion: """
            Follows the pages (nextCursor) to the end, or until --limit studies. With --json, one \
            object {studies, nextCursor, model} holding every study fetched. \
            Exit status: 0 printed, 2 usage error, unreachable server or refused token.
            """
    )

    @OptionGroup var serverOptions: ServerOptions

    @Flag(help: "Only studies whose `any` probability reaches its threshold.")
    var positive = false

    @Option(help: ArgumentHelp("Only studies that received an instance at or after this RFC 3339 time.", valueName: "time"))
    var since: String?

    @Option(help: "At most this many studies.")
    var limit: Int?

    @Option(help: "Studies asked for per request (1 to 200).")
    var pageSize = 200

    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        if let limit, limit < 1 { throw ValidationError("--limit must be 1 or more.") }
        guard pageSize >= 1, pageSize <= 200 else { throw ValidationError("--page-size must be 1 to 200.") }
    }

    func run() throws {
        do {
            let client = try serverOptions.client()
            var studies: [[String: Any]] = []
            var cursor: String?
            var model: Any = NSNull()
            repeat {
                var query = ["limit=\(min(pageSize, limit.map { $0 - studies.count } ?? pageSize))"]
                if positive { query.append("positive=true") }
                if let since { query.append("since=\(queryEscape(since))") }
                if let cursor { query.append("cursor=\(queryEscape(cursor))") }
                let page = try client.getJSON("/v1/studies?" + query.joined(separator: "&")).object
                guard let items = page["studies"] as? [[String: Any]] else {
                    throw ClientError.invalidResponse("a worklist page without studies")
                }
                studies += items
                model = page["model"] ?? NSNull()
                cursor = page["nextCursor"] as? String
            } while cursor != nil && studies.count < (limit ?? .max)
            if json {
                let object: [String: Any] = ["studies": studies, "nextCursor": cursor ?? NSNull(), "model": model]
                let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
                print(String(decoding: data, as: UTF8.self))
            } else {
                print(worklistTable(studies, model: model as? [String: Any]))
            }
        } catch let error as ClientError {
            throw fail(error)
        }
    }
}

func studyPath(_ uid: String, wait: Double) -> String {
    "/v1/studies/\(queryEscape(uid))" + (wait > 0 ? "?wait=\(String(format: "%.1f", wait))" : "")
}

func printStudy(_ answer: (raw: [UInt8], object: [String: Any]), json: Bool) {
    if json {
        print(String(decoding: answer.raw, as: UTF8.self))
    } else {
        print(studyTable(answer.object))
    }
}
