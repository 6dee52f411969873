#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public struct HTTPVersion: Sendable, Equatable, CustomStringConvertible {
    public var major: Int
    public var minor: Int

    public init(major: Int, minor: Int) {
        self.major = major
        self.minor = minor
    }

    public static let http1_0 = HTTPVersion(major: 1, minor: 0)
    public static let http1_1 = HTTPVersion(major: 1, minor: 1)

    public var description: String { "HTTP/\(major).\(minor)" }
}

/// A request line and its header fields, as the parser produced them.
public struct HTTPRequestHead: Sendable {
    public var method: String
    /// The request target exactly as sent (still percent-encoded).
    public var target: String
    /// The percent-decoded path without the query.
    public var path: String
    /// Decoded query items in order; '+' reads as a space.
    public var queryItems: [(name: String, value: String)]
    public var version: HTTPVersion
    public var headers: HTTPHeaders
    /// What the server's head check attached when it admitted the request.
    public var admission: (any Sendable)?

    public init(method: String, target: String, version: HTTPVersion = .http1_1, headers: HTTPHeaders = .init())
        throws(HTTPParseError)
    {
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        (path, queryItems) = try decodeTarget(target)
    }

    /// The first value of the query item `name`.
    public func query(_ name: String) -> String? {
        queryItems.first { $0.name == name }?.value
    }

    /// Whether the connection may carry another request after this one
    /// (RFC 9112 §9.3): HTTP/1.1 unless `close`, HTTP/1.0 only with `keep-alive`.
    public var keepAlive: Bool {
        let options = headers.tokens("connection")
        if options.contains("close") { return false }
        return version == .http1_1 || options.contains("keep-alive")
    }
}

/// Splits a target into its decoded path and query items. A path that does not
/// decode to valid UTF-8, or decodes to NUL, is refused: handlers and logs
/// should never see either.
func decodeTarget(_ target: String) throws(HTTPParseError) -> (String, [(name: String, value: String)]) {
    let bytes = Array(target.utf8)
    let queryStart = bytes.firstIndex(of: UInt8(ascii: "?"))
    let rawPath = bytes[..<(queryStart ?? bytes.endIndex)]
    guard let pathBytes = percentDecode(rawPath, plusIsSpace: false),
        let path = String(validating: pathBytes, as: UTF8.self)
    else { throw .invalidPercentEncoding }
    if pathBytes.contains(0) { throw .nulInPath }
    var items: [(name: String, value: String)] = []
    if let queryStart {
        for pair in bytes[(queryStart + 1)...].split(separator: UInt8(ascii: "&")) {
            let equals = pair.firstIndex(of: UInt8(ascii: "="))
            let rawName = pair[..<(equals ?? pair.endIndex)]
            let rawValue = equals.map { pair[($0 + 1)...] } ?? pair[pair.endIndex...]
            guard let name = percentDecode(rawName, plusIsSpace: true).flatMap({ String(validating: $0, as: UTF8.self) }),
                let value = percentDecode(rawValue, plusIsSpace: true).flatMap({ String(validating: $0, as: UTF8.self) })
            else { throw .invalidPercentEncoding }
            items.append((name: name, value: value))
        }
    }
    return (path, items)
}

func percentDecode(_ bytes: ArraySlice<UInt8>, plusIsSpace: Bool) -> [UInt8]? {
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count)
    var index = bytes.startIndex
    while index < bytes.endIndex {
        let byte = bytes[index]
        if byte == UInt8(ascii: "%") {
            guard index + 2 < bytes.endIndex,
                let high = ByteClass.hexValue(bytes[index + 1]), let low = ByteClass.hexValue(bytes[index + 2])
            else { return nil }
            out.append(UInt8(high << 4 | low))
            index += 3
        } else {
            out.append(plusIsSpace && byte == UInt8(ascii: "+") ? 0x20 : byte)
            index += 1
        }
    }
    return out
}

/// A request body: nothing, bytes in memory, or (past the server's memory limit)
/// a file the server wrote as the body arrived and deletes once the response is written.
public enum HTTPBody: Sendable, Equatable {
    case empty
    case bytes([UInt8])
    case file(path: String, count: Int)

    public var count: Int {
        switch self {
        case .empty: 0
        case .bytes(let bytes): bytes.count
        case .file(_, let count): count
        }
    }

    /// Calls `body` with the whole body; a file is mapped read-only for the call.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        switch self {
        case .empty:
            return try body(UnsafeRawBufferPointer(start: nil, count: 0))
        case .bytes(let bytes):
            return try bytes.withUnsafeBytes(body)
        case .file(let path, let count):
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw SystemError(call: "open", errno: errno) }
            defer { close(fd) }
            guard count > 0 else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
            guard let base = mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
                throw SystemError(call: "mmap", errno: errno)
            }
            defer { munmap(base, count) }
            return try body(UnsafeRawBufferPointer(start: base, count: count))
        }
    }
}

/// A request as a handler sees it: head, body and what routing found.
public struct HTTPRequest: Sendable {
    public var head: HTTPRequestHead
    public var body: HTTPBody
    public var pathParameters: [String: String]
    /// The matched template, e.g. `/v1/studies/{uid}`: what logs and metrics name.
    public var routeTemplate: String?
    public var remoteAddress: String

    public init(
        head: HTTPRequestHead, body: HTTPBody = .empty, pathParameters: [String: String] = [:],
        routeTemplate: String? = nil, remoteAddress: String = ""
    ) {
        self.head = head
        self.body = body
        self.pathParameters = pathParameters
        self.routeTemplate = routeTemplate
        self.remoteAddress = remoteAddress
    }

    public var method: String { head.method }
    public var path: String { head.path }
    public var headers: HTTPHeaders { head.headers }
    public func query(_ name: String) -> String? { head.query(name) }
}
