import Testing

@testable import Service

@Suite struct AssociationPolicyTests {
    private let loopbackOnly = AssociationPolicy(aeTitle: "ICHTRIAGE", peers: [], maxAssociations: 2)
    private let listed = AssociationPolicy(
        aeTitle: "ICHTRIAGE", peers: [(aeTitle: "PACS", addresses: ["10.0.0.5"]), (aeTitle: "CT1", addresses: ["10.0.0.9", "fd00::9"])],
        maxAssociations: 2)

    @Test func withoutPeersOnlyLoopbackCallersAreAcceptedWhateverTheirTitle() {
        #expect(loopbackOnly.decide(calling: "ANY", called: "ICHTRIAGE", host: "127.0.0.1", open: 0) == .accept)
        #expect(loopbackOnly.decide(calling: "ANY", called: "ICHTRIAGE", host: "::1", open: 0) == .accept)
        #expect(loopbackOnly.decide(calling: "ANY", called: "ICHTRIAGE", host: "::ffff:127.0.0.1", open: 0) == .accept)
        #expect(loopbackOnly.decide(calling: "ANY", called: "ICHTRIAGE", host: "10.0.0.5", open: 0) == .rejectCallingAETitle)
    }

    @Test func theCalledTitleMustBeOursIgnoringPaddingSpaces() {
        #expect(loopbackOnly.decide(calling: "A", called: "ICHTRIAGE ", host: "127.0.0.1", open: 0) == .accept)
        #expect(loopbackOnly.decide(calling: "A", called: "ichtriage", host: "127.0.0.1", open: 0) == .rejectCalledAETitle)
        #expect(loopbackOnly.decide(calling: "A", called: "OTHER", host: "127.0.0.1", open: 0) == .rejectCalledAETitle)
    }

    @Test func listedPeersNeedTheirTitleFromTheirHost() {
        #expect(listed.decide(calling: "PACS", called: "ICHTRIAGE", host: "10.0.0.5", open: 0) == .accept)
        #expect(listed.decide(calling: "PACS", called: "ICHTRIAGE", host: "::ffff:10.0.0.5", open: 0) == .accept)
        #expect(listed.decide(calling: "CT1", called: "ICHTRIAGE", host: "fd00::9", open: 0) == .accept)
        #expect(listed.decide(calling: "PACS", called: "ICHTRIAGE", host: "10.0.0.9", open: 0) == .rejectCallingAETitle)
        #expect(listed.decide(calling: "CT2", called: "ICHTRIAGE", host: "10.0.0.9", open: 0) == .rejectCallingAETitle)
        // With a list, loopback is not implied.
        #expect(listed.decide(calling: "PACS", called: "ICHTRIAGE", host: "127.0.0.1", open: 0) == .rejectCallingAETitle)
    }

    @Test func pastTheCapAnAllowedCallerIsToldBusy() {
        #expect(listed.decide(calling: "PACS", called: "ICHTRIAGE", host: "10.0.0.5", open: 1) == .accept)
        #expect(listed.decide(calling: "PACS", called: "ICHTRIAGE", host: "10.0.0.5", open: 2) == .rejectBusy)
        // Who is refused learns that first, not that the node is busy.
        #expect(listed.decide(calling: "X", called: "ICHTRIAGE", host: "10.0.0.5", open: 2) == .rejectCallingAETitle)
    }

    @Test func peersParseAsAETitleAtHost() {
        #expect(DICOMPeer(parsing: "PACS@10.0.0.5") == DICOMPeer(aeTitle: "PACS", host: "10.0.0.5"))
        #expect(DICOMPeer(parsing: "MY AE@pacs.example.org") == DICOMPeer(aeTitle: "MY AE", host: "pacs.example.org"))
        // An AE title may hold '@' (PS3.5 AE): the host follows the last one.
        #expect(DICOMPeer(parsing: "A@B@fd00::1") == DICOMPeer(aeTitle: "A@B", host: "fd00::1"))
        for bad in ["PACS", "@10.0.0.5", "PACS@", "SEVENTEEN_LETTERS@h", "BACK\\SLASH@h", "    @h"] {
            #expect(DICOMPeer(parsing: bad) == nil, "\(bad)")
        }
    }

    @Test func configurationProblemsAreNamed() {
        var configuration = DICOMNodeConfiguration(port: 11112)
        #expect(configuration.problem() == nil)
        configuration.aeTitle = ""
        #expect(configuration.problem()?.contains("ae-title") == true)
        configuration = DICOMNodeConfiguration(port: 0)
        #expect(configuration.problem()?.contains("dicom-port") == true)
        configuration = DICOMNodeConfiguration(port: 104)
        configuration.maxPDU = 1_000
        #expect(configuration.problem()?.contains("dicom-max-pdu") == true)
    }
}
