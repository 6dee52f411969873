import DICOM
import FuzzDriver

/// Any bytes must give a CTSlice or a typed DICOMError: never a crash, an
/// over-read (AddressSanitizer) or an allocation sized by a lying header.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDICOM(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: start, count: count)
    func check(_ slice: CTSlice) {
        precondition(slice.storedValues.count == slice.rows * slice.columns)
        precondition(slice.rows <= CTSlice.maximumDimension && slice.columns <= CTSlice.maximumDimension)
    }
    if let slice = try? DICOMDecoder.decode(bytes) { check(slice) }
    // The header read that ingest does (it stops at the Pixel Data), then every frame of what it accepts.
    if let header = try? DICOMDecoder.header(bytes) {
        precondition(!header.frames.isEmpty && header.frames.count <= CTSlice.maximumFrames)
        if header.hasPixelData, header.unsupportedImage == nil, let frames = try? DICOMDecoder.decodeAllFrames(bytes) {
            precondition(frames.count == header.frames.count)
            for case .success(let slice) in frames { check(slice) }
        }
    }
    return 0
}

@_cdecl("FuzzDICOM_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runLibFuzzer(argc, argv, fuzzDICOM)
}
