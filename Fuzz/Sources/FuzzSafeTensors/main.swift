import FuzzDriver
import NeuralNet

/// Any bytes must give a parsed file or a typed NeuralNetError: never a crash,
/// an over-read (AddressSanitizer) or an allocation sized by a lying header.
/// Every tensor a parsed file lists must convert with exactly its shape.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafeTensors(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: start, count: count)
    guard let file = try? SafeTensors(bytes: bytes) else { return 0 }
    for (name, entry) in file.entries {
        let expected = entry.shape.reduce(1, *)
        precondition(expected * (entry.dtype == .f32 ? 4 : 2) == entry.range.count, "entry size disagrees with its shape")
        guard let values = try? file.floats(name, shape: entry.shape) else { fatalError("a listed tensor does not convert") }
        precondition(values.count == expected)
    }
    return 0
}

@_cdecl("FuzzSafeTensors_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runLibFuzzer(argc, argv, fuzzSafeTensors)
}
