/// DICOM UID syntax (PS3.5 9.1): at most 64 characters, digits in
/// dot-separated components, none empty. Leading zeros inside a component are
/// forbidden by the standard but common in real archives, so they are accepted.
public enum UID {
    public static let maximumLength = 64

    public static func isValid(_ uid: String) -> Bool {
        let bytes = Array(uid.utf8)
        guard !bytes.isEmpty, bytes.count <= maximumLength else { return false }
        var componentLength = 0
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                componentLength += 1
            case UInt8(ascii: "."):
                guard componentLength > 0 else { return false }
                componentLength = 0
            default:
                return false
            }
        }
        return componentLength > 0
    }
}
