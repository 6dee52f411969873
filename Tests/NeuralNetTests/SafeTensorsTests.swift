import NeuralNet
import Testing

@Suite struct SafeTensorsTests {
    func parse(_ bytes: [UInt8]) throws(NeuralNetError) -> SafeTensors {
        let result: Result<SafeTensors, NeuralNetError> = bytes.withUnsafeBytes { raw in
            Result { () throws(NeuralNetError) in try SafeTensors(bytes: raw) }
        }
        return try result.get()
    }

    @Test func readsF32F16AndBF16() throws {
        // 1.5 as F16 is 0x3E00, as BF16 0x3FC0.
        let header = """
            {"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},\
            "b":{"dtype":"F16","shape":[1],"data_offsets":[8,10]},"c":{"dtype":"BF16","shape":[1,1],"data_offsets":[10,12]}}
            """
        var data: [UInt8] = []
        [Float(1), -2].withUnsafeBytes { data += $0 }
        data += [0x00, 0x3E, 0xC0, 0x3F]
        let file = try parse(SafeTensorsWriter.file(header: header, data: data))
        #expect(try file.floats("a", shape: [2]) == [1, -2])
        #expect(try file.floats("b", shape: [1]) == [1.5])
        #expect(try file.floats("c", shape: [1, 1]) == [1.5])
        #expect(file.metadata == ["format": "pt"])
        #expect(throws: NeuralNetError.tensorShape(name: "a", expected: [1, 2], actual: [2])) { try file.floats("a", shape: [1, 2]) }
        #expect(throws: NeuralNetError.tensorMissing(name: "z")) { try file.floats("z", shape: [1]) }
    }

    static let hostile: [(String, [UInt8])] = [
        ("too short", [1, 2, 3]),
        ("header past end", [255, 0, 0, 0, 0, 0, 0, 0, 123]),
        ("huge header length", [0, 0, 0, 0, 0, 0, 0, 1] + Array("{}".utf8)),
        ("not JSON", SafeTensorsWriter.file(header: "{not json", data: [])),
        ("array header", SafeTensorsWriter.file(header: "[]", data: [])),
        ("offsets outside", SafeTensorsWriter.file(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: [])),
        ("size mismatch", SafeTensorsWriter.file(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0])),
        ("overflowing shape", SafeTensorsWriter.file(
            header: #"{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0])),
        ("negative dimension", SafeTensorsWriter.file(header: #"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0])),
        ("fractional offset", SafeTensorsWriter.file(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4.5]}}"#, data: [0, 0, 0, 0, 0])),
        ("reversed offsets", SafeTensorsWriter.file(header: #"{"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}"#, data: [0, 0, 0, 0])),
        ("overlap", SafeTensorsWriter.file(
            header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            data: [UInt8](repeating: 0, count: 8))),
        ("no dtype", SafeTensorsWriter.file(header: #"{"a":{"shape":[1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0])),
        ("bad metadata", SafeTensorsWriter.file(header: #"{"__metadata__":{"a":1}}"#, data: [])),
    ]

    @Test(arguments: hostile)
    func rejectsHostileHeaders(name: String, bytes: [UInt8]) {
        #expect(throws: NeuralNetError.self, "\(name)") { try parse(bytes) }
    }

    @Test func unsupportedDTypeIsNamed() {
        let bytes = SafeTensorsWriter.file(header: #"{"w":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8))
        #expect(throws: NeuralNetError.unsupportedDType(name: "w", dtype: "I64")) { try parse(bytes) }
    }
}
