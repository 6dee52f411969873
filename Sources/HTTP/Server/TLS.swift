import COpenSSL
import Foundation

/// Where the server's certificate, key and (for mutual TLS) client CA bundle
/// live; read at start and again at each `HTTPServer.reloadTLS()`.
public struct TLSConfiguration: Sendable, Equatable {
    public var certificatePath: String
    public var keyPath: String
    /// When set, every client must present a certificate this bundle verifies.
    public var clientCAPath: String?

    public init(certificatePath: String, keyPath: String, clientCAPath: String? = nil) {
        self.certificatePath = certificatePath
        self.keyPath = keyPath
        self.clientCAPath = clientCAPath
    }
}

public struct TLSError: Error, Sendable, Equatable, CustomStringConvertible {
    /// OpenSSL's reason with the file it concerns; never key material.
    public var description: String
}

/// One loaded certificate and key. A reload builds a new one; sessions already
/// running keep a reference to the one they started with.
public final class TLSContext: Sendable {
    nonisolated(unsafe) let pointer: OpaquePointer
    /// The leaf certificate's expiry.
    public let notAfter: Date?
    public let requiresClientCertificate: Bool

    public init(_ configuration: TLSConfiguration) throws(TLSError) {
        var error = [CChar](repeating: 0, count: 512)
        guard let pointer = copenssl_context_new(
            configuration.certificatePath, configuration.keyPath, configuration.clientCAPath, &error, error.count)
        else {
            throw TLSError(description: cText(error))
        }
        self.pointer = pointer
        let seconds = copenssl_context_not_after(pointer)
        notAfter = seconds < 0 ? nil : Date(timeIntervalSince1970: TimeInterval(seconds))
        requiresClientCertificate = configuration.clientCAPath != nil
    }

    deinit { copenssl_context_free(pointer) }
}

/// The TLS layer of one connection, used only on that connection's queue.
final class TLSSession {
    enum Outcome: Equatable {
        case processed(Int)
        case wantRead
        case wantWrite
        case closed
        case failed
        /// A plain HTTP request arrived on the TLS port.
        case plainHTTP
    }

    private let pointer: OpaquePointer

    init?(context: TLSContext, fd: Int32) {
        guard let pointer = copenssl_session_new(context.pointer, fd) else { return nil }
        self.pointer = pointer
    }

    deinit { copenssl_session_free(pointer) }

    func read(into buffer: UnsafeMutableRawBufferPointer) -> Outcome {
        Self.outcome(copenssl_session_read(pointer, buffer.baseAddress, buffer.count))
    }

    func write(_ buffer: UnsafeRawBufferPointer) -> Outcome {
        Self.outcome(copenssl_session_write(pointer, buffer.baseAddress, buffer.count))
    }

    var hasPendingInput: Bool { copenssl_session_pending(pointer) > 0 }

    var isEstablished: Bool { copenssl_session_established(pointer) != 0 }

    func closeNotify() { copenssl_session_close_notify(pointer) }

    var failureReason: String {
        var text = [CChar](repeating: 0, count: 256)
        copenssl_session_error(pointer, &text, text.count)
        return cText(text)
    }

    private static func outcome(_ result: Int) -> Outcome {
        if result > 0 { return .processed(result) }
        switch copenssl_status(rawValue: Int32(result)) {
        case COPENSSL_CLOSED: return .closed
        case COPENSSL_WANT_READ: return .wantRead
        case COPENSSL_WANT_WRITE: return .wantWrite
        case COPENSSL_PLAIN_HTTP: return .plainHTTP
        default: return .failed
        }
    }
}

/// A NUL-terminated C string the shim wrote into `buffer`.
private func cText(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
