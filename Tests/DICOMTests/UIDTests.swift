import DICOM
import Testing

@Test(arguments: [
    ("1.2.840.10008.1.2.1", true),
    ("1", true),
    ("1.2.03.4", true),  // leading zero: forbidden by PS3.5, accepted because real archives carry it
    (String(repeating: "1.", count: 31) + "12", true),  // 64 characters
    (String(repeating: "1.", count: 32) + "1", false),  // 65 characters
    ("ID_0a1b2c3d4e", true),  // the RSNA 2019 challenge's identifiers
    ("05fa52f0e599f17b8186ff18fcdf2b55", true),  // a hashed "UID" as anonymisers write them
    ("1..2", true),  // empty components: not PS3.5, but harmless
    ("a-b_c.D", true),
    ("", false),
    (".", false),
    ("..", false),
    ("1.2/3", false),
    ("../1", false),
    ("1.2 .3", false),
    ("1.2\u{0}3", false),
    ("1.2.é", false),
    ("1.2%2F3", false),
    ("1.2:3", false),
])
func uidSyntax(uid: String, valid: Bool) {
    #expect(UID.isValid(uid) == valid, "\(uid)")
}
