import Testing

@testable import Service

@Suite struct ResultsDestinationTests {
    @Test func dicomAndDICOMwebDestinationsParseAndPrintBack() {
        #expect(ResultsDestination("dicom://PACS@10.1.2.3:104") == .dicom(aeTitle: "PACS", host: "10.1.2.3", port: 104))
        #expect(ResultsDestination("https://pacs.example/dicom-web/") == .dicomweb(baseURL: "https://pacs.example/dicom-web"))
        for text in ["dicom://PACS@10.1.2.3:104", "http://127.0.0.1:8042/dicom-web"] {
            #expect(ResultsDestination(text)?.description == text)
        }
        #expect(ResultsDestination("dicom://PACS@h:104")?.kind == "dicom" && ResultsDestination("http://h/x")?.kind == "dicomweb")
    }

    @Test func malformedDestinationsAreRefused() {
        for text in ["ftp://pacs", "dicom://PACS@host", "dicom://@host:104", "dicom://PACS@:104", "dicom://PACS@h:0",
                     "dicom://PACS@h:70000", "dicom://THIS_TITLE_IS_TOO_LONG@h:104", "http://", "https://a b/x", ""] {
            #expect(ResultsDestination(text) == nil, "\(text)")
        }
    }
}
