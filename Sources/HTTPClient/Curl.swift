import CCurl
import Foundation

/// Why a transfer did not produce an HTTP response. Carries libcurl's code and its
/// fixed description, never request or response bytes.
public struct CurlError: Error, CustomStringConvertible, Sendable {
    public let code: Int
    public let message: String

    init(_ code: CURLcode) {
        self.code = Int(code.rawValue)
        self.message = String(cString: curl_easy_strerror(code))
    }

    public init(code: Int, message: String) {
        self.code = code
        self.message = message
    }

    /// Nothing listens there, or the name does not resolve: retrying soon rarely helps a script.
    public var isConnectFailure: Bool {
        [CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY]
            .map { Int($0.rawValue) }.contains(code)
    }

    public var description: String { "libcurl error \(code): \(message)" }
}

/// A request body: bytes in memory and files read while sending, in order.
public enum BodySegment: Sendable {
    case bytes([UInt8])
    case file(path: String, size: Int)

    public var size: Int {
        switch self {
        case .bytes(let bytes): bytes.count
        case .file(_, let size): size
        }
    }
}

public struct CurlRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: [(String, String)]
    public var body: [BodySegment]
    /// Whole-transfer limit in seconds (0: none).
    public var timeout: Double
    public var connectTimeout: Double
    public var userAgent: String
    /// PEM bundle of the CAs to verify an https:// peer with (a private CA); nil: the system's store.
    public var caBundlePath: String?

    public init(method: String = "GET", url: String, headers: [(String, String)] = [], body: [BodySegment] = [],
                timeout: Double = 60, connectTimeout: Double = 10, userAgent: String = "ichctl", caBundlePath: String? = nil) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
        self.connectTimeout = connectTimeout
        self.userAgent = userAgent
        self.caBundlePath = caBundlePath
    }
}

public struct CurlResponse: Sendable {
    public var status: Int
    /// Header names lower-cased; of the final response only (not of a 100 Continue).
    public var headers: [(String, String)]
    public var body: [UInt8]

    public func header(_ name: String) -> String? {
        let lower = name.lowercased()
        return headers.first { $0.0 == lower }?.1
    }
}

/// libcurl, one easy handle per transfer (so threads never share one). `curl_global_init`
/// runs once, before the first handle.
public enum Curl {
    private static let initialised: CURLcode = curl_global_init(Int(CURL_GLOBAL_DEFAULT))

    public static func perform(_ request: CurlRequest) throws(CurlError) -> CurlResponse {
        guard initialised == CURLE_OK else { throw CurlError(initialised) }
        guard let handle = curl_easy_init() else { throw CurlError(code: -1, message: "curl_easy_init failed") }
        defer { curl_easy_cleanup(handle) }
        let state = TransferState(body: request.body)
        defer { state.close() }
        var list: UnsafeMutablePointer<curl_slist>?
        defer { curl_slist_free_all(list) }
        for (name, value) in request.headers {
            list = curl_slist_append(list, "\(name): \(value)")
        }
        let context = Unmanaged.passUnretained(state).toOpaque()

        func check(_ code: CURLcode) throws(CurlError) {
            guard code == CURLE_OK else { throw CurlError(code) }
        }
        try check(ccurl_setopt_string(handle, CURLOPT_URL, request.url))
        // Only HTTP(S): a configured URL must not make the service read files or speak other protocols.
        try check(ccurl_setopt_string(handle, CURLOPT_PROTOCOLS_STR, "http,https"))
        try check(ccurl_setopt_long(handle, CURLOPT_NOSIGNAL, 1))
        // libcurl's defaults, stated so no later change turns verification off; TLS 1.2 at least, as the server.
        try check(ccurl_setopt_long(handle, CURLOPT_SSL_VERIFYPEER, 1))
        try check(ccurl_setopt_long(handle, CURLOPT_SSL_VERIFYHOST, 2))
        try check(ccurl_setopt_long(handle, CURLOPT_SSLVERSION, Int(CURL_SSLVERSION_TLSv1_2)))
        if let caBundlePath = request.caBundlePath {
            try check(ccurl_setopt_string(handle, CURLOPT_CAINFO, caBundlePath))
        }
        try check(ccurl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, Int(request.connectTimeout * 1000)))
        try check(ccurl_setopt_long(handle, CURLOPT_TIMEOUT_MS, Int(request.timeout * 1000)))
        if request.timeout == 0 {
            // No overall limit (a large upload takes what it takes), but a stalled peer ends the transfer.
            try check(ccurl_setopt_long(handle, CURLOPT_LOW_SPEED_LIMIT, 1))
            try check(ccurl_setopt_long(handle, CURLOPT_LOW_SPEED_TIME, 120))
        }
        try check(ccurl_setopt_string(handle, CURLOPT_USERAGENT, request.userAgent))
        try check(ccurl_setopt_slist(handle, CURLOPT_HTTPHEADER, list))
        try check(ccurl_setopt_callback(handle, CURLOPT_WRITEFUNCTION, curlWrite))
        try check(ccurl_setopt_pointer(handle, CURLOPT_WRITEDATA, context))
        try check(ccurl_setopt_callback(handle, CURLOPT_HEADERFUNCTION, curlHeader))
        try check(ccurl_setopt_pointer(handle, CURLOPT_HEADERDATA, context))
        switch request.method {
        case "GET":
            break
        case "HEAD":
            try check(ccurl_setopt_long(handle, CURLOPT_NOBODY, 1))
        default:
            if request.method == "POST" {
                try check(ccurl_setopt_long(handle, CURLOPT_POST, 1))
                try check(ccurl_setopt_off_t(handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(state.length)))
            } else {
                try check(ccurl_setopt_string(handle, CURLOPT_CUSTOMREQUEST, request.method))
                if !request.body.isEmpty {
                    try check(ccurl_setopt_long(handle, CURLOPT_UPLOAD, 1))
                    try check(ccurl_setopt_off_t(handle, CURLOPT_INFILESIZE_LARGE, curl_off_t(state.length)))
                }
            }
            try check(ccurl_setopt_callback(handle, CURLOPT_READFUNCTION, curlRead))
            try check(ccurl_setopt_pointer(handle, CURLOPT_READDATA, context))
        }
        try check(curl_easy_perform(handle))
        if let failure = state.readFailure { throw failure }
        var status = 0
        try check(ccurl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status))
        return CurlResponse(status: status, headers: state.headers, body: state.received)
    }
}

/// What the C callbacks read from and write to during one transfer.
private final class TransferState {
    let segments: [BodySegment]
    let length: Int
    var segment = 0
    var offset = 0
    var file: UnsafeMutablePointer<FILE>?
    var readFailure: CurlError?
    var received: [UInt8] = []
    var headers: [(String, String)] = []

    init(body: [BodySegment]) {
        segments = body
        length = body.reduce(0) { $0 + $1.size }
    }

    func close() {
        if let file { fclose(file) }
        file = nil
    }

    /// Fills `buffer` from the segments; 0 at the end, CURL_READFUNC_ABORT when a file fails.
    func read(into buffer: UnsafeMutablePointer<CChar>, capacity: Int) -> Int {
        while segment < segments.count {
            switch segments[segment] {
            case .bytes(let bytes):
                let count = min(capacity, bytes.count - offset)
                if count > 0 {
                    bytes.withUnsafeBufferPointer { source in
                        UnsafeMutableRawPointer(buffer).copyMemory(from: source.baseAddress! + offset, byteCount: count)
                    }
                    offset += count
                    return count
                }
            case .file(let path, let size):
                if file == nil {
                    file = fopen(path, "rb")
                    if file == nil {
                        readFailure = CurlError(code: -2, message: "a file could not be opened while sending: \(String(cString: strerror(errno)))")
                        return Int(CURL_READFUNC_ABORT)
                    }
                }
                let wanted = min(capacity, size - offset)
                if wanted > 0 {
                    let count = fread(buffer, 1, wanted, file)
                    if count == 0 {
                        readFailure = CurlError(code: -3, message: "a file changed size while sending")
                        return Int(CURL_READFUNC_ABORT)
                    }
                    offset += count
                    return count
                }
                close()
            }
            segment += 1
            offset = 0
        }
        return 0
    }

    func header(_ line: String) {
        let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.hasPrefix("HTTP/") {
            headers = []  // a new response (after 100 Continue or a redirect)
            return
        }
        guard let colon = trimmed.firstIndex(of: ":") else { return }
        let name = trimmed[..<colon].lowercased()
        let value = trimmed[trimmed.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        headers.append((name, value))
    }
}

private func state(_ userdata: UnsafeMutableRawPointer?) -> TransferState {
    Unmanaged<TransferState>.fromOpaque(userdata!).takeUnretainedValue()
}

private let curlWrite: ccurl_data_callback = { buffer, size, count, userdata in
    let bytes = size * count
    if let buffer, bytes > 0 {
        state(userdata).received.append(contentsOf: UnsafeRawBufferPointer(start: buffer, count: bytes))
    }
    return bytes
}

private let curlHeader: ccurl_data_callback = { buffer, size, count, userdata in
    let bytes = size * count
    if let buffer, bytes > 0 {
        let line = String(decoding: UnsafeRawBufferPointer(start: buffer, count: bytes), as: UTF8.self)
        state(userdata).header(line)
    }
    return bytes
}

private let curlRead: ccurl_data_callback = { buffer, size, count, userdata in
    guard let buffer else { return 0 }
    return state(userdata).read(into: buffer, capacity: size * count)
}
