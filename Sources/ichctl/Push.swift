import ArgumentParser
import DICOM
import Foundation
import HTTPClient

struct Push: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send DICOM files to the service as STOW-RS requests, one study at a time.",
        discussion: """
            Finds DICOM Part-10 files (folders are searched recursively; other files are skipped with \
            a note), groups them by StudyInstanceUID and POSTs each study to /dicomweb/studies/{uid} in \
            multipart/related requests of at most --max-request-bytes, over --parallel connections. \
            Network errors, 408, 429 and 5xx answers are retried with exponential backoff and jitter \
            (Retry-After is honoured, up to --max-retry-wait). Progress goes to standard error (one \
            updating line on a terminal), the summary to standard output. Only counts and UIDs are \
            printed, never patient data.

            Exit status: 0 every instance stored (duplicates count as stored), 1 some instances \
            failed, 2 usage error, unreachable server or refused token.
            """
    )

    @OptionGroup var serverOptions: ServerOptions

    @Option(help: "Requests in flight at once.")
    var parallel = 4

    @Option(help: ArgumentHelp("Largest request body (bytes, or with KiB, MiB, GiB, kB, MB, GB).", valueName: "size"))
    var maxRequestBytes = "64MiB"

    @Option(help: "Tries after the first for a request that met a network error or a retryable status.")
    var retries = 5

    @Option(help: ArgumentHelp("Longest wait between tries, in seconds (a longer Retry-After is cut to it).", valueName: "seconds"))
    var maxRetryWait = 60.0

    @Flag(help: "Print the summary as one JSON object.")
    var json = false

    @Argument(help: "DICOM files and folders.")
    var paths: [String]

    func validate() throws {
        guard parallel >= 1, parallel <= 64 else { throw ValidationError("--parallel must be 1 to 64.") }
        guard retries >= 0 else { throw ValidationError("--retries must be 0 or more.") }
        guard maxRetryWait >= 0 else { throw ValidationError("--max-retry-wait must be 0 or more.") }
        guard let bytes = parseByteSize(maxRequestBytes), bytes >= 1024 else {
            throw ValidationError("--max-request-bytes must be a size of at least 1 KiB, e.g. 64MiB.")
        }
    }

    func run() throws {
        let client: ServiceClient
        do { client = try serverOptions.client() } catch { throw fail(error) }
        let progress = PushProgress(terminal: isatty(STDERR_FILENO) == 1)

        var skipped = 0
        var files: [DICOMFile] = []
        for path in paths {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                throw fail(.noSuchPath(path))
            }
            for file in isDirectory.boolValue ? regularFiles(under: path) : [path] {
                switch scan(file) {
                case .success(let found): files.append(found)
                case .failure(let reason):
                    skipped += 1
                    progress.note("skipping \(file): \(reason)")
                }
            }
        }

        // Studies in order of first appearance; within one, files as found (sorted paths).
        var order: [String] = []
        var byStudy: [String: [DICOMFile]] = [:]
        for file in files {
            if byStudy[file.study] == nil { order.append(file.study) }
            byStudy[file.study, default: []].append(file)
        }
        let framing = MultipartRelated()
        let limit = parseByteSize(maxRequestBytes)!
        var work: [PushWork] = []
        for study in order {
            let requests = planRequests(byStudy[study]!, maxBytes: limit, framing: framing)
            for (index, request) in requests.enumerated() {
                work.append(PushWork(study: study, files: request, index: index + 1, of: requests.count))
            }
        }
        progress.start(instances: files.count, requests: work.count, studies: order.count)

        let sender = StowSender(client: client, framing: framing,
                                policy: RetryPolicy(retries: retries, maxDelay: maxRetryWait)) { work, attempt, reason, delay in
            progress.note("study \(work.study) request \(work.index)/\(work.of): \(reason); try \(attempt) in \(String(format: "%.1f", delay)) s")
        }
        let queue = WorkQueue(work)
        DispatchQueue.concurrentPerform(iterations: max(1, min(parallel, work.count))) { _ in
            while !progress.aborted, let item = queue.next() {
                let outcome = sender.send(item)
                // The server's body limit is below --max-request-bytes: send the halves instead.
                if case .tooLarge = outcome, item.files.count > 1 {
                    let half = item.files.count / 2
                    progress.split(item)
                    queue.putBack([item.with(files: Array(item.files[..<half])), item.with(files: Array(item.files[half...]))])
                    continue
                }
                progress.finished(item, outcome)
            }
        }
        progress.finish()

        let summary = progress.summary(studies: order.count, skipped: skipped)
        if let refusal = progress.refusal {
            throw fail(refusal)
        }
        print(json ? summary.json : summary.text)
        throw ExitCode(summary.exitCode)
    }

    private func regularFiles(under folder: String) -> [String] {
        guard let enumerator = FileManager.default.enumerator(atPath: folder) else { return [] }
        var found: [String] = []
        while let relative = enumerator.nextObject() as? String {
            let path = (folder as NSString).appendingPathComponent(relative)
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue {
                found.append(path)
            }
        }
        return found.sorted()
    }

    /// The file's study and SOP Instance UID, or why it is not sent.
    private func scan(_ path: String) -> Result<DICOMFile, ScanSkip> {
        let bytes: [UInt8]
        do { bytes = try readFile(path) } catch { return .failure(ScanSkip(error.detail)) }
        guard bytes.count >= 132, bytes[128..<132].elementsEqual("DICM".utf8) else {
            return .failure(ScanSkip("not a DICOM Part-10 file"))
        }
        // The header alone: grouping by study needs no pixels, and the server decides what it can decode.
        do {
            let header = try DICOMDecoder.header(bytes)
            return .success(DICOMFile(path: path, size: bytes.count, study: header.studyInstanceUID, sop: header.sopInstanceUID))
        } catch {
            return .failure(ScanSkip("DICOM that cannot be read (\(error.type))"))
        }
    }
}

struct ScanSkip: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// `64MiB`, `512KiB`, `1GB`, `1000`: bytes, or nil.
func parseByteSize(_ text: String) -> Int? {
    let units: [(String, Int)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("kB", 1000), ("KB", 1000),
                                  ("MB", 1_000_000), ("GB", 1_000_000_000), ("B", 1), ("", 1)]
    let trimmed = text.trimmingCharacters(in: .whitespaces)
    for (suffix, factor) in units where trimmed.hasSuffix(suffix) {
        let number = trimmed.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)
        guard let value = Int(number), value >= 0 else { continue }
        let (product, overflow) = value.multipliedReportingOverflow(by: factor)
        return overflow ? nil : product
    }
    return nil
}

/// "1 request", "3 requests".
func counted(_ count: Int, _ singular: String, _ plural: String? = nil) -> String {
    "\(count) \(count == 1 ? singular : plural ?? singular + "s")"
}

/// One request of a push: some files of one study.
struct PushWork: Sendable {
    var study: String
    var files: [DICOMFile]
    var index: Int
    var of: Int

    func with(files: [DICOMFile]) -> PushWork { PushWork(study: study, files: files, index: index, of: of) }
}

final class WorkQueue: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [PushWork]
    private var position = 0

    init(_ items: [PushWork]) { self.items = items }

    func next() -> PushWork? {
        lock.withLock {
            guard position < items.count else { return nil }
            defer { position += 1 }
            return items[position]
        }
    }

    /// Queues `work` to be taken next, in order.
    func putBack(_ work: [PushWork]) {
        lock.withLock { items.insert(contentsOf: work, at: position) }
    }
}

/// How one request ended, after its retries.
enum PushOutcome {
    case answered(StowResult)
    /// Not stored: why, and whether any try got an HTTP answer (false: the server was never reached).
    case failed(reason: String, reachedServer: Bool)
    case refused(ClientError)
    /// 413: the body is over the server's limit (split it, unless it is one file).
    case tooLarge
}

struct StowSender: Sendable {
    let client: ServiceClient
    let framing: MultipartRelated
    let policy: RetryPolicy
    /// Called before each retry with the request, the try about to start, why, and the wait.
    var onRetry: @Sendable (PushWork, Int, String, Double) -> Void = { _, _, _, _ in }

    func send(_ work: PushWork) -> PushOutcome {
        var reason = "not sent"
        var reached = false
        var retryAfter: String?
        for attempt in 0...policy.retries {
            if attempt > 0 {
                let delay = policy.delay(attempt: attempt, retryAfter: retryAfter, unit: Double.random(in: 0..<1))
                onRetry(work, attempt + 1, reason, delay)
                Thread.sleep(forTimeInterval: delay)
            }
            let response: CurlResponse
            do {
                response = try client.request("POST", "/dicomweb/studies/\(work.study)",
                                              headers: [("Content-Type", framing.contentType)],
                                              body: framing.body(work.files), timeout: 0)
            } catch {
                reason = "network: \(error.message)"
                retryAfter = nil
                continue
            }
            reached = true
            switch response.status {
            case 200, 202, 409:
                guard let result = StowResult(json: response.body) else {
                    return .failed(reason: "HTTP \(response.status) without a DICOM JSON body", reachedServer: true)
                }
                return .answered(result)
            case 401, 403:
                return .refused(ServiceClient.error(for: response))
            case 413 where work.files.count > 1:
                return .tooLarge
            case let status where RetryPolicy.isRetryable(status: status):
                reason = "HTTP \(status) \(Problem(response).type)"
                retryAfter = response.header("Retry-After")
            default:
                return .failed(reason: "HTTP \(response.status) \(Problem(response).type)", reachedServer: true)
            }
        }
        return .failed(reason: reason, reachedServer: reached)
    }
}

struct PushSummary {
    var studies = 0
    var instances = 0
    var requests = 0
    var stored = 0
    var duplicates = 0
    var failedByReason: [String: Int] = [:]
    var skipped = 0
    var anyAnswer = false

    var failed: Int { failedByReason.values.reduce(0, +) }

    /// 0 all stored, 1 some failed, 2 the server was never reached.
    var exitCode: Int32 {
        if failed == 0 { return 0 }
        return anyAnswer ? 1 : 2
    }

    var text: String {
        var lines = [
            "studies: \(studies)",
            "instances: \(instances) in \(counted(requests, "request"))",
            "stored: \(stored)",
            "duplicates: \(duplicates)",
            "failed: \(failed)",
        ]
        for (reason, count) in failedByReason.sorted(by: { $0.key < $1.key }) {
            lines.append("  \(reason): \(count)")
        }
        lines.append("skipped: \(skipped)")
        return lines.joined(separator: "\n")
    }

    var json: String {
        let object: [String: Any] = [
            "studies": studies, "instances": instances, "requests": requests, "stored": stored,
            "duplicates": duplicates, "failed": failed, "failedByReason": failedByReason, "skipped": skipped,
            "exitCode": Int(exitCode),
        ]
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self)
    }
}

/// Counts shared by the sending threads, and the progress display on standard error.
final class PushProgress: @unchecked Sendable {
    private let lock = NSLock()
    private let terminal: Bool
    private var totals = PushSummary()
    private var done = 0
    private var doneRequests = 0
    private(set) var refusal: ClientError?
    private var lineShown = false

    init(terminal: Bool) { self.terminal = terminal }

    var aborted: Bool { lock.withLock { refusal != nil } }

    func note(_ message: String) {
        lock.withLock { write("ichctl: \(message)\n", clearLine: true) }
    }

    func start(instances: Int, requests: Int, studies: Int) {
        lock.withLock {
            totals.instances = instances
            totals.requests = requests
            if !terminal {
                write("pushing \(counted(instances, "instance")) of \(counted(studies, "study", "studies")) in \(counted(requests, "request"))\n")
            }
            draw()
        }
    }

    /// A request the server found too large becomes two.
    func split(_ work: PushWork) {
        lock.withLock {
            totals.requests += 1
            write("ichctl: study \(work.study) request \(work.index)/\(work.of): over the server's body limit (413); "
                  + "sending its \(work.files.count) instances in two requests\n", clearLine: true)
            draw()
        }
    }

    func finished(_ work: PushWork, _ outcome: PushOutcome) {
        lock.withLock {
            var line = "study \(work.study) request \(work.index)/\(work.of): \(work.files.count) instances, "
            switch outcome {
            case .answered(let result):
                totals.anyAnswer = true
                totals.stored += result.stored.count
                totals.duplicates += result.duplicates.count
                for failure in result.failed {
                    totals.failedByReason[failureReasonText(failure.reason), default: 0] += 1
                }
                let missing = work.files.count - result.stored.count - result.duplicates.count - result.failed.count
                if missing > 0 { totals.failedByReason["missing from the response", default: 0] += missing }
                line += "\(result.stored.count) stored, \(result.duplicates.count) duplicates, \(result.failed.count + max(0, missing)) failed"
            case .failed(let reason, let reached):
                totals.anyAnswer = totals.anyAnswer || reached
                totals.failedByReason[reason, default: 0] += work.files.count
                line += "not stored (\(reason))"
            case .refused(let error):
                refusal = refusal ?? error
                line += "refused"
            case .tooLarge:
                totals.anyAnswer = true
                totals.failedByReason["HTTP 413 body-too-large", default: 0] += work.files.count
                line += "not stored (over the server's body limit)"
            }
            done += work.files.count
            doneRequests += 1
            if terminal { draw() } else { write(line + "\n") }
        }
    }

    func finish() {
        lock.withLock {
            if terminal && lineShown { write("\n") }
            lineShown = false
        }
    }

    func summary(studies: Int, skipped: Int) -> PushSummary {
        lock.withLock {
            var summary = totals
            summary.studies = studies
            summary.skipped = skipped
            return summary
        }
    }

    private func draw() {
        guard terminal else { return }
        let total = max(totals.instances, 1)
        let width = 30
        let filled = done * width / total
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let failed = totals.failedByReason.values.reduce(0, +)
        write("\r\u{1B}[K[\(bar)] \(done)/\(totals.instances) instances, \(doneRequests)/\(totals.requests) requests, \(failed) failed")
        lineShown = true
    }

    private func write(_ text: String, clearLine: Bool = false) {
        var output = text
        if terminal && clearLine && lineShown {
            output = "\r\u{1B}[K" + text
            lineShown = false
        }
        FileHandle.standardError.write(Data(output.utf8))
    }
}
