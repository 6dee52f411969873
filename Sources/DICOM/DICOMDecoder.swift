import CDCMTK

/// Turns the bytes of one DICOM object into a `CTSlice`. The only importer of `CDCMTK`.
public enum DICOMDecoder {
    /// Decodes frame `frame` (1-based) of a single-sample greyscale image; without a frame number the
    /// object must be single-frame (`multiFrame` otherwise: which frame is meant is the caller's to say).
    /// Any modality is decoded; deciding that only CT is accepted belongs to the caller.
    public static func decode(_ bytes: UnsafeRawBufferPointer, frame: Int? = nil) throws(DICOMError) -> CTSlice {
        let object = try DCMTKObject(bytes)
        let format = try object.decodableFormat()
        if frame == nil, format.frames > 1 { throw .multiFrame(frames: format.frames) }
        return try object.slice(frame: frame ?? 1, format: format)
    }

    public static func decode(_ bytes: [UInt8], frame: Int? = nil) throws(DICOMError) -> CTSlice {
        // withUnsafeBytes cannot forward a typed throw, so carry the result out.
        let result: Result<CTSlice, DICOMError> = bytes.withUnsafeBytes { buffer in
            Result { () throws(DICOMError) in try decode(buffer, frame: frame) }
        }
        return try result.get()
    }

    /// Several frames of one object, parsed once: what a batch holding a run of one multi-frame
    /// series' frames needs. A failure of the whole object fails every frame; a frame's own
    /// failure (a corrupt codestream) only that one.
    public static func decode(_ bytes: UnsafeRawBufferPointer, frames: [Int]) -> [Result<CTSlice, DICOMError>] {
        do {
            return try decodeFrames(bytes) { _ in frames }
        } catch {
            return frames.map { _ in .failure(error) }
        }
    }

    /// Every frame of the object, in frame order, parsed once; what fails the whole object throws.
    public static func decodeAllFrames(_ bytes: UnsafeRawBufferPointer) throws(DICOMError) -> [Result<CTSlice, DICOMError>] {
        try decodeFrames(bytes) { Array(1...$0) }
    }

    /// The frames `which(frameCount)` names, from one parse.
    private static func decodeFrames(_ bytes: UnsafeRawBufferPointer, _ which: (Int) -> [Int]) throws(DICOMError)
        -> [Result<CTSlice, DICOMError>]
    {
        let object = try DCMTKObject(bytes)
        let format = try object.decodableFormat()
        return which(format.frames).map { frame in Result { () throws(DICOMError) in try object.slice(frame: frame, format: format) } }
    }

    /// Reads any well-formed instance's header, stopping at its Pixel Data (neither copied nor decoded).
    /// Throws for what makes the object unusable as DICOM (no or malformed
    /// identifiers, malformed image attributes); an image the pixel decoder
    /// cannot handle is reported in `unsupportedImage`, not thrown.
    public static func header(_ bytes: UnsafeRawBufferPointer) throws(DICOMError) -> InstanceHeader {
        try header(bytes, wholeObject: false)
    }

    /// `wholeObject`: parse past the Pixel Data as a decode does; the tests hold the two reads equal.
    static func header(_ bytes: UnsafeRawBufferPointer, wholeObject: Bool) throws(DICOMError) -> InstanceHeader {
        let object = try DCMTKObject(bytes, headerOnly: !wholeObject)
        return try object.header()
    }

    public static func header(_ bytes: [UInt8]) throws(DICOMError) -> InstanceHeader {
        let result: Result<InstanceHeader, DICOMError> = bytes.withUnsafeBytes { buffer in
            Result { () throws(DICOMError) in try header(buffer) }
        }
        return try result.get()
    }
}

/// Attribute tags the decoder reads, as (group, element).
enum Tag {
    static let sopClassUID: (UInt16, UInt16) = (0x0008, 0x0016)
    static let sopInstanceUID: (UInt16, UInt16) = (0x0008, 0x0018)
    static let imageType: (UInt16, UInt16) = (0x0008, 0x0008)
    static let studyDate: (UInt16, UInt16) = (0x0008, 0x0020)
    static let studyTime: (UInt16, UInt16) = (0x0008, 0x0030)
    static let accessionNumber: (UInt16, UInt16) = (0x0008, 0x0050)
    static let modality: (UInt16, UInt16) = (0x0008, 0x0060)
    static let institutionName: (UInt16, UInt16) = (0x0008, 0x0080)
    static let patientBirthDate: (UInt16, UInt16) = (0x0010, 0x0030)
    static let patientSex: (UInt16, UInt16) = (0x0010, 0x0040)
    static let referringPhysicianName: (UInt16, UInt16) = (0x0008, 0x0090)
    static let studyID: (UInt16, UInt16) = (0x0020, 0x0010)
    static let specificCharacterSet: (UInt16, UInt16) = (0x0008, 0x0005)
    static let studyDescription: (UInt16, UInt16) = (0x0008, 0x1030)
    static let seriesDescription: (UInt16, UInt16) = (0x0008, 0x103E)
    static let patientName: (UInt16, UInt16) = (0x0010, 0x0010)
    static let patientID: (UInt16, UInt16) = (0x0010, 0x0020)
    static let bodyPartExamined: (UInt16, UInt16) = (0x0018, 0x0015)
    static let sliceThickness: (UInt16, UInt16) = (0x0018, 0x0050)
    static let convolutionKernel: (UInt16, UInt16) = (0x0018, 0x1210)
    static let studyInstanceUID: (UInt16, UInt16) = (0x0020, 0x000D)
    static let seriesInstanceUID: (UInt16, UInt16) = (0x0020, 0x000E)
    static let seriesNumber: (UInt16, UInt16) = (0x0020, 0x0011)
    static let instanceNumber: (UInt16, UInt16) = (0x0020, 0x0013)
    static let imagePositionPatient: (UInt16, UInt16) = (0x0020, 0x0032)
    static let imageOrientationPatient: (UInt16, UInt16) = (0x0020, 0x0037)
    static let samplesPerPixel: (UInt16, UInt16) = (0x0028, 0x0002)
    static let photometricInterpretation: (UInt16, UInt16) = (0x0028, 0x0004)
    static let numberOfFrames: (UInt16, UInt16) = (0x0028, 0x0008)
    static let rows: (UInt16, UInt16) = (0x0028, 0x0010)
    static let columns: (UInt16, UInt16) = (0x0028, 0x0011)
    static let pixelSpacing: (UInt16, UInt16) = (0x0028, 0x0030)
    static let bitsAllocated: (UInt16, UInt16) = (0x0028, 0x0100)
    static let bitsStored: (UInt16, UInt16) = (0x0028, 0x0101)
    static let pixelRepresentation: (UInt16, UInt16) = (0x0028, 0x0103)
    static let pixelPaddingValue: (UInt16, UInt16) = (0x0028, 0x0120)
    static let pixelPaddingRangeLimit: (UInt16, UInt16) = (0x0028, 0x0121)
    static let windowCenter: (UInt16, UInt16) = (0x0028, 0x1050)
    static let windowWidth: (UInt16, UInt16) = (0x0028, 0x1051)
    static let rescaleIntercept: (UInt16, UInt16) = (0x0028, 0x1052)
    static let rescaleSlope: (UInt16, UInt16) = (0x0028, 0x1053)
    static let modalityLUTSequence: (UInt16, UInt16) = (0x0028, 0x3000)
    static let requestedProcedurePriority: (UInt16, UInt16) = (0x0040, 0x1003)
    // Functional group macros of multi-frame images (PS3.3 C.7.6.16.2), read through `frameString`.
    static let ctReconstructionSequence: (UInt16, UInt16) = (0x0018, 0x9314)
    static let planePositionSequence: (UInt16, UInt16) = (0x0020, 0x9113)
    static let planeOrientationSequence: (UInt16, UInt16) = (0x0020, 0x9116)
    static let pixelMeasuresSequence: (UInt16, UInt16) = (0x0028, 0x9110)
    static let frameVOILUTSequence: (UInt16, UInt16) = (0x0028, 0x9132)
    static let pixelValueTransformationSequence: (UInt16, UInt16) = (0x0028, 0x9145)
}

/// Owns one parsed DCMTK object and reads typed attributes from it.
private final class DCMTKObject {
    private let handle: OpaquePointer

    /// `headerOnly`: stop at the Pixel Data element (what `header()` needs); `slice` then cannot be called.
    init(_ bytes: UnsafeRawBufferPointer, headerOnly: Bool = false) throws(DICOMError) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { throw .notDICOM }
        var handle: OpaquePointer?
        let read = headerOnly ? cdcmtk_read_header : cdcmtk_read
        let status = read(base.assumingMemoryBound(to: UInt8.self), bytes.count, &handle)
        guard status == CDCMTK_OK, let handle else { throw DICOMError(status) }
        self.handle = handle
    }

    deinit { cdcmtk_free(handle) }

    func header() throws(DICOMError) -> InstanceHeader {
        let study = try requiredUID(Tag.studyInstanceUID, "StudyInstanceUID")
        let series = try requiredUID(Tag.seriesInstanceUID, "SeriesInstanceUID")
        let sop = try requiredUID(Tag.sopInstanceUID, "SOPInstanceUID")
        let sopClass = try string(Tag.sopClassUID, "SOPClassUID")
        if let sopClass, !UID.isValid(sopClass) { throw .malformedUID(attribute: "SOPClassUID") }
        // An empty Pixel Data element is no pixel data (pixel_info says so; has_pixel_data only sees the element).
        var encapsulated: Int32 = 0, nativeLength = 0, decodable: Int32 = 0
        let pixelData = cdcmtk_has_pixel_data(handle)
        let hasPixelData = pixelData == CDCMTK_UNSUPPORTED_TRANSFER_SYNTAX || pixelData == CDCMTK_OK
            && cdcmtk_pixel_info(handle, &encapsulated, &nativeLength, &decodable) != CDCMTK_NO_PIXEL_DATA
        var unsupported: DICOMError?
        if hasPixelData, case .unsupported(let error) = try imageFormat() { unsupported = error }
        let frameCount = try frameCount()
        let planes = try (0..<frameCount).map { (index) throws(DICOMError) in
            FramePlane(imagePositionPatient: try frameDecimals(index, Tag.planePositionSequence, Tag.imagePositionPatient,
                                                               "ImagePositionPatient", count: 3),
                       imageOrientationPatient: try frameDecimals(index, Tag.planeOrientationSequence,
                                                                  Tag.imageOrientationPatient, "ImageOrientationPatient", count: 6))
        }
        return InstanceHeader(
            studyInstanceUID: study, seriesInstanceUID: series, sopInstanceUID: sop, sopClassUID: sopClass,
            modality: try string(Tag.modality, "Modality"), transferSyntaxUID: String(cString: cdcmtk_transfer_syntax(handle)),
            // Attributes only the series rules read: a bad value there makes the rule not match, it does not refuse the object.
            seriesNumber: try? integer(Tag.seriesNumber, "SeriesNumber"),
            instanceNumber: try integer(Tag.instanceNumber, "InstanceNumber"),
            imageType: ((try? string(Tag.imageType, "ImageType")) ?? nil).map {
                $0.split(separator: "\\", omittingEmptySubsequences: false).map { String($0).trimmingSpacesAndNULs().uppercased() }
            } ?? [],
            frames: planes,
            sliceThickness: ((try? frameDecimals(0, Tag.pixelMeasuresSequence, Tag.sliceThickness, "SliceThickness")) ?? nil)?.first,
            convolutionKernel: (try? frameString(0, Tag.ctReconstructionSequence, Tag.convolutionKernel, "ConvolutionKernel")) ?? nil,
            seriesDescription: try? string(Tag.seriesDescription, "SeriesDescription"),
            bodyPartExamined: try? string(Tag.bodyPartExamined, "BodyPartExamined"),
            hasPixelData: hasPixelData, unsupportedImage: unsupported,
            urgent: ["STAT", "HIGH"].contains(
                ((try? string(Tag.requestedProcedurePriority, "RequestedProcedurePriority")) ?? nil)?.uppercased()),
            study: StudyAttributes(
                accessionNumber: try? string(Tag.accessionNumber, "AccessionNumber"),
                patientID: try? string(Tag.patientID, "PatientID"), patientName: try? string(Tag.patientName, "PatientName"),
                studyDate: try? string(Tag.studyDate, "StudyDate"), studyTime: try? string(Tag.studyTime, "StudyTime"),
                studyDescription: try? string(Tag.studyDescription, "StudyDescription"),
                institutionName: try? string(Tag.institutionName, "InstitutionName"),
                patientBirthDate: try? string(Tag.patientBirthDate, "PatientBirthDate"),
                patientSex: try? string(Tag.patientSex, "PatientSex"),
                referringPhysicianName: try? string(Tag.referringPhysicianName, "ReferringPhysicianName"),
                studyID: try? string(Tag.studyID, "StudyID"),
                specificCharacterSet: try? string(Tag.specificCharacterSet, "SpecificCharacterSet")))
    }

    /// The checked image attributes of an object the pixel decoder can read.
    struct ImageFormat {
        var rows: Int
        var columns: Int
        var frames: Int
        var stored: StoredFormat
        var photometric: CTSlice.PhotometricInterpretation
    }

    enum ImageCheck {
        case decodable(ImageFormat)
        case unsupported(DICOMError)
    }

    /// Checks the image attributes from the header alone: what no valid image
    /// has throws, what is valid but beyond the pixel decoder is `unsupported`.
    func imageFormat() throws(DICOMError) -> ImageCheck {
        let samples = try integer(Tag.samplesPerPixel, "SamplesPerPixel") ?? 1
        let photometricText = try string(Tag.photometricInterpretation, "PhotometricInterpretation")
        let bitsAllocated = try integer(Tag.bitsAllocated, "BitsAllocated")
        let frames = try frameCount()

        switch cdcmtk_has_pixel_data(handle) {
        case CDCMTK_OK: break
        case CDCMTK_UNSUPPORTED_TRANSFER_SYNTAX:
            return .unsupported(.unsupportedTransferSyntax(uid: String(cString: cdcmtk_transfer_syntax(handle))))
        default: throw .noPixelData
        }
        guard let bitsAllocated else { throw .missingAttribute("BitsAllocated") }
        guard samples == 1, bitsAllocated == 8 || bitsAllocated == 16 else {
            return .unsupported(.unsupportedPixelFormat(samplesPerPixel: samples, bitsAllocated: bitsAllocated))
        }
        guard let photometricText else { throw .missingAttribute("PhotometricInterpretation") }
        guard let photometric = CTSlice.PhotometricInterpretation(rawValue: photometricText) else {
            return .unsupported(.unsupportedPhotometricInterpretation(String(photometricText.prefix(16))))
        }
        guard let rows = try integer(Tag.rows, "Rows") else { throw .missingAttribute("Rows") }
        guard let columns = try integer(Tag.columns, "Columns") else { throw .missingAttribute("Columns") }
        guard (1...CTSlice.maximumDimension).contains(rows), (1...CTSlice.maximumDimension).contains(columns) else {
            throw .absurdDimensions(rows: rows, columns: columns)
        }
        let bitsStored = try integer(Tag.bitsStored, "BitsStored") ?? bitsAllocated
        guard (1...bitsAllocated).contains(bitsStored) else { throw .invalidAttribute("BitsStored") }
        let representationValue = try integer(Tag.pixelRepresentation, "PixelRepresentation") ?? 0
        guard let representation = CTSlice.PixelRepresentation(rawValue: representationValue) else {
            throw .invalidAttribute("PixelRepresentation")
        }
        // A lookup table instead of slope/intercept: applying only the linear part would give wrong HU.
        guard cdcmtk_has_element(handle, Tag.modalityLUTSequence.0, Tag.modalityLUTSequence.1) == 0 else {
            return .unsupported(.modalityLUTSequence)
        }
        // Slope and intercept may differ per frame: checked for every frame, so that ingest refuses what the batch could not decode.
        for frame in 0..<frames { _ = try rescale(frame) }

        var encapsulated: Int32 = 0
        var nativeLength = 0
        var decodable: Int32 = 0
        let status = cdcmtk_pixel_info(handle, &encapsulated, &nativeLength, &decodable)
        guard status == CDCMTK_OK else { throw DICOMError(status) }
        guard decodable != 0 else {
            return .unsupported(.unsupportedTransferSyntax(uid: String(cString: cdcmtk_transfer_syntax(handle))))
        }
        let expected = rows * columns * bitsAllocated / 8 * frames
        if encapsulated == 0, nativeLength < expected { throw .pixelDataTooShort(expected: expected, actual: nativeLength) }
        let stored = StoredFormat(bitsAllocated: bitsAllocated, bitsStored: bitsStored, representation: representation)
        return .decodable(ImageFormat(rows: rows, columns: columns, frames: frames, stored: stored, photometric: photometric))
    }

    func decodableFormat() throws(DICOMError) -> ImageFormat {
        switch try imageFormat() {
        case .decodable(let checked): checked
        case .unsupported(let error): throw error
        }
    }

    /// NumberOfFrames, 1 when absent, within what the decoder accepts.
    private func frameCount() throws(DICOMError) -> Int {
        let frames = try integer(Tag.numberOfFrames, "NumberOfFrames") ?? 1
        guard frames >= 1 else { throw .invalidAttribute("NumberOfFrames") }
        guard frames <= CTSlice.maximumFrames else { throw .tooManyFrames(frames) }
        return frames
    }

    /// Frame `index` (0-based)'s modality LUT: the Pixel Value Transformation functional group, else the top level.
    private func rescale(_ index: Int) throws(DICOMError) -> (slope: Double, intercept: Double) {
        let slope = try frameDecimals(index, Tag.pixelValueTransformationSequence, Tag.rescaleSlope, "RescaleSlope")?.first ?? 1
        let intercept = try frameDecimals(index, Tag.pixelValueTransformationSequence, Tag.rescaleIntercept, "RescaleIntercept")?
            .first ?? 0
        guard slope.isFinite, slope != 0 else { throw .invalidAttribute("RescaleSlope") }
        guard intercept.isFinite else { throw .invalidAttribute("RescaleIntercept") }
        return (slope, intercept)
    }

    /// One frame (1-based) as a slice: the object's attributes with the frame's own from its functional groups.
    func slice(frame: Int, format: ImageFormat) throws(DICOMError) -> CTSlice {
        guard (1...format.frames).contains(frame) else { throw .frameOutOfRange(frame: frame, frames: format.frames) }
        let index = frame - 1
        let study = try requiredUID(Tag.studyInstanceUID, "StudyInstanceUID")
        let series = try requiredUID(Tag.seriesInstanceUID, "SeriesInstanceUID")
        let sop = try requiredUID(Tag.sopInstanceUID, "SOPInstanceUID")
        let sopClass = try string(Tag.sopClassUID, "SOPClassUID")
        if let sopClass, !UID.isValid(sopClass) { throw .malformedUID(attribute: "SOPClassUID") }

        let centers = try frameDecimals(index, Tag.frameVOILUTSequence, Tag.windowCenter, "WindowCenter")
        let widths = try frameDecimals(index, Tag.frameVOILUTSequence, Tag.windowWidth, "WindowWidth")
        var storedWindow: CTSlice.StoredWindow?
        if let center = centers?.first, let width = widths?.first {
            storedWindow = .init(center: center, width: width)
        }

        let (slope, intercept) = try rescale(index)
        let stored = try storedValues(format, frame: index)

        return CTSlice(
            studyInstanceUID: study, seriesInstanceUID: series, sopInstanceUID: sop,
            sopClassUID: sopClass, modality: try string(Tag.modality, "Modality"),
            transferSyntaxUID: String(cString: cdcmtk_transfer_syntax(handle)), frameNumber: frame,
            instanceNumber: try integer(Tag.instanceNumber, "InstanceNumber"),
            imagePositionPatient: try frameDecimals(index, Tag.planePositionSequence, Tag.imagePositionPatient,
                                                    "ImagePositionPatient", count: 3),
            imageOrientationPatient: try frameDecimals(index, Tag.planeOrientationSequence, Tag.imageOrientationPatient,
                                                       "ImageOrientationPatient", count: 6),
            pixelSpacing: try frameDecimals(index, Tag.pixelMeasuresSequence, Tag.pixelSpacing, "PixelSpacing", count: 2),
            rows: format.rows, columns: format.columns, bitsAllocated: format.stored.bitsAllocated,
            bitsStored: format.stored.bitsStored, pixelRepresentation: format.stored.representation,
            photometricInterpretation: format.photometric, rescaleSlope: slope, rescaleIntercept: intercept,
            pixelPaddingValue: try padding(Tag.pixelPaddingValue, "PixelPaddingValue", format.stored),
            pixelPaddingRangeLimit: try padding(Tag.pixelPaddingRangeLimit, "PixelPaddingRangeLimit", format.stored),
            storedWindow: storedWindow, storedValues: stored)
    }

    private func storedValues(_ image: ImageFormat, frame index: Int) throws(DICOMError) -> [Int32] {
        let format = image.stored
        let count = image.rows * image.columns
        let bitsAllocated = format.bitsAllocated
        var data: UnsafePointer<UInt8>?
        var length = 0
        let status = cdcmtk_pixel_data(handle, UInt32(image.rows), UInt32(image.columns), UInt32(bitsAllocated), UInt(index),
                                       UInt(image.frames), &data, &length)
        guard status == CDCMTK_OK, let data else {
            if status == CDCMTK_UNSUPPORTED_TRANSFER_SYNTAX {
                throw .unsupportedTransferSyntax(uid: String(cString: cdcmtk_transfer_syntax(handle)))
            }
            throw DICOMError(status)
        }
        let expected = count * bitsAllocated / 8
        guard length >= expected else { throw .pixelDataTooShort(expected: expected, actual: length) }

        let value = format.value
        return [Int32](unsafeUninitializedCapacity: count) { out, initialized in
            if bitsAllocated == 16 {
                data.withMemoryRebound(to: UInt16.self, capacity: count) { words in
                    for i in 0..<count { out[i] = value(UInt32(words[i])) }
                }
            } else {
                for i in 0..<count { out[i] = value(UInt32(data[i])) }
            }
            initialized = count
        }
    }

    /// Pixel padding attributes are US or SS whatever the pixel representation
    /// says, so bring them into the stored values' domain.
    private func padding(_ tag: (UInt16, UInt16), _ name: String, _ format: StoredFormat) throws(DICOMError) -> Int? {
        guard let raw = try integer(tag, name) else { return nil }
        return Int(format.value(UInt32(truncatingIfNeeded: raw)))
    }

    // MARK: Attribute access

    private func string(_ tag: (UInt16, UInt16), _ name: String) throws(DICOMError) -> String? {
        var buffer = [CChar](repeating: 0, count: 1024)
        var length = 0
        let status = cdcmtk_string(handle, tag.0, tag.1, &buffer, buffer.count, &length)
        switch status {
        case CDCMTK_OK:
            let text = String(decoding: buffer.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let trimmed = text.trimmingSpacesAndNULs()
            return trimmed.isEmpty ? nil : trimmed
        case CDCMTK_ABSENT: return nil
        case CDCMTK_BAD_VALUE: throw .invalidAttribute(name)
        default: throw DICOMError(status)
        }
    }

    /// A string attribute of frame `index` (0-based): from the functional group `macro` (per-frame, then
    /// shared) when the object has one, else the top-level attribute, so single-frame objects read as before.
    private func frameString(_ index: Int, _ macro: (UInt16, UInt16), _ tag: (UInt16, UInt16), _ name: String)
        throws(DICOMError) -> String?
    {
        var buffer = [CChar](repeating: 0, count: 1024)
        var length = 0
        let status = cdcmtk_frame_string(handle, UInt(index), macro.0, macro.1, tag.0, tag.1, &buffer, buffer.count, &length)
        switch status {
        case CDCMTK_OK:
            let trimmed = String(decoding: buffer.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self).trimmingSpacesAndNULs()
            return trimmed.isEmpty ? nil : trimmed
        case CDCMTK_ABSENT: return try string(tag, name)
        case CDCMTK_BAD_VALUE: throw .invalidAttribute(name)
        default: throw DICOMError(status)
        }
    }

    private func frameDecimals(_ index: Int, _ macro: (UInt16, UInt16), _ tag: (UInt16, UInt16), _ name: String, count: Int? = nil)
        throws(DICOMError) -> [Double]?
    {
        try decimals(frameString(index, macro, tag, name), name, count: count)
    }

    private func integer(_ tag: (UInt16, UInt16), _ name: String) throws(DICOMError) -> Int? {
        var value: Int64 = 0
        let status = cdcmtk_integer(handle, tag.0, tag.1, 0, &value)
        switch status {
        case CDCMTK_OK:
            guard let result = Int(exactly: value) else { throw .invalidAttribute(name) }
            return result
        case CDCMTK_ABSENT: return nil
        case CDCMTK_BAD_VALUE: throw .invalidAttribute(name)
        default: throw DICOMError(status)
        }
    }

    /// A decimal string (DS) attribute's values; `count` demands exactly that many.
    private func decimals(_ tag: (UInt16, UInt16), _ name: String, count: Int? = nil) throws(DICOMError) -> [Double]? {
        try decimals(string(tag, name), name, count: count)
    }

    private func decimals(_ text: String?, _ name: String, count: Int?) throws(DICOMError) -> [Double]? {
        guard let text else { return nil }
        var values: [Double] = []
        for part in text.split(separator: "\\", omittingEmptySubsequences: false) {
            guard let value = Double(String(part).trimmingSpacesAndNULs()), value.isFinite else {
                throw .invalidAttribute(name)
            }
            values.append(value)
        }
        if let count, values.count != count { throw .invalidAttribute(name) }
        return values
    }

    private func requiredUID(_ tag: (UInt16, UInt16), _ name: String) throws(DICOMError) -> String {
        guard let uid = try string(tag, name) else { throw .missingAttribute(name) }
        guard UID.isValid(uid) else { throw .malformedUID(attribute: name) }
        return uid
    }

}

/// How stored values are packed in their words.
struct StoredFormat {
    var bitsAllocated: Int
    var bitsStored: Int
    var representation: CTSlice.PixelRepresentation

    /// Masks to BitsStored and sign-extends when signed, as pydicom does.
    @inline(__always)
    func value(_ raw: UInt32) -> Int32 {
        let mask = UInt32((1 << bitsStored) - 1)
        let masked = raw & mask
        if representation == .signed, masked & (1 << (bitsStored - 1)) != 0 {
            return Int32(bitPattern: masked | ~mask)
        }
        return Int32(bitPattern: masked)
    }
}

extension DICOMError {
    init(_ status: cdcmtk_status) {
        switch status {
        case CDCMTK_NOT_DICOM: self = .notDICOM
        case CDCMTK_TRUNCATED: self = .truncated
        case CDCMTK_MALFORMED: self = .malformed
        case CDCMTK_NO_PIXEL_DATA: self = .noPixelData
        case CDCMTK_CORRUPT_PIXEL_DATA: self = .corruptPixelData
        case CDCMTK_PIXEL_DATA_MISMATCH: self = .pixelDataMismatch
        case CDCMTK_OUT_OF_MEMORY: self = .outOfMemory
        default: self = .internalError
        }
    }
}

extension String {
    /// DICOM pads values with spaces (text) or NUL (UIDs).
    func trimmingSpacesAndNULs() -> String {
        let isPadding = { (c: Character) in c == " " || c == "\0" }
        guard let start = firstIndex(where: { !isPadding($0) }), let end = lastIndex(where: { !isPadding($0) }) else {
            return ""
        }
        return String(self[start...end])
    }
}
