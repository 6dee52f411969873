import DICOM
import Testing

@testable import Service

@Suite struct StoreAnswerTests {
    @Test func aFullQueueOrAShutdownIsOutOfResourcesBeforeAnythingIsRead() {
        #expect(StoreAnswer.admit(queueDepth: 9, hardLimit: 10, shuttingDown: false) == nil)
        #expect(StoreAnswer.admit(queueDepth: 10, hardLimit: 10, shuttingDown: false) == 0xA700)
        #expect(StoreAnswer.admit(queueDepth: 0, hardLimit: 0, shuttingDown: false) == 0xA700)
        #expect(StoreAnswer.admit(queueDepth: 0, hardLimit: 10, shuttingDown: true) == 0xA700)
    }

    @Test func unreadableObjectsAnswerAsStowRSClassifiesThem() {
        // The decoder's errors through the same classification STOW-RS uses.
        let notDICOM = IngestRoutes.reason(.notDICOM)
        let truncated = IngestRoutes.reason(.truncated)
        #expect(StoreAnswer.unreadable(notDICOM) == 0xC000)
        #expect(StoreAnswer.unreadable(truncated) == 0xC000)
        #expect(StoreAnswer.unreadable(.processingFailure) == 0x0110)
        #expect(StoreAnswer.notStored == 0xA700)
    }
}
