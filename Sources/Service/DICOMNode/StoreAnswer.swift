import DICOM

/// What a C-STORE is answered, decided as STOW-RS decides its failure reasons (PS3.4 B.2.3).
enum StoreAnswer {
    /// Before reading the object: a full queue or a shutdown in progress is Out of Resources, which
    /// senders retry later, as STOW-RS's 503; nil: go on.
    static func admit(queueDepth: Int, hardLimit: Int, shuttingDown: Bool) -> UInt16? {
        queueDepth >= hardLimit || shuttingDown ? DIMSEStatus.outOfResources : nil
    }

    /// An object whose header cannot be read: not DICOM at all is Cannot Understand, DICOM we
    /// cannot process a Processing Failure.
    static func unreadable(_ reason: IngestRoutes.FailureReason) -> UInt16 {
        reason == .cannotUnderstand ? DIMSEStatus.cannotUnderstand : DIMSEStatus.processingFailure
    }

    /// The spool or the database failed (a full disk, EIO): nothing was stored; the sender retries.
    static let notStored = DIMSEStatus.outOfResources
}
