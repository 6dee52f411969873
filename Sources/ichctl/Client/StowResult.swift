import Foundation

/// What a STOW-RS response (DICOM JSON model, PS3.18 §10.5) says about each instance.
struct StowResult: Equatable {
    /// Stored now (ReferencedSOPSequence without a WarningReason).
    var stored: [String] = []
    /// Already stored before (WarningReason 45070, 0xB00E).
    var duplicates: [String] = []
    /// Not stored: the SOP Instance UID when the server knew it, and FailureReason.
    var failed: [(sop: String?, reason: Int)] = []

    static func == (a: StowResult, b: StowResult) -> Bool {
        a.stored == b.stored && a.duplicates == b.duplicates
            && a.failed.map { "\($0.sop ?? "-"):\($0.reason)" } == b.failed.map { "\($0.sop ?? "-"):\($0.reason)" }
    }

    static let duplicateWarning = 45070

    /// Parses the body; nil when it is not a DICOM JSON object.
    init?(json body: [UInt8]) {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] else { return nil }
        func items(_ tag: String) -> [[String: Any]] {
            (object[tag] as? [String: Any])?["Value"] as? [[String: Any]] ?? []
        }
        func first(_ item: [String: Any], _ tag: String) -> Any? {
            ((item[tag] as? [String: Any])?["Value"] as? [Any])?.first
        }
        for item in items("00081199") {
            let sop = first(item, "00081155") as? String ?? ""
            let warning = (first(item, "00081196") as? NSNumber)?.intValue
            if warning == Self.duplicateWarning { duplicates.append(sop) } else { stored.append(sop) }
        }
        for item in items("00081198") {
            let reason = (first(item, "00081197") as? NSNumber)?.intValue ?? 0
            failed.append((first(item, "00081155") as? String, reason))
        }
    }

    init() {}
}

/// FailureReason codes of STOW-RS and what the service means by them (openapi.yaml, StowFailedSOP).
func failureReasonText(_ reason: Int) -> String {
    switch reason {
    case 43264: "0xA900 not CT or cannot be processed"
    case 43265: "0xA901 study UID differs from the URL's"
    case 49152: "0xC000 not DICOM or cannot be understood"
    case 42752: "0xA700 out of resources"
    default: String(format: "0x%04X", reason)
    }
}
