import Foundation

/// NumPy `.npy` version 1.0 for little-endian float32 arrays, the format
/// Python tools and tests exchange with ichctl.
enum NPYFile {
    static func data(float32 values: [Float], shape: [Int]) -> Data {
        precondition(shape.reduce(1, *) == values.count, "shape does not match the value count")
        let dims = shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? "," : "")
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(dims)), }"
        // Magic (6) + version (2) + header length (2) + header must be a multiple of 64, ending in '\n'.
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var data = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
        let length = UInt16(header.utf8.count)
        data.append(contentsOf: [UInt8(length & 0xFF), UInt8(length >> 8)])
        data.append(contentsOf: Array(header.utf8))
        values.withUnsafeBytes { data.append(contentsOf: $0) }
        return data
    }

    /// Reads a C-order little-endian float32 array (versions 1.0 to 3.0) and its shape.
    static func read(float32 data: [UInt8]) -> (values: [Float], shape: [Int])? {
        guard data.count >= 10, data[0] == 0x93, Array(data[1..<6]) == Array("NUMPY".utf8) else { return nil }
        let major = data[6]
        let (lengthBytes, start) = major == 1 ? (2, 10) : (4, 12)
        guard data.count >= start, major >= 1, major <= 3 else { return nil }
        let headerLength = (0..<lengthBytes).reduce(0) { $0 | Int(data[8 + $1]) << (8 * $1) }
        guard start + headerLength <= data.count else { return nil }
        let header = String(decoding: data[start..<(start + headerLength)], as: UTF8.self)
        guard header.contains("'descr': '<f4'"), header.contains("'fortran_order': False"),
              let open = header.range(of: "'shape': ("), let close = header[open.upperBound...].firstIndex(of: ")")
        else { return nil }
        let shape = header[open.upperBound..<close].split(separator: ",").compactMap {
            Int($0.trimmingCharacters(in: .whitespaces))
        }
        let count = shape.reduce(1, *)
        let body = data[(start + headerLength)...]
        guard body.count == count * 4 else { return nil }
        let values = body.withUnsafeBytes { raw in
            (0..<count).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
        }
        return (values, shape)
    }
}
