import DICOMTestSupport
import Testing

@testable import DICOM

@Suite struct DICOMDecoderTests {
    @Test func decodesAttributesAndSignedPixels() throws {
        let values: [Int16] = [-2000, -1024, -1, 0, 1, 40, 1000, 3071, -32768, 32767, 7, 8]
        let slice = try DICOMDecoder.decode(DICOMWriter.ct(values: values).bytes())
        #expect(slice.studyInstanceUID == "1.2.3.4.5.1")
        #expect(slice.seriesInstanceUID == "1.2.3.4.5.2")
        #expect(slice.sopInstanceUID == "1.2.3.4.5.3")
        #expect(slice.sopClassUID == "1.2.840.10008.5.1.4.1.1.2")
        #expect(slice.modality == "CT")
        #expect(slice.transferSyntaxUID == "1.2.840.10008.1.2.1")
        #expect(slice.instanceNumber == 7)
        #expect(slice.imagePositionPatient == [-125, -120.5, 33.75])
        #expect(slice.imageOrientationPatient == [1, 0, 0, 0, 1, 0])
        #expect(slice.pixelSpacing == [0.488281, 0.488281])
        #expect(slice.rows == 3 && slice.columns == 4)
        #expect(slice.pixelRepresentation == .signed)
        #expect(slice.photometricInterpretation == .monochrome2)
        #expect(slice.rescaleSlope == 1 && slice.rescaleIntercept == -1024)
        #expect(slice.storedWindow == .init(center: 40, width: 80))
        #expect(slice.storedValues == values.map(Int32.init))
        #expect(slice.hounsfieldUnits() == values.map { Float(Int($0) - 1024) })
    }

    /// Each frame of an Enhanced CT object is a slice with its own plane and rescale, from the
    /// per-frame functional groups, and the shared ones for what all frames have in common.
    @Test func decodesEachFrameWithItsFunctionalGroups() throws {
        let bytes = DICOMWriter.enhancedCT(intercepts: [-1024, -1000, 0]).bytes()
        for frame in 1...3 {
            let slice = try DICOMDecoder.decode(bytes, frame: frame)
            #expect(slice.frameNumber == frame)
            #expect(slice.imagePositionPatient == [-125, -120, Double(10 * frame)])
            #expect(slice.imageOrientationPatient == [1, 0, 0, 0, 1, 0])
            #expect(slice.pixelSpacing == [0.5, 0.5])
            #expect(slice.rescaleIntercept == [-1024, -1000, 0][frame - 1])
            #expect(slice.storedValues == (0..<12).map { Int32((frame - 1) * 1000 + $0) })
        }
        #expect(throws: DICOMError.multiFrame(frames: 3)) { try DICOMDecoder.decode(bytes) }
        #expect(throws: DICOMError.frameOutOfRange(frame: 4, frames: 3)) { try DICOMDecoder.decode(bytes, frame: 4) }
        #expect(throws: DICOMError.frameOutOfRange(frame: 0, frames: 3)) { try DICOMDecoder.decode(bytes, frame: 0) }
        let several = bytes.withUnsafeBytes { DICOMDecoder.decode($0, frames: [3, 1, 9]) }
        #expect(try several[0].get().storedValues.first == 2000)
        #expect(try several[1].get().storedValues.first == 0)
        #expect(throws: DICOMError.frameOutOfRange(frame: 9, frames: 3)) { try several[2].get() }
    }

    @Test func headerListsEveryFramesPlane() throws {
        let header = try DICOMDecoder.header(DICOMWriter.enhancedCT(intercepts: [-1024, -1024]).bytes())
        #expect(header.frames.map(\.position) == [10, 20])
        #expect(header.frames.allSatisfy { $0.sliceNormal == [0, 0, 1] })
        #expect(header.sliceThickness == 5)
        #expect(header.convolutionKernel == "STANDARD")
        #expect(header.unsupportedImage == nil, "every frame is a slice the decoder reads")
    }

    @Test func singleFrameObjectsAreFrameOne() throws {
        let bytes = DICOMWriter.ct().bytes()
        #expect(try DICOMDecoder.decode(bytes).frameNumber == 1)
        #expect(try DICOMDecoder.header(bytes).frames.count == 1)
        #expect(throws: DICOMError.frameOutOfRange(frame: 2, frames: 1)) { try DICOMDecoder.decode(bytes, frame: 2) }
    }

    @Test func decodesWithoutPreamble() throws {
        let slice = try DICOMDecoder.decode(DICOMWriter.ct().bytes(preamble: false))
        #expect(slice.storedValues.count == 12)
    }

    /// Bits above BitsStored are not part of the value (pydicom masks them too).
    @Test(arguments: [
        (UInt16(1), UInt16(0x0FFF), Int32(-1)),  // signed 12-bit all ones
        (UInt16(1), UInt16(0xF800), Int32(-2048)),  // high garbage, 12-bit sign bit set
        (UInt16(0), UInt16(0xF800), Int32(2048)),
        (UInt16(0), UInt16(0xA123), Int32(0x123)),
    ])
    func masksToBitsStored(representation: UInt16, raw: UInt16, expected: Int32) throws {
        var w = DICOMWriter.ct(rows: 1, columns: 1)
        w.us(0x0028, 0x0101, 12)
        w.us(0x0028, 0x0103, representation)
        w.pixels16([raw])
        #expect(try DICOMDecoder.decode(w.bytes()).storedValues == [expected], "raw \(raw)")
    }

    /// Pixel Padding Value is often written as US even for signed pixels.
    @Test func paddingValueFollowsPixelRepresentation() throws {
        var w = DICOMWriter.ct()
        w.us(0x0028, 0x0120, UInt16(bitPattern: -2000))
        #expect(try DICOMDecoder.decode(w.bytes()).pixelPaddingValue == -2000)
        w.us(0x0028, 0x0103, 0)
        #expect(try DICOMDecoder.decode(w.bytes()).pixelPaddingValue == 63536)
    }

    @Test func monochrome1IsDecodedAsStored() throws {
        var w = DICOMWriter.ct()
        w.string(0x0028, 0x0004, "CS", "MONOCHROME1")
        let slice = try DICOMDecoder.decode(w.bytes())
        #expect(slice.photometricInterpretation == .monochrome1)
        #expect(slice.storedValues == (try DICOMDecoder.decode(DICOMWriter.ct().bytes())).storedValues)
    }

    typealias Edit = @Sendable (inout DICOMWriter) -> Void

    static let rejections: [(String, Edit, DICOMError)] = [
        ("no pixel data", { $0.remove(0x7FE0, 0x0010) }, .noPixelData),
        ("no study UID", { $0.remove(0x0020, 0x000D) }, .missingAttribute("StudyInstanceUID")),
        ("no series UID", { $0.remove(0x0020, 0x000E) }, .missingAttribute("SeriesInstanceUID")),
        ("no SOP UID", { $0.remove(0x0008, 0x0018) }, .missingAttribute("SOPInstanceUID")),
        ("slash in UID", { $0.string(0x0008, 0x0018, "UI", "1.2/abc") }, .malformedUID(attribute: "SOPInstanceUID")),
        ("no rows", { $0.remove(0x0028, 0x0010) }, .missingAttribute("Rows")),
        ("no bits allocated", { $0.remove(0x0028, 0x0100) }, .missingAttribute("BitsAllocated")),
        ("zero rows", { $0.us(0x0028, 0x0010, 0) }, .absurdDimensions(rows: 0, columns: 4)),
        ("huge image", { $0.us(0x0028, 0x0010, 60000); $0.us(0x0028, 0x0011, 60000) },
         .absurdDimensions(rows: 60000, columns: 60000)),
        ("short pixel data", { $0.us(0x0028, 0x0010, 300) }, .pixelDataTooShort(expected: 2400, actual: 24)),
        ("two frames, pixels for one", { $0.string(0x0028, 0x0008, "IS", "2") }, .pixelDataTooShort(expected: 48, actual: 24)),
        ("too many frames", { $0.string(0x0028, 0x0008, "IS", "5000") }, .tooManyFrames(5000)),
        ("zero frames", { $0.string(0x0028, 0x0008, "IS", "0") }, .invalidAttribute("NumberOfFrames")),
        ("RGB", { $0.us(0x0028, 0x0002, 3); $0.string(0x0028, 0x0004, "CS", "RGB") },
         .unsupportedPixelFormat(samplesPerPixel: 3, bitsAllocated: 16)),
        ("palette", { $0.string(0x0028, 0x0004, "CS", "PALETTE COLOR") },
         .unsupportedPhotometricInterpretation("PALETTE COLOR")),
        ("32-bit", { $0.us(0x0028, 0x0100, 32) }, .unsupportedPixelFormat(samplesPerPixel: 1, bitsAllocated: 32)),
        ("bits stored > allocated", { $0.us(0x0028, 0x0101, 17) }, .invalidAttribute("BitsStored")),
        ("zero slope", { $0.string(0x0028, 0x1053, "DS", "0") }, .invalidAttribute("RescaleSlope")),
        ("text slope", { $0.string(0x0028, 0x1053, "DS", "one") }, .invalidAttribute("RescaleSlope")),
        ("modality LUT", { $0.set(0x0028, 0x3000, "SQ", []) }, .modalityLUTSequence),
        ("two-value position", { $0.string(0x0020, 0x0032, "DS", "1\\2") }, .invalidAttribute("ImagePositionPatient")),
    ]

    @Test(arguments: rejections)
    func rejects(name: String, edit: Edit, expected: DICOMError) {
        var w = DICOMWriter.ct()
        edit(&w)
        #expect(throws: expected, "\(name)") { try DICOMDecoder.decode(w.bytes()) }
    }

    @Test(arguments: [
        ("empty", [UInt8]()),
        ("text", Array("hello, this is not a DICOM file at all".utf8)),
        ("random", (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 7) }),
        ("PNG", [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + [UInt8](repeating: 0, count: 200)),
    ])
    func rejectsNonDICOM(name: String, bytes: [UInt8]) {
        #expect(throws: DICOMError.notDICOM, "\(name)") { try DICOMDecoder.decode(bytes) }
    }

    /// Cut anywhere after the meta header, a file must fail cleanly: never crash or over-read.
    @Test func truncationAnywhereIsATypedError() {
        let bytes = DICOMWriter.ct().bytes()
        for length in stride(from: 133, to: bytes.count, by: 1) {
            do {
                _ = try DICOMDecoder.decode(Array(bytes.prefix(length)))
                Issue.record("decoded a file cut at \(length) of \(bytes.count) bytes")
            } catch {
                #expect([.truncated, .malformed, .noPixelData].contains(error) || error.type.hasPrefix("missing"),
                        "cut at \(length): \(error)")
            }
        }
        #expect(throws: DICOMError.truncated) { try DICOMDecoder.decode(Array(bytes.dropLast(7))) }
    }

    @Test func acceptsArchiveStyleIdentifiers() throws {
        var w = DICOMWriter.ct()
        w.string(0x0020, 0x000D, "UI", "ID_0a1b2c3d4e")
        w.string(0x0008, 0x0018, "UI", "05fa52f0e599f17b8186ff18fcdf2b55")
        let slice = try DICOMDecoder.decode(w.bytes())
        #expect(slice.studyInstanceUID == "ID_0a1b2c3d4e" && slice.sopInstanceUID == "05fa52f0e599f17b8186ff18fcdf2b55")
    }

    @Test func headerReadsSeriesAndStudyAttributes() throws {
        var w = DICOMWriter.ct()
        w.string(0x0008, 0x0008, "CS", "ORIGINAL\\PRIMARY\\axial")
        w.string(0x0008, 0x0050, "SH", "ACC123")
        w.string(0x0010, 0x0010, "PN", "Doe^Jane")
        w.string(0x0010, 0x0020, "LO", "PID9")
        w.string(0x0008, 0x0020, "DA", "20261205")
        w.string(0x0008, 0x1030, "LO", "CT HEAD WO")
        w.string(0x0008, 0x0080, "LO", "General Hospital")
        w.string(0x0018, 0x0050, "DS", "5.0")
        w.string(0x0018, 0x1210, "SH", "H30s")
        w.string(0x0008, 0x103E, "LO", "Brain 5mm")
        w.string(0x0020, 0x0011, "IS", "3")
        let header = try DICOMDecoder.header(w.bytes())
        #expect(header.imageType == ["ORIGINAL", "PRIMARY", "AXIAL"])
        #expect(header.seriesNumber == 3 && header.instanceNumber == 7)
        #expect(header.sliceThickness == 5 && header.convolutionKernel == "H30s" && header.seriesDescription == "Brain 5mm")
        #expect(header.position == 33.75 && header.hasPixelData && header.unsupportedImage == nil)
        #expect(header.study == StudyAttributes(accessionNumber: "ACC123", patientID: "PID9", patientName: "Doe^Jane",
                                                studyDate: "20261205", studyDescription: "CT HEAD WO",
                                                institutionName: "General Hospital"))
    }

    @Test(arguments: [(nil, false), ("STAT", true), ("high", true), ("ROUTINE", false), ("LOW", false)])
    func requestedProcedurePriorityMakesAnInstanceUrgent(priority: String?, urgent: Bool) throws {
        var w = DICOMWriter.ct()
        if let priority { w.string(0x0040, 0x1003, "SH", priority) }
        #expect(try DICOMDecoder.header(w.bytes()).urgent == urgent)
    }

    static let unsupported: [(String, Edit, DICOMError)] = [
        ("RGB", { $0.us(0x0028, 0x0002, 3); $0.string(0x0028, 0x0004, "CS", "RGB") },
         .unsupportedPixelFormat(samplesPerPixel: 3, bitsAllocated: 16)),
        ("modality LUT", { $0.set(0x0028, 0x3000, "SQ", []) }, .modalityLUTSequence),
    ]

    /// What ingest acknowledges without triage: the header says why, nothing throws.
    @Test(arguments: unsupported)
    func headerReportsUnsupportedImages(name: String, edit: Edit, expected: DICOMError) throws {
        var w = DICOMWriter.ct()
        edit(&w)
        #expect(try DICOMDecoder.header(w.bytes()).unsupportedImage == expected, "\(name)")
    }

    @Test func headerOfAnObjectWithoutPixels() throws {
        var w = DICOMWriter.ct()
        w.remove(0x7FE0, 0x0010)
        w.remove(0x0028, 0x0010)
        w.string(0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.88.67")
        w.string(0x0008, 0x0060, "CS", "SR")
        let header = try DICOMDecoder.header(w.bytes())
        #expect(!header.hasPixelData && header.unsupportedImage == nil && header.modality == "SR")
    }

    /// Malformed images are refused by the header read as by the decoder: ingest answers 400 for them.
    @Test func headerRefusesMalformedImages() {
        var w = DICOMWriter.ct()
        w.us(0x0028, 0x0010, 300)
        #expect(throws: DICOMError.pixelDataTooShort(expected: 2400, actual: 24)) { try DICOMDecoder.header(w.bytes()) }
        w = DICOMWriter.ct()
        w.string(0x0020, 0x000D, "UI", "..")
        #expect(throws: DICOMError.malformedUID(attribute: "StudyInstanceUID")) { try DICOMDecoder.header(w.bytes()) }
    }

    /// The header read stops at the Pixel Data; it must say what a read of the whole object says, for every
    /// file the other tests make, cut at every length, and with elements after or pixels nested before it.
    @Test func headerOnlyReadsAgreeWithWholeReads() {
        func outcome(_ bytes: [UInt8], whole: Bool) -> Result<InstanceHeader, DICOMError> {
            bytes.withUnsafeBytes { buffer in Result { () throws(DICOMError) in try DICOMDecoder.header(buffer, wholeObject: whole) } }
        }
        var files: [(String, [UInt8])] = [("plain", DICOMWriter.ct().bytes()), ("no preamble", DICOMWriter.ct().bytes(preamble: false)),
                                          ("enhanced", DICOMWriter.enhancedCT(intercepts: [-1024, 0, 7]).bytes())]
        for (name, edit, _) in Self.rejections + Self.unsupported {
            var w = DICOMWriter.ct()
            edit(&w)
            files.append((name, w.bytes()))
        }
        var trailing = DICOMWriter.ct()
        trailing.set(0xFFFC, 0xFFFC, "OB", [0, 0, 0, 0])
        files.append(("padding after the pixels", trailing.bytes()))
        var empty = DICOMWriter.ct()
        empty.set(0x7FE0, 0x0010, "OW", [])
        files.append(("empty pixel data at the end", empty.bytes()))
        var icon = DICOMWriter.ct()
        var iconItem = DICOMWriter()
        iconItem.us(0x0028, 0x0010, 1)
        iconItem.pixels16([7])
        icon.sequence(0x0088, 0x0200, [iconItem])
        files.append(("icon image with its own pixel data", icon.bytes()))
        let plain = DICOMWriter.ct().bytes()
        files += (133..<plain.count).map { ("cut at \($0)", Array(plain.prefix($0))) }
        for (name, bytes) in files {
            let (part, whole) = (outcome(bytes, whole: false), outcome(bytes, whole: true))
            switch (part, whole) {
            case let (.success(a), .success(b)): #expect(a == b, "\(name)")
            case let (.failure(a), .failure(b)): #expect(a == b, "\(name)")
            default: Issue.record("\(name): header-only \(part), whole \(whole)")
            }
        }
    }

    @Test func errorsHaveStableTypesAndHumanDetails() {
        let error = DICOMError.unsupportedTransferSyntax(uid: "1.2.840.10008.1.2.4.90")
        #expect(error.type == "unsupported-transfer-syntax")
        #expect(error.detail.contains("1.2.840.10008.1.2.4.90"))
    }
}
