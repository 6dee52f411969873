/// Parses a request line and header fields from the start of a buffer, in the
/// manner of picohttpparser: no state between calls, "incomplete" until the
/// blank line arrives, never a read past `count`. Feeding a longer prefix of
/// the same bytes can only turn "incomplete" into a result, so a caller
/// re-parses when more bytes arrive (bounded by `maxHeaderBytes`).
public struct RequestHeadParser: Sendable {
    public enum Result: Sendable {
        case incomplete
        case complete(HTTPRequestHead, consumed: Int)
    }

    public var maxHeaderBytes: Int
    public var maxHeaderCount: Int

    public init(maxHeaderBytes: Int = 16 * 1024, maxHeaderCount: Int = 100) {
        self.maxHeaderBytes = maxHeaderBytes
        self.maxHeaderCount = maxHeaderCount
    }

    public func parse(_ buffer: UnsafeRawBufferPointer) throws(HTTPParseError) -> Result {
        // Bytes past the limit are never looked at: a head that has not ended
        // within it is too large whatever follows.
        let end = min(buffer.count, maxHeaderBytes)
        let incomplete: HTTPParseError? = buffer.count >= maxHeaderBytes ? .headerTooLarge : nil
        var position = 0

        // RFC 9112 §2.2: ignore empty lines before a request line (some clients
        // send a CRLF after a POST body).
        while position < end, buffer[position] == UInt8(ascii: "\r") || buffer[position] == UInt8(ascii: "\n") {
            guard let lineEnd = try lineEnd(buffer, from: position, end: end) else {
                if let incomplete { throw incomplete }
                return .incomplete
            }
            guard lineEnd == position else { break }
            position = lineEnd + 2
        }

        guard let requestLineEnd = try lineEnd(buffer, from: position, end: end) else {
            if let incomplete { throw incomplete }
            return .incomplete
        }
        let (method, target, version) = try parseRequestLine(buffer, position, requestLineEnd)
        position = requestLineEnd + 2

        var headers = HTTPHeaders()
        while true {
            guard let fieldEnd = try lineEnd(buffer, from: position, end: end) else {
                if let incomplete { throw incomplete }
                return .incomplete
            }
            if fieldEnd == position {
                position += 2
                break
            }
            guard headers.count < maxHeaderCount else { throw .tooManyHeaders }
            do {
                let (name, value) = try parseFieldLine(buffer, position, fieldEnd)
                headers.add(name, value)
            } catch {
                switch error {
                case .invalidName: throw .invalidHeaderName
                case .whitespaceBeforeColon: throw .whitespaceBeforeColon
                case .obsoleteFolding: throw .obsoleteLineFolding
                case .invalidValue: throw .invalidHeaderValue
                }
            }
            position = fieldEnd + 2
        }

        let hosts = headers.values("host")
        if hosts.count > 1 { throw .multipleHost }
        if hosts.isEmpty && version == .http1_1 { throw .missingHost }
        let head = try HTTPRequestHead(method: method, target: target, version: version, headers: headers)
        return .complete(head, consumed: position)
    }

    /// The index of the CR ending the line that starts at `start`, or nil when
    /// the buffer ends first. A CR without LF or an LF without CR is an error.
    private func lineEnd(_ buffer: UnsafeRawBufferPointer, from start: Int, end: Int) throws(HTTPParseError) -> Int? {
        var index = start
        while index < end {
            switch buffer[index] {
            case UInt8(ascii: "\r"):
                guard index + 1 < end else { return nil }
                guard buffer[index + 1] == UInt8(ascii: "\n") else { throw .bareCR }
                return index
            case UInt8(ascii: "\n"):
                throw .bareLF
            default:
                index += 1
            }
        }
        return nil
    }

    private func parseRequestLine(_ buffer: UnsafeRawBufferPointer, _ start: Int, _ end: Int)
        throws(HTTPParseError) -> (String, String, HTTPVersion)
    {
        var index = start
        while index < end, buffer[index] != UInt8(ascii: " ") {
            guard ByteClass.token[Int(buffer[index])] else { throw .invalidMethod }
            index += 1
        }
        guard index > start, index < end else { throw .badRequestLine }
        let method = String(decoding: UnsafeRawBufferPointer(rebasing: buffer[start..<index]), as: UTF8.self)

        let targetStart = index + 1
        index = targetStart
        while index < end, buffer[index] != UInt8(ascii: " ") {
            // Visible ASCII only; '#' never belongs in a request target.
            let byte = buffer[index]
            guard byte > 0x20, byte < 0x7F, byte != UInt8(ascii: "#") else { throw .invalidTarget }
            index += 1
        }
        guard index > targetStart, index < end else { throw .badRequestLine }
        let target = String(decoding: UnsafeRawBufferPointer(rebasing: buffer[targetStart..<index]), as: UTF8.self)
        if target == "*" {
            guard method == "OPTIONS" else { throw .invalidTarget }
        } else if buffer[targetStart] != UInt8(ascii: "/") {
            // Absolute-form belongs to proxies; authority-form to CONNECT. Neither is ours.
            throw .invalidTarget
        }

        let versionStart = index + 1
        let digit = { (byte: UInt8) in byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
        guard end - versionStart == 8,
            Array(UnsafeRawBufferPointer(rebasing: buffer[versionStart..<versionStart + 5])) == Array("HTTP/".utf8),
            digit(buffer[versionStart + 5]), buffer[versionStart + 6] == UInt8(ascii: "."),
            digit(buffer[versionStart + 7])
        else { throw .badRequestLine }
        let version = HTTPVersion(
            major: Int(buffer[versionStart + 5] - UInt8(ascii: "0")),
            minor: Int(buffer[versionStart + 7] - UInt8(ascii: "0")))
        guard version == .http1_1 || version == .http1_0 else { throw .unsupportedVersion }
        return (method, target, version)
    }
}
