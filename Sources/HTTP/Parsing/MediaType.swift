/// A media type with its parameters (RFC 9110 §8.3.1), e.g.
/// `multipart/related; type="application/dicom"; boundary=xyz`.
public struct MediaType: Sendable, Equatable {
    /// `type/subtype`, lowercased.
    public var type: String
    /// Parameter names lowercased; values unquoted (quoted-pairs resolved), case kept.
    public var parameters: [String: String]

    public init(type: String, parameters: [String: String] = [:]) {
        self.type = type
        self.parameters = parameters
    }

    /// Nil for anything malformed, including a parameter given twice: two
    /// `boundary` values would let two readers split a body differently.
    public init?(parsing text: String) {
        let bytes = Array(text.utf8)
        var index = 0
        func skipOWS() { while index < bytes.count, ByteClass.isOWS(bytes[index]) { index += 1 } }
        func token() -> String? {
            let start = index
            while index < bytes.count, ByteClass.token[Int(bytes[index])] { index += 1 }
            return index > start ? String(decoding: bytes[start..<index], as: UTF8.self).lowercasedASCII() : nil
        }

        skipOWS()
        guard let major = token(), index < bytes.count, bytes[index] == UInt8(ascii: "/") else { return nil }
        index += 1
        guard let minor = token() else { return nil }
        type = major + "/" + minor
        parameters = [:]
        skipOWS()
        while index < bytes.count {
            guard bytes[index] == UInt8(ascii: ";") else { return nil }
            index += 1
            skipOWS()
            if index == bytes.count { break }  // a trailing ';' is common and harmless
            guard let name = token(), index < bytes.count, bytes[index] == UInt8(ascii: "=") else { return nil }
            index += 1
            var value: [UInt8] = []
            if index < bytes.count, bytes[index] == UInt8(ascii: "\"") {
                index += 1
                var closed = false
                while index < bytes.count {
                    let byte = bytes[index]
                    if byte == UInt8(ascii: "\"") {
                        closed = true
                        index += 1
                        break
                    }
                    if byte == UInt8(ascii: "\\") {
                        index += 1
                        guard index < bytes.count else { return nil }
                    }
                    guard ByteClass.isFieldValue(bytes[index]) else { return nil }
                    value.append(bytes[index])
                    index += 1
                }
                guard closed else { return nil }
            } else {
                let start = index
                while index < bytes.count, ByteClass.token[Int(bytes[index])] { index += 1 }
                guard index > start else { return nil }
                value = Array(bytes[start..<index])
            }
            guard parameters[name] == nil else { return nil }
            parameters[name] = String(decoding: value, as: UTF8.self)
            skipOWS()
        }
    }
}
