import Foundation

/// A safetensors file (8-byte little-endian header length, a JSON header, then
/// raw little-endian tensor data), read without trusting anything it says:
/// sizes are checked before they are multiplied, offsets must stay inside the
/// data and not overlap, and each violation names the tensor.
public struct SafeTensors: @unchecked Sendable {
    public enum DType: String, Sendable {
        case f32 = "F32", f16 = "F16", bf16 = "BF16"

        var size: Int { self == .f32 ? 4 : 2 }
    }

    public struct Entry: Sendable, Equatable {
        public var dtype: DType
        public var shape: [Int]
        /// Byte range within the data section.
        public var range: Range<Int>
    }

    public static let maximumHeaderBytes = 100 << 20
    public static let maximumTensors = 100_000

    public let entries: [String: Entry]
    public let metadata: [String: String]
    /// Keeps the mapping alive as long as the parsed view.
    private let file: MappedFile?
    private let data: UnsafeRawBufferPointer

    public init(path: String) throws(NeuralNetError) {
        let file = try MappedFile(path: path)
        try self.init(bytes: file.bytes, owner: file)
    }

    public init(bytes: UnsafeRawBufferPointer, owner: MappedFile? = nil) throws(NeuralNetError) {
        guard bytes.count >= 8 else { throw .safetensorsHeader("the file is shorter than its 8-byte header length") }
        let headerLength = bytes.loadUnaligned(as: UInt64.self).littleEndian
        guard headerLength <= UInt64(Self.maximumHeaderBytes) else {
            throw .safetensorsHeader("header length \(headerLength) exceeds \(Self.maximumHeaderBytes) bytes")
        }
        guard Int(headerLength) <= bytes.count - 8 else {
            throw .safetensorsHeader("header length \(headerLength) runs past the end of the file (\(bytes.count) bytes)")
        }
        let header = Data(bytes[8..<(8 + Int(headerLength))])
        let dataBytes = UnsafeRawBufferPointer(rebasing: bytes[(8 + Int(headerLength))...])

        guard let json = try? JSONSerialization.jsonObject(with: header), let object = json as? [String: Any] else {
            throw .safetensorsHeader("the header is not a JSON object")
        }
        guard object.count <= Self.maximumTensors else { throw .safetensorsHeader("more than \(Self.maximumTensors) tensors") }
        var entries: [String: Entry] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in object {
            if name == "__metadata__" {
                guard let pairs = value as? [String: String] else {
                    throw .safetensorsHeader("__metadata__ must map strings to strings")
                }
                metadata = pairs
                continue
            }
            entries[name] = try Self.entry(name: name, value, dataCount: dataBytes.count)
        }
        let sorted = entries.sorted { $0.value.range.lowerBound < $1.value.range.lowerBound }
        for (previous, next) in zip(sorted, sorted.dropFirst()) where previous.value.range.overlaps(next.value.range) {
            throw .safetensorsHeader("tensors '\(previous.key)' and '\(next.key)' overlap")
        }
        self.entries = entries
        self.metadata = metadata
        self.file = owner
        self.data = dataBytes
    }

    private static func entry(name: String, _ value: Any, dataCount: Int) throws(NeuralNetError) -> Entry {
        guard let fields = value as? [String: Any] else { throw .safetensorsHeader("entry '\(name)' is not an object") }
        guard let dtypeName = fields["dtype"] as? String else { throw .safetensorsHeader("tensor '\(name)' has no dtype") }
        guard let dtype = DType(rawValue: dtypeName) else { throw .unsupportedDType(name: name, dtype: dtypeName) }
        guard let shapeValues = fields["shape"] as? [Any], shapeValues.count <= 8 else {
            throw .safetensorsHeader("tensor '\(name)' has no shape or more than 8 dimensions")
        }
        guard let offsets = fields["data_offsets"] as? [Any], offsets.count == 2 else {
            throw .safetensorsHeader("tensor '\(name)' needs data_offsets [begin, end]")
        }
        let shape = try shapeValues.map { (v: Any) throws(NeuralNetError) -> Int in try integer(v, "shape of '\(name)'") }
        let begin = try integer(offsets[0], "data_offsets of '\(name)'")
        let end = try integer(offsets[1], "data_offsets of '\(name)'")
        var bytes = dtype.size
        for dimension in shape {
            let (product, overflow) = bytes.multipliedReportingOverflow(by: dimension)
            guard !overflow, product <= dataCount else {
                throw .safetensorsHeader("tensor '\(name)' with shape \(shape) is larger than the file")
            }
            bytes = product
        }
        guard begin <= end, end <= dataCount else {
            throw .safetensorsHeader("tensor '\(name)' data [\(begin), \(end)) lies outside the \(dataCount) data bytes")
        }
        guard end - begin == bytes else {
            throw .safetensorsHeader("tensor '\(name)' has \(end - begin) bytes where shape \(shape) of \(dtypeName) needs \(bytes)")
        }
        return Entry(dtype: dtype, shape: shape, range: begin..<end)
    }

    private static func integer(_ value: Any, _ what: String) throws(NeuralNetError) -> Int {
        // JSONSerialization gives NSNumber; refuse fractions, negatives and huge values.
        guard let number = value as? NSNumber, let int = Int(exactly: number.doubleValue), int >= 0, int < (1 << 53) else {
            throw .safetensorsHeader("\(what) must hold non-negative integers")
        }
        return int
    }

    /// The tensor converted to Float32, its shape checked against `shape`.
    public func floats(_ name: String, shape: [Int]) throws(NeuralNetError) -> [Float] {
        guard let entry = entries[name] else { throw .tensorMissing(name: name) }
        guard entry.shape == shape else { throw .tensorShape(name: name, expected: shape, actual: entry.shape) }
        let count = shape.reduce(1, *)
        let raw = UnsafeRawBufferPointer(rebasing: data[entry.range])
        return [Float](unsafeUninitializedCapacity: count) { out, initialized in
            switch entry.dtype {
            case .f32:
                for i in 0..<count { out[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
            case .f16:
                for i in 0..<count { out[i] = Float(Float16(bitPattern: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))) }
            case .bf16:
                for i in 0..<count { out[i] = Float(bitPattern: UInt32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16) }
            }
            initialized = count
        }
    }
}
