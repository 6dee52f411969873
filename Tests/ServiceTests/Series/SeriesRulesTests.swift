import DICOM
import Foundation
import Testing

@testable import Service

/// The default rules on the series a head-CT study from a scanner holds.
@Suite struct SeriesRulesTests {
    let rules = SeriesRules.default

    static func header(
        modality: String? = "CT", sopClass: String = "1.2.840.10008.5.1.4.1.1.2", imageType: [String] = ["ORIGINAL", "PRIMARY", "AXIAL"],
        orientation: [Double]? = [1, 0, 0, 0, 1, 0], hasPixelData: Bool = true, unsupported: DICOMError? = nil,
        kernel: String? = nil, thickness: Double? = 5, frames: Int = 1
    ) -> InstanceHeader {
        InstanceHeader(studyInstanceUID: "1", seriesInstanceUID: "1.1", sopInstanceUID: "1.1.1", sopClassUID: sopClass,
                       modality: modality, imageType: imageType,
                       frames: (0..<frames).map { FramePlane(imagePositionPatient: [0, 0, 10 + 5 * Double($0)], imageOrientationPatient: orientation) },
                       sliceThickness: thickness, convolutionKernel: kernel, hasPixelData: hasPixelData, unsupportedImage: unsupported)
    }

    static let tilt = 18.0 * Double.pi / 180

    @Test(arguments: [
        ("axial soft tissue", header(kernel: "H30s"), SeriesRules.Decision.triage),
        ("tilted gantry, 18 degrees", header(orientation: [1, 0, 0, 0, cos(tilt), sin(tilt)]), .triage),
        ("no orientation (cannot tell)", header(orientation: nil), .triage),
        ("bone kernel: triaged, ranked below soft tissue", header(kernel: "BONEPLUS"), .triage),
        ("scout", header(imageType: ["ORIGINAL", "PRIMARY", "LOCALIZER"], orientation: [0, 1, 0, 0, 0, -1]), .skip(reason: "localizer")),
        ("sagittal reformat", header(imageType: ["DERIVED", "SECONDARY", "REFORMATTED"], orientation: [0, 1, 0, 0, 0, -1]),
         .skip(reason: "derived")),
        ("coronal original", header(orientation: [1, 0, 0, 0, 0, -1]), .skip(reason: "not-axial")),
        ("oblique, 40 degrees", header(orientation: [1, 0, 0, 0, cos(0.7), sin(0.7)]), .skip(reason: "not-axial")),
        ("dose SR", header(modality: "SR", sopClass: "1.2.840.10008.5.1.4.1.1.88.67", imageType: [], hasPixelData: false),
         .skip(reason: "not-image")),
        ("RGB screen capture", header(modality: "OT", sopClass: "1.2.840.10008.5.1.4.1.1.7", imageType: ["DERIVED", "SECONDARY"],
                                      unsupported: .unsupportedPixelFormat(samplesPerPixel: 3, bitsAllocated: 8)), .skip(reason: "not-ct")),
        ("MR", header(modality: "MR"), .skip(reason: "not-ct")),
        ("JPEG XL, no codec", header(unsupported: .unsupportedTransferSyntax(uid: "1.2.840.10008.1.2.4.110")),
         .skip(reason: "unsupported-image")),
        ("enhanced CT, 40 frames", header(sopClass: "1.2.840.10008.5.1.4.1.1.2.1", frames: 40), .triage),
    ])
    func defaultRules(name: String, header: InstanceHeader, expected: SeriesRules.Decision) {
        #expect(rules.decide(header) == expected, "\(name)")
    }

    @Test(arguments: [("H30s", "soft"), ("J30s", "soft"), ("STANDARD", "soft"), ("SOFT", "soft"), ("BONE", "sharp"),
                      ("BONEPLUS", "sharp"), ("H60s", "sharp"), ("H70h", "sharp"), ("LUNG", "sharp"), ("XYZ", nil)] as [(String, String?)])
    func kernelClasses(kernel: String, expected: String?) {
        #expect(rules.kernelClass(kernel) == expected, "\(kernel)")
    }

    @Test func theDocumentedFileIsTheBuiltInDefault() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../../docs/series-rules.json").path
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.trimmingCharacters(in: .whitespacesAndNewlines) == SeriesRules.defaultJSON)
    }

    @Test func aRulesFileCanReplaceTheDefault() throws {
        let json = """
            {"name": "thin only", "minimumSlices": 30, "preferredSliceThickness": 1.25, "rules": [
              {"name": "thin axial", "when": {"modality": ["ct"], "sliceThickness": {"max": 1.5}, "any": [
                  {"seriesDescription": "brain|head"}, {"bodyPartExamined": "^HEAD$"}]}, "triage": true},
              {"name": "the rest", "skip": "not-thin"}
            ]}
            """
        let custom = try SeriesRules.parse(Data(json.utf8))
        #expect(custom.minimumSlices == 30 && custom.preferredSliceThickness == 1.25)
        var thin = Self.header(thickness: 0.625)
        thin.seriesDescription = "Brain 0.625"
        #expect(custom.decide(thin) == .triage)
        #expect(custom.decide(Self.header(thickness: 5)) == .skip(reason: "not-thin"))
        thin.seriesDescription = nil
        #expect(custom.decide(thin) == .skip(reason: "not-thin"), "an absent attribute matches no pattern")
        thin.bodyPartExamined = "head"
        #expect(custom.decide(thin) == .triage)
    }

    @Test func noMatchingRuleSkips() throws {
        let custom = try SeriesRules.parse(Data(#"{"rules": [{"when": {"modality": ["MR"]}, "triage": true}]}"#.utf8))
        #expect(custom.decide(Self.header()) == .skip(reason: "no-rule"))
    }

    /// A bad rules file stops the start with a message naming the rule and what is wrong.
    @Test(arguments: [
        ("not json", "not valid JSON"),
        (#"{"rules": []}"#, "'rules' must be a non-empty list"),
        (#"{"rules": [{"skip": "x"}], "colour": 1}"#, "unknown key 'colour'"),
        (#"{"rules": [{"name": "a", "when": {"modalty": ["CT"]}, "skip": "x"}]}"#, "rule 1 ('a'): unknown condition 'modalty'"),
        (#"{"rules": [{"triage": true}, {"name": "b", "skip": "Bad Reason"}]}"#, "rule 2 ('b'): 'skip' must be a reason slug"),
        (#"{"rules": [{"name": "c", "when": {"convolutionKernel": "("}, "skip": "x"}]}"#, "is not a valid regular expression"),
        (#"{"rules": [{"name": "d", "when": {"orientation": ["up"]}, "skip": "x"}]}"#, "'up' is not one of axial"),
        (#"{"rules": [{"name": "e"}]}"#, "rule 1 ('e'): give either"),
        (#"{"rules": [{"skip": "x"}], "minimumSlices": 0}"#, "'minimumSlices' must be an integer of at least 1"),
        (#"{"rules": [{"skip": "x", "when": {"sliceThickness": {"min": "1"}}}]}"#, "must be an object with numbers"),
    ])
    func invalidFilesAreRefusedClearly(json: String, message: String) {
        do {
            _ = try SeriesRules.parse(Data(json.utf8))
            Issue.record("accepted \(json)")
        } catch {
            #expect(error.message.contains(message), "\(error.message)")
        }
    }
}
