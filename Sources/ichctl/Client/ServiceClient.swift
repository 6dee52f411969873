import ArgumentParser
import Foundation
import HTTPClient

/// Why a command could not talk to the service. Messages name the status and the
/// problem `type`/`detail` the server sent (which never echo patient data), never bodies.
enum ClientError: Error, CustomStringConvertible {
    case missingSetting(String)
    case noSuchPath(String)
    case invalidServerURL
    case connection(CurlError)
    case unauthorized(status: Int, detail: String)
    case notFound(detail: String)
    case http(status: Int, type: String, detail: String)
    case invalidResponse(String)

    var description: String {
        switch self {
        case .missingSetting(let what): "No \(what) given."
        case .noSuchPath(let path): "Nothing at \(path): neither a file nor a folder."
        case .invalidServerURL: "The server URL must start with http:// or https://."
        case .connection(let error): "Cannot reach the server (\(error))."
        case .unauthorized(let status, let detail): "The server refused the token (HTTP \(status)): \(detail)"
        case .notFound(let detail): "Not found: \(detail)"
        case .http(let status, let type, let detail): "The server answered HTTP \(status) \(type): \(detail)"
        case .invalidResponse(let what): "The server's answer could not be understood: \(what)."
        }
    }

    var isNotFound: Bool {
        if case .notFound = self { return true }
        return false
    }

    /// Exit status for scripts: 2 for usage, connection and authorisation failures.
    var exitCode: Int32 { 2 }
}

/// `--server` and `--token`, with `ICH_SERVER_URL` and `ICH_TOKEN` as fallbacks.
struct ServerOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The service's base URL, e.g. http://127.0.0.1:8080 (ICH_SERVER_URL).", valueName: "url"))
    var server: String?

    @Option(help: ArgumentHelp("A bearer token (ICH_TOKEN): scope ingest for push, read for queries.", valueName: "token"))
    var token: String?

    @Option(help: ArgumentHelp("PEM bundle of the CA that signed the server's certificate, for a private CA (ICH_CACERT); the certificate is always verified.", valueName: "file"))
    var cacert: String?

    func client() throws(ClientError) -> ServiceClient {
        let environment = ProcessInfo.processInfo.environment
        guard let url = server ?? environment["ICH_SERVER_URL"], !url.isEmpty else {
            throw .missingSetting("server URL (--server or ICH_SERVER_URL)")
        }
        guard let token = token ?? environment["ICH_TOKEN"], !token.isEmpty else {
            throw .missingSetting("token (--token or ICH_TOKEN)")
        }
        guard url.hasPrefix("http://") || url.hasPrefix("https://") else { throw .invalidServerURL }
        var base = url
        while base.hasSuffix("/") { base.removeLast() }
        let bundle = (cacert ?? environment["ICH_CACERT"]).flatMap { $0.isEmpty ? nil : $0 }
        if let bundle, !FileManager.default.isReadableFile(atPath: bundle) { throw .noSuchPath(bundle) }
        return ServiceClient(baseURL: base, token: token, caBundlePath: bundle)
    }
}

struct ServiceClient: Sendable {
    let baseURL: String
    let token: String
    var caBundlePath: String?

    func request(_ method: String, _ path: String, headers: [(String, String)] = [], body: [BodySegment] = [],
                 timeout: Double = 60) throws(CurlError) -> CurlResponse {
        var request = CurlRequest(method: method, url: baseURL + path, timeout: timeout, caBundlePath: caBundlePath)
        request.headers = [("Authorization", "Bearer \(token)"), ("Accept", "application/json, application/dicom+json, application/problem+json")] + headers
        request.body = body
        return try Curl.perform(request)
    }

    /// GET returning the JSON body of a 200; other statuses become typed errors.
    func getJSON(_ path: String, timeout: Double = 60) throws(ClientError) -> (raw: [UInt8], object: [String: Any]) {
        let response: CurlResponse
        do {
            response = try request("GET", path, timeout: timeout)
        } catch {
            throw .connection(error)
        }
        guard response.status == 200 else { throw Self.error(for: response) }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any] else {
            throw .invalidResponse("the body of a 200 is not a JSON object")
        }
        return (response.body, object)
    }

    static func error(for response: CurlResponse) -> ClientError {
        let problem = Problem(response)
        switch response.status {
        case 401, 403: return .unauthorized(status: response.status, detail: problem.detail)
        case 404: return .notFound(detail: problem.detail)
        default: return .http(status: response.status, type: problem.type, detail: problem.detail)
        }
    }
}

/// The `type` slug and `detail` of an `application/problem+json` answer (or placeholders).
struct Problem {
    var type: String
    var detail: String

    init(_ response: CurlResponse) {
        let object = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any]
        let full = object?["type"] as? String ?? "unknown"
        type = full.hasPrefix("urn:ich-triage:problem:") ? String(full.dropFirst("urn:ich-triage:problem:".count)) : full
        detail = object?["detail"] as? String ?? "no detail"
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
func queryEscape(_ value: String) -> String {
    var allowed = CharacterSet.alphanumerics
    allowed.insert(charactersIn: "-._~")
    return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value
}

/// Prints `error`'s message on standard error and exits with its code.
func fail(_ error: ClientError) -> ExitCode {
    FileHandle.standardError.write(Data("ichctl: \(error)\n".utf8))
    return ExitCode(error.exitCode)
}
