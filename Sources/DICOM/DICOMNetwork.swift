import CDCMTK

/// Why the DICOM listener or an association failed; the text is DCMTK's, never data-set content.
public struct DICOMNetworkError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
}

/// DIMSE status codes this node answers (PS3.4 Annex B, PS3.7 Annex C).
public enum DIMSEStatus {
    public static let success: UInt16 = 0x0000
    /// Out of Resources: the queue or the disk is full; the sender retries later.
    public static let outOfResources: UInt16 = 0xA700
    /// Cannot Understand: not a DICOM object we can read.
    public static let cannotUnderstand: UInt16 = 0xC000
    public static let processingFailure: UInt16 = 0x0110
}

/// A C-STORE SCU: sends one object to a storage node and returns its DIMSE status (0x0000 success,
/// 0xB... warnings, anything else a failure); throws when no answer came.
public enum DICOMSender {
    public static func store(_ bytes: [UInt8], host: String, port: Int, calledAETitle: String, callingAETitle: String,
                             timeout: Int) throws(DICOMNetworkError) -> UInt16 {
        var status: UInt16 = 0
        var error = [CChar](repeating: 0, count: 256)
        let result = bytes.withUnsafeBufferPointer { buffer in
            cdcmtk_store_scu(host, Int32(port), callingAETitle, calledAETitle, buffer.baseAddress, buffer.count,
                             Int32(timeout), &status, &error, error.count)
        }
        guard result == 0 else { throw DICOMNetworkError(description: text(error)) }
        return status
    }
}

/// The listening port for DICOM associations (all interfaces).
public final class DICOMListener: @unchecked Sendable {
    private let pointer: OpaquePointer

    /// An association request must arrive whole within `timeout` seconds of its connection (ARTIM).
    public init(port: Int, timeout: Int) throws(DICOMNetworkError) {
        var error = [CChar](repeating: 0, count: 256)
        guard let pointer = cdcmtk_listener_open(Int32(port), Int32(timeout), &error, error.count) else {
            throw DICOMNetworkError(description: text(error))
        }
        self.pointer = pointer
    }

    deinit { cdcmtk_listener_close(pointer) }

    /// The next association request; nil when no connection came within `wait` seconds.
    public func accept(wait: Int, maxPDU: Int) throws(DICOMNetworkError) -> DICOMAssociation? {
        var association: OpaquePointer?
        var error = [CChar](repeating: 0, count: 256)
        switch cdcmtk_listener_accept(pointer, Int32(wait), maxPDU, &association, &error, error.count) {
        case 1: return association.map(DICOMAssociation.init)
        case 0: return nil
        default: throw DICOMNetworkError(description: text(error))
        }
    }
}

/// One association, requested and not yet answered; served on the caller's thread.
public final class DICOMAssociation: @unchecked Sendable {
    public enum RejectReason: Sendable { case callingAETitle, calledAETitle, busy }

    public enum End: String, Sendable {
        case release, abort, timeout, error, stopped
    }

    private let pointer: OpaquePointer
    public let callingAETitle: String
    public let calledAETitle: String
    public let peerHost: String

    init(_ pointer: OpaquePointer) {
        self.pointer = pointer
        callingAETitle = String(cString: cdcmtk_association_calling_ae(pointer))
        calledAETitle = String(cString: cdcmtk_association_called_ae(pointer))
        peerHost = String(cString: cdcmtk_association_peer_host(pointer))
    }

    deinit { cdcmtk_association_free(pointer) }

    public func reject(_ reason: RejectReason) {
        let code: cdcmtk_reject_reason =
            switch reason {
            case .callingAETitle: CDCMTK_REJECT_CALLING_AE
            case .calledAETitle: CDCMTK_REJECT_CALLED_AE
            case .busy: CDCMTK_REJECT_BUSY
            }
        cdcmtk_association_reject(pointer, code)
    }

    /// Accepts Verification and the storage SOP classes in a transfer syntax we decode; returns the contexts accepted.
    @discardableResult
    public func accept() throws(DICOMNetworkError) -> Int {
        var error = [CChar](repeating: 0, count: 256)
        let accepted = cdcmtk_association_accept(pointer, &error, error.count)
        guard accepted >= 0 else { throw DICOMNetworkError(description: text(error)) }
        return Int(accepted)
    }

    /// Serves C-ECHO and C-STORE until the peer releases or aborts, `timeout` seconds pass without
    /// a message, or `stop()`. `store` gets each instance as Part-10 bytes and returns the status to answer.
    public func serve(
        timeout: Int, store: (UnsafeRawBufferPointer) -> UInt16, observe: (_ command: UInt16, _ status: UInt16) -> Void
    ) -> End {
        withoutActuallyEscaping(store) { store in
            withoutActuallyEscaping(observe) { observe in
                let handlers = Handlers(store: store, observe: observe)
                let context = Unmanaged.passUnretained(handlers).toOpaque()
                let end = cdcmtk_association_serve(pointer, Int32(timeout), { context, bytes, length in
                    let handlers = Unmanaged<Handlers>.fromOpaque(context!).takeUnretainedValue()
                    return handlers.store(UnsafeRawBufferPointer(start: bytes, count: length))
                }, { context, command, status in
                    Unmanaged<Handlers>.fromOpaque(context!).takeUnretainedValue().observe(command, status)
                }, context)
                return withExtendedLifetime(handlers) {
                    switch end {
                    case CDCMTK_ENDED_RELEASE: .release
                    case CDCMTK_ENDED_ABORT: .abort
                    case CDCMTK_ENDED_TIMEOUT: .timeout
                    case CDCMTK_ENDED_STOPPED: .stopped
                    default: .error
                    }
                }
            }
        }
    }

    /// From any thread: the association is aborted after the command in progress (within a second).
    public func stop() { cdcmtk_association_stop(pointer) }

    private final class Handlers {
        let store: (UnsafeRawBufferPointer) -> UInt16
        let observe: (UInt16, UInt16) -> Void
        init(store: @escaping (UnsafeRawBufferPointer) -> UInt16, observe: @escaping (UInt16, UInt16) -> Void) {
            self.store = store
            self.observe = observe
        }
    }
}

func text(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
