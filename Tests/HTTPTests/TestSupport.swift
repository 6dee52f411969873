import Foundation
@testable import HTTP

/// What a head parse came to, comparable across feeding styles.
enum HeadOutcome: Equatable, CustomStringConvertible {
    case incomplete
    case complete(method: String, target: String, path: String, headers: [String], consumed: Int)
    case failed(HTTPParseError)

    var description: String {
        switch self {
        case .incomplete: "incomplete"
        case .complete(let method, let target, let path, let headers, let consumed):
            "\(method) \(target) path=\(path) headers=\(headers) consumed=\(consumed)"
        case .failed(let error): "error \(error)"
        }
    }
}

/// Copies into an allocation of exactly the right size, so an over-read runs
/// off the end (AddressSanitizer in the fuzz build catches what tests miss).
func withExactBytes<R>(_ bytes: some Collection<UInt8>, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
    defer { buffer.deallocate() }
    buffer.copyBytes(from: bytes)
    return try body(UnsafeRawBufferPointer(buffer))
}

func parseHead(_ bytes: [UInt8], parser: RequestHeadParser = .init()) -> HeadOutcome {
    withExactBytes(bytes) { buffer in
        do throws(HTTPParseError) {
            switch try parser.parse(buffer) {
            case .incomplete: return .incomplete
            case .complete(let head, let consumed):
                return .complete(
                    method: head.method, target: head.target, path: head.path,
                    headers: head.headers.map { "\($0.name)=\($0.value)" }, consumed: consumed)
            }
        } catch {
            return .failed(error)
        }
    }
}

/// Re-parses every prefix as a server does when bytes trickle in; the first
/// answer that is not "incomplete" is the result.
func parseHeadByteByByte(_ bytes: [UInt8], parser: RequestHeadParser = .init()) -> HeadOutcome {
    for length in 0...bytes.count {
        let outcome = parseHead(Array(bytes[..<length]), parser: parser)
        if outcome != .incomplete { return outcome }
    }
    return .incomplete
}

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

/// Runs a chunked decode over `input` split into pieces at `splits`; returns the
/// payload, the bytes left after the end, or the error.
enum ChunkedOutcome: Equatable {
    case done(payload: [UInt8], rest: [UInt8])
    case incomplete(payload: [UInt8])
    case failed(HTTPParseError)
}

func decodeChunked(_ input: [UInt8], pieceSize: Int? = nil, maxPayloadBytes: Int = .max) -> ChunkedOutcome {
    var decoder = ChunkedDecoder(maxExtensionBytes: 64, maxTrailerBytes: 256, maxPayloadBytes: maxPayloadBytes)
    var payload: [UInt8] = []
    let size = max(1, pieceSize ?? input.count)
    var start = 0
    repeat {
        let piece = Array(input[start..<min(input.count, start + size)])
        start += piece.count
        let result: ChunkedOutcome? = withExactBytes(piece) { buffer -> ChunkedOutcome? in
            var offset = 0
            while true {
                do throws(HTTPParseError) {
                    switch try decoder.decode(buffer, offset: &offset) {
                    case .data(let range): payload += buffer[range]
                    case .needMoreInput: return nil
                    case .end: return .done(payload: payload, rest: Array(buffer[offset...]) + input[start...])
                    }
                } catch {
                    return .failed(error)
                }
            }
        }
        if let result { return result }
    } while start < input.count
    return .incomplete(payload: payload)
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

func writeFile(_ path: String, _ contents: [UInt8]) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard fd >= 0 else { throw SystemError(call: "open", errno: errno) }
    defer { close(fd) }
    let written = contents.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    guard written == contents.count else { throw SystemError(call: "write", errno: errno) }
}

func unlinkFile(_ path: String) { unlink(path) }

func fileExists(_ path: String) -> Bool { access(path, F_OK) == 0 }

/// Certificates made by the `openssl` command for the TLS tests: a CA and a server
/// certificate it signed for `days` days, in a fresh folder.
struct TestCertificates {
    let folder: String
    var ca: String { folder + "/ca.pem" }

    init() throws {
        folder = NSTemporaryDirectory() + "tls-test-\(UInt64.random(in: 0...UInt64.max))"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj", "/CN=test-ca")
    }

    /// `name`.pem and `name`.key, signed by the CA.
    @discardableResult
    func issue(_ name: String, days: Int) throws -> (certificate: String, key: String) {
        try openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "\(name).key",
                    "-out", "\(name).csr", "-subj", "/CN=localhost")
        try openssl("x509", "-req", "-in", "\(name).csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                    "-out", "\(name).pem", "-days", "\(days)")
        return ("\(folder)/\(name).pem", "\(folder)/\(name).key")
    }

    func openssl(_ arguments: String...) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: folder)
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw CocoaError(.fileWriteUnknown) }
    }

    func remove() { try? FileManager.default.removeItem(atPath: folder) }
}
