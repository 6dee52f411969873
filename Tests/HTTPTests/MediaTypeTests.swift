import Testing

@testable import HTTP

private let mediaTypeCases: [(String, MediaType?)] = [
    ("application/dicom", MediaType(type: "application/dicom")),
    ("Multipart/Related; Type=\"application/dicom\"; boundary=abc",
     MediaType(type: "multipart/related", parameters: ["type": "application/dicom", "boundary": "abc"])),
    ("multipart/related;boundary=\"a b\\\"c\\\\d\"", MediaType(type: "multipart/related", parameters: ["boundary": "a b\"c\\d"])),
    ("  text/plain ; charset=UTF-8 ;", MediaType(type: "text/plain", parameters: ["charset": "UTF-8"])),
    ("multipart/related; boundary=\"\"", MediaType(type: "multipart/related", parameters: ["boundary": ""])),
    ("", nil),
    ("text", nil),
    ("text/", nil),
    ("/plain", nil),
    ("text/plain; charset", nil),
    ("text/plain; charset=", nil),
    ("text/plain; charset=\"open", nil),
    ("text/plain; a=1; A=2", nil),
    ("text/plain junk", nil),
    ("text/plain; a=b c", nil),
]

@Test(arguments: mediaTypeCases)
func mediaTypeParsing(input: String, expected: MediaType?) {
    #expect(MediaType(parsing: input) == expected, "\(input.debugDescription)")
}
