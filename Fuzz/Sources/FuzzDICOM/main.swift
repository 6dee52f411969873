import DICOM
import FuzzDriver

/// Any bytes must give a CTSlice or a typed DICOMError: never a crash, an
/// over-read (AddressSanitizer) or an allocation sized by a lying header.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDICOM(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: start, count: count)
    if let slice = try? DICOMDecoder.decode(bytes) {
        precondition(slice.storedValues.count == slice.rows * slice.columns)
        precondition(slice.rows <= CTSlice.maximumDimension && slice.columns <= CTSlice.maximumDimension)
    }
    return 0
}

@_cdecl("FuzzDICOM_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runLibFuzzer(argc, argv, fuzzDICOM)
}
