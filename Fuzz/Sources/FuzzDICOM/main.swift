import DICOM

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

// SwiftPM links executables with `main` aliased to `<module>_main`, which would
// hide libFuzzer's own `main`; hand control to libFuzzer's driver from there.
@_cdecl("FuzzDICOM_main")
public func fuzzMain(
    _ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, fuzzDICOM)
}

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt
