/// Byte classes from RFC 9110 §5.6.2 (tchar) and §5.5 (field-vchar), as tables
/// so the scanners do one load per byte.
enum ByteClass {
    static let token: [Bool] = (0..<256).map { byte in
        switch UInt8(byte) {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "A")...UInt8(ascii: "Z"):
            true
        default: "!#$%&'*+-.^_`|~".utf8.contains(UInt8(byte))
        }
    }

    /// VCHAR, SP, HTAB and obs-text: what may appear in a field value.
    @inline(__always) static func isFieldValue(_ byte: UInt8) -> Bool {
        byte == 0x09 || (byte >= 0x20 && byte != 0x7F)
    }

    @inline(__always) static func isOWS(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 }

    @inline(__always) static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): Int(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): Int(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): Int(byte - UInt8(ascii: "A") + 10)
        default: nil
        }
    }
}

/// Why one header line (of a request head or a multipart part) is malformed.
enum FieldLineError: Error {
    case invalidName, whitespaceBeforeColon, obsoleteFolding, invalidValue
}

/// Splits one header line (without its CRLF) into name and OWS-trimmed value.
/// Shared by the request head, chunked trailers and multipart part headers.
func parseFieldLine(_ bytes: UnsafeRawBufferPointer, _ start: Int, _ end: Int) throws(FieldLineError) -> (String, String) {
    guard start < end else { throw .invalidName }
    if ByteClass.isOWS(bytes[start]) { throw .obsoleteFolding }
    var colon = start
    while colon < end, bytes[colon] != UInt8(ascii: ":") {
        let byte = bytes[colon]
        if ByteClass.isOWS(byte) { throw .whitespaceBeforeColon }
        if !ByteClass.token[Int(byte)] { throw .invalidName }
        colon += 1
    }
    guard colon < end, colon > start else { throw .invalidName }
    var valueStart = colon + 1
    while valueStart < end, ByteClass.isOWS(bytes[valueStart]) { valueStart += 1 }
    var valueEnd = end
    while valueEnd > valueStart, ByteClass.isOWS(bytes[valueEnd - 1]) { valueEnd -= 1 }
    for index in valueStart..<valueEnd where !ByteClass.isFieldValue(bytes[index]) {
        throw .invalidValue
    }
    let name = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<colon]), as: UTF8.self)
    let value = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[valueStart..<valueEnd]), as: UTF8.self)
    return (name, value)
}

extension Array where Element == UInt8 {
    /// `withUnsafeBytes` keeping a typed error (the standard one rethrows `any Error`).
    func withBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        let result: Result<R, E> = withUnsafeBytes { buffer in Result { () throws(E) -> R in try body(buffer) } }
        return try result.get()
    }
}
