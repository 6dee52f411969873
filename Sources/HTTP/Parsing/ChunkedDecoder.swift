/// Decodes a chunked body (RFC 9112 §7.1) as bytes arrive, one byte of state
/// machine at a time outside chunk data, so any split of the input gives the
/// same payload and the same verdict. Payload is returned as ranges of the
/// caller's buffer: nothing is copied or allocated here.
public struct ChunkedDecoder: Sendable {
    public enum Step: Sendable, Equatable {
        /// Payload bytes at this range of the buffer just passed in.
        case data(Range<Int>)
        /// Every byte given has been consumed; feed more.
        case needMoreInput
        /// The last chunk and trailers are done; bytes from the offset on belong to the next request.
        case end
    }

    private enum State: Sendable {
        case sizeStart
        case size
        case sizeWhitespace
        case extensions
        case sizeLF
        case data
        case dataCR
        case dataLF
        case trailerLineStart
        case trailerLine
        case trailerLF
        case endLF
        case done
    }

    public let maxExtensionBytes: Int
    public let maxTrailerBytes: Int
    public let maxPayloadBytes: Int

    private var state = State.sizeStart
    private var chunkSize = 0
    private var remaining = 0
    private var lineBytes = 0
    private var trailerBytes = 0
    private var trailerLine: [UInt8] = []
    /// Payload bytes declared so far, checked against `maxPayloadBytes` as each size arrives.
    public private(set) var payloadBytes = 0

    public init(maxExtensionBytes: Int = 1024, maxTrailerBytes: Int = 16 * 1024, maxPayloadBytes: Int = .max) {
        self.maxExtensionBytes = maxExtensionBytes
        self.maxTrailerBytes = maxTrailerBytes
        self.maxPayloadBytes = maxPayloadBytes
    }

    public var isDone: Bool {
        if case .done = state { return true }
        return false
    }

    /// Advances from `offset` in `input` and returns the next thing the caller
    /// must act on; `offset` moves past what was consumed.
    public mutating func decode(_ input: UnsafeRawBufferPointer, offset: inout Int) throws(HTTPParseError) -> Step {
        while offset < input.count {
            if case .data = state {
                let take = min(remaining, input.count - offset)
                let range = offset..<(offset + take)
                offset += take
                remaining -= take
                if remaining == 0 { state = .dataCR }
                return .data(range)
            }
            let byte = input[offset]
            offset += 1
            try advance(byte)
            if case .done = state { return .end }
        }
        if case .done = state { return .end }
        return .needMoreInput
    }

    private mutating func advance(_ byte: UInt8) throws(HTTPParseError) {
        switch state {
        case .sizeStart:
            guard let digit = ByteClass.hexValue(byte) else { throw .invalidChunkSize }
            chunkSize = digit
            lineBytes = 1
            state = .size
        case .size:
            if let digit = ByteClass.hexValue(byte) {
                guard chunkSize <= (Int.max - digit) / 16 else { throw .chunkSizeOverflow }
                chunkSize = chunkSize * 16 + digit
                try countLineByte()
            } else {
                try afterSize(byte)
            }
        case .sizeWhitespace:
            try afterSize(byte)
        case .extensions:
            // Extensions are read past, not interpreted; only their length and
            // character set are policed.
            switch byte {
            case UInt8(ascii: "\r"): state = .sizeLF
            case UInt8(ascii: "\n"): throw .badChunkFraming
            default:
                guard ByteClass.isFieldValue(byte) else { throw .badChunkFraming }
                try countLineByte()
            }
        case .sizeLF:
            guard byte == UInt8(ascii: "\n") else { throw .badChunkFraming }
            let (total, overflow) = payloadBytes.addingReportingOverflow(chunkSize)
            guard !overflow, total <= maxPayloadBytes else { throw .bodyTooLarge }
            payloadBytes = total
            if chunkSize == 0 {
                state = .trailerLineStart
            } else {
                remaining = chunkSize
                state = .data
            }
        case .data:
            preconditionFailure("chunk data is consumed in bulk by decode")
        case .dataCR:
            guard byte == UInt8(ascii: "\r") else { throw .badChunkFraming }
            state = .dataLF
        case .dataLF:
            guard byte == UInt8(ascii: "\n") else { throw .badChunkFraming }
            state = .sizeStart
        case .trailerLineStart:
            if byte == UInt8(ascii: "\r") {
                state = .endLF
            } else {
                trailerLine.removeAll(keepingCapacity: true)
                state = .trailerLine
                try trailerByte(byte)
            }
        case .trailerLine:
            try trailerByte(byte)
        case .trailerLF:
            guard byte == UInt8(ascii: "\n") else { throw .badChunkFraming }
            // Trailers are discarded, but a malformed one still fails the request.
            let valid = trailerLine.withUnsafeBytes { bytes in
                (try? parseFieldLine(bytes, 0, bytes.count)) != nil
            }
            guard valid else { throw .badTrailer }
            state = .trailerLineStart
        case .endLF:
            guard byte == UInt8(ascii: "\n") else { throw .badChunkFraming }
            state = .done
        case .done:
            break
        }
    }

    private mutating func afterSize(_ byte: UInt8) throws(HTTPParseError) {
        switch byte {
        case UInt8(ascii: "\r"): state = .sizeLF
        case UInt8(ascii: ";"): state = .extensions; try countLineByte()
        case 0x20, 0x09: state = .sizeWhitespace; try countLineByte()
        case UInt8(ascii: "\n"): throw .badChunkFraming
        default: throw .invalidChunkSize
        }
    }

    private mutating func countLineByte() throws(HTTPParseError) {
        lineBytes += 1
        if lineBytes > maxExtensionBytes { throw .chunkExtensionTooLong }
    }

    private mutating func trailerByte(_ byte: UInt8) throws(HTTPParseError) {
        trailerBytes += 1
        guard trailerBytes <= maxTrailerBytes else { throw .trailerTooLarge }
        switch byte {
        case UInt8(ascii: "\r"): state = .trailerLF
        case UInt8(ascii: "\n"): throw .badChunkFraming
        default: trailerLine.append(byte)
        }
    }
}
