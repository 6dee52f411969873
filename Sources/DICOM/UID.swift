/// The identifiers accepted as Study, Series and SOP Instance UIDs.
///
/// PS3.5 9.1 allows digits and dots only, but real archives hold more: the
/// RSNA 2019 challenge writes `ID_0a1b2c3d4e`, anonymisers write hex hashes.
/// So an identifier is 1 to 64 ASCII characters of `[0-9A-Za-z._-]`, never `.`
/// or `..` alone: safe in a URL path segment, a file name and a log-free error.
public enum UID {
    public static let maximumLength = 64

    public static func isValid(_ uid: String) -> Bool {
        let bytes = uid.utf8
        guard !bytes.isEmpty, bytes.count <= maximumLength, uid != ".", uid != ".." else { return false }
        return bytes.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                true
            default: false
            }
        }
    }
}
