import DICOM
import Testing

@Test(arguments: [
    ("1.2.840.10008.1.2.1", true),
    ("1", true),
    ("1.2.03.4", true),  // leading zero: forbidden by PS3.5, accepted because real archives carry it
    (String(repeating: "1.", count: 31) + "12", true),  // 64 characters
    (String(repeating: "1.", count: 32) + "1", false),  // 65 characters
    ("", false),
    ("1..2", false),
    (".1.2", false),
    ("1.2.", false),
    ("1.2.3a", false),
    ("1.2 .3", false),
    ("05fa52f0e599f17b8186ff18fcdf2b55", false),  // a hashed "UID" as anonymisers write them
])
func uidSyntax(uid: String, valid: Bool) {
    #expect(UID.isValid(uid) == valid, "\(uid)")
}
