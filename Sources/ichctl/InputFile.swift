import DICOM
import Foundation
import Imaging

/// Why an input file could not be used: unreadable, or a typed decode error.
enum InputError: Error {
    case unreadable(String)
    case dicom(DICOMError)
    case imaging(ImagingError)

    var type: String {
        switch self {
        case .unreadable: "unreadable-file"
        case .dicom(let error): error.type
        case .imaging(let error): error.type
        }
    }

    var detail: String {
        switch self {
        case .unreadable(let reason): "The file could not be read: \(reason)."
        case .dicom(let error): error.detail
        case .imaging(let error): error.detail
        }
    }
}

func readFile(_ path: String) throws(InputError) -> [UInt8] {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw .unreadable("no such file, or not readable")
    }
    return [UInt8](data)
}

/// One slice: frame `frame` (1-based) of the file, or its only frame.
func decodeFile(_ path: String, frame: Int? = nil) throws(InputError) -> CTSlice {
    let bytes = try readFile(path)
    do {
        return try DICOMDecoder.decode(bytes, frame: frame)
    } catch {
        throw .dicom(error)
    }
}

/// Every frame of the file as a slice, in frame order (one for a single-frame object).
func decodeFrames(_ path: String) throws(InputError) -> [CTSlice] {
    let bytes = try readFile(path)
    let decoded: Result<[CTSlice], DICOMError> = bytes.withUnsafeBytes { buffer in
        Result { () throws(DICOMError) in
            try DICOMDecoder.decodeAllFrames(buffer).map { (result) throws(DICOMError) in try result.get() }
        }
    }
    do {
        return try decoded.get()
    } catch {
        throw .dicom(error)
    }
}
