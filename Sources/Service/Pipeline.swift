import DICOM
import Foundation
import Inference
import Logging
import NeuralNet
import Storage

/// An instance whose header was read at ingest, with the bytes to spool and
/// the series rules' decision (a skip reason, or nil to triage it).
struct IngestItem {
    var header: InstanceHeader
    var bytes: UnsafeRawBufferPointer
    var skipReason: String?
}

/// Upload → spool + job row → batcher → forward pass → results, and the
/// resumption of queued jobs after a restart.
final class Pipeline: @unchecked Sendable {
    // @unchecked: `classify` is written once under `lock` before the batcher
    // starts; everything else is immutable or thread-safe.
    let writer: DatabaseQueue
    let spool: Spool
    let metrics: ServiceMetrics
    let logger: Logger
    let modelID: String
    let rules: SeriesRules
    let labels: [String]
    let thresholds: [Double]
    let batchPolicy: BatchPolicy
    let clock: WallClock
    private(set) var batcher: Batcher<Job>!
    /// Guards `classify`, `stopping` and `unsure`; signalled on stop, so that a retry wait ends at once.
    private let lock = NSCondition()
    private var classify: Classify?
    private var stopping = false
    /// Spool files of uploads refused after an I/O error in their commit (see `ingest`), kept until a batch's
    /// results commit (on the batcher's thread, not an upload's): from then on the failed transaction can no
    /// longer come back from the WAL.
    private var unsure: [String] = []

    init(writer: DatabaseQueue, spool: Spool, metrics: ServiceMetrics, logger: Logger, modelID: String, rules: SeriesRules,
         labels: [String], thresholds: [Double], policy: BatchPolicy, scheduling: SchedulingPolicy, clock: WallClock) {
        self.writer = writer
        self.spool = spool
        self.metrics = metrics
        self.logger = logger
        self.modelID = modelID
        self.rules = rules
        self.labels = labels
        self.thresholds = thresholds
        self.batchPolicy = policy
        self.clock = clock
        batcher = Batcher(policy: policy, scheduling: scheduling, study: { ($0.studyInstanceUID, $0.urgent) }) {
            [unowned self] jobs in process(jobs)
        }
    }

    var depth: Int { batcher.depth }

    /// Queues every job the database still holds and deletes spool files that
    /// have no job (written by a request that crashed before its commit, so
    /// never acknowledged). Runs once, before the server accepts uploads: run
    /// later, it could take a file whose row is about to commit for an orphan,
    /// and queue uploads the batcher already holds a second time.
    func recover() throws {
        let queued = try writer.sync { try JobQueue.queued($0) }
        let orphans = spool.removeOrphans(keeping: Set(queued.map(\.spoolName)))
        if !queued.isEmpty || orphans > 0 {
            logger.info("resuming queued jobs", metadata: ["jobs": "\(queued.count)", "orphan_spool_files": "\(orphans)"])
        }
        batcher.submit(queued)
        metrics.queueDepth.set(Double(batcher.depth))
    }

    /// Slices in, each slice's probabilities out (in the manifest's label order), on the batcher's thread:
    /// `Classifier.classify` in the service, a stand-in in the tests of everything around the forward pass.
    typealias Classify = ([CTSlice]) throws -> [[Float]]

    /// Starts inference once the model is loaded; uploads queued meanwhile wait in the batcher.
    func start(classify: @escaping Classify) {
        lock.withLock { self.classify = classify }
        batcher.start()
    }

    /// Finishes the batch in flight; one whose results cannot be stored stops retrying and stays queued.
    func stop() {
        lock.withLock {
            stopping = true
            lock.broadcast()
        }
        batcher.stop()
    }

    /// Spools each item to triage (fsynced), commits all rows in one
    /// transaction with the summaries of their studies, then queues the new
    /// jobs; skipped items are recorded without a spool file. Returns per item
    /// whether it was new (false: a duplicate SOP Instance UID). Only after
    /// this returns is anything acknowledged.
    func ingest(_ items: [IngestItem]) throws -> [Bool] {
        guard !items.isEmpty else { return [] }
        let now = clock.now()
        var records: [NewInstance] = []
        var written: [String] = []
        do {
            for item in items {
                var name: String?
                if item.skipReason == nil {
                    name = Spool.newName()
                    try spool.write(item.bytes, name: name!)
                    written.append(name!)
                }
                records.append(record(item, spoolName: name, receivedAt: now))
            }
            if !written.isEmpty { try spool.syncDirectory() }
            let (inserted, urgent) = try writer.write { db in
                let inserted = try JobQueue.enqueue(db, records)
                let studies = Set(zip(records, inserted).filter(\.1).map(\.0.studyInstanceUID))
                try summarize(db, studies: studies)
                // Urgency is the study's (its headers or an operator's override), not the instance's.
                return (inserted, try studies.filter { try ResultStore.study(db, $0)?.urgent ?? false })
            }
            var jobs: [Job] = []
            var skipped: [String: Int] = [:]
            for (record, isNew) in zip(records, inserted) {
                if let spoolName = record.spoolName {
                    if isNew {
                        jobs += record.frames.map {
                            Job(sopInstanceUID: record.sopInstanceUID, frameNumber: $0.number, studyInstanceUID: record.studyInstanceUID,
                                spoolName: spoolName, receivedAt: now, urgent: urgent.contains(record.studyInstanceUID))
                        }
                    } else {
                        spool.remove(spoolName)
                    }
                } else if isNew, let reason = record.skipReason {
                    skipped[reason, default: 0] += record.frames.count
                }
            }
            for (reason, count) in skipped { metrics.skipped(reason, count: count) }
            batcher.submit(jobs)
            metrics.queueDepth.set(Double(batcher.depth))
            return inserted
        } catch {
            // After an I/O error in the commit the job rows may come back when the database is next opened
            // (the transaction reached the WAL): their files stay until a batch commits, or until the next
            // start's recovery, which keeps the files that have a row and removes the rest.
            if (error as? StorageError)?.isIOError ?? false {
                lock.withLock { unsure += written }
            } else {
                for name in written { spool.remove(name) }
            }
            throw error
        }
    }

    /// An operator's override of a study's priority, for its queued jobs and later ones; false if there is no such study.
    func prioritize(study: String, urgent: Bool, audit: (Storage.Connection) throws -> Void) throws -> Bool {
        let found = try writer.write { db in
            let found = try JobQueue.prioritize(db, study: study, urgent: urgent)
            if found { try audit(db) }
            return found
        }
        if found { batcher.setUrgent(urgent, study: study) }
        return found
    }

    private func record(_ item: IngestItem, spoolName: String?, receivedAt: Double) -> NewInstance {
        let h = item.header
        let study = h.study
        // Every frame of an image is a slice; an object that is no image the decoder reads is one row, whatever
        // NumberOfFrames says (a colour cine, say, is one skipped object, not hundreds of skipped slices).
        let planes = h.hasPixelData && h.unsupportedImage == nil ? h.frames : [h.frames[0]]
        let original: Bool? = switch h.imageType.first {
        case "ORIGINAL": true
        case "DERIVED": false
        default: nil
        }
        return NewInstance(
            sopInstanceUID: h.sopInstanceUID, studyInstanceUID: h.studyInstanceUID, seriesInstanceUID: h.seriesInstanceUID,
            sopClassUID: h.sopClassUID ?? "", instanceNumber: h.instanceNumber,
            frames: planes.enumerated().map { NewFrame(number: $0.offset + 1, position: $0.element.position, normal: $0.element.sliceNormal) },
            spoolName: spoolName,
            skipReason: item.skipReason, receivedAt: receivedAt, urgent: h.urgent,
            series: SeriesDetails(seriesNumber: h.seriesNumber, modality: h.modality, original: original,
                                  kernelClass: rules.kernelClass(h.convolutionKernel), sliceThickness: h.sliceThickness),
            study: StudyDetails(accessionNumber: study.accessionNumber, patientID: study.patientID, patientName: study.patientName,
                                studyDate: study.studyDate, studyTime: study.studyTime, studyDescription: study.studyDescription,
                                institutionName: study.institutionName, patientBirthDate: study.patientBirthDate,
                                patientSex: study.patientSex, referringPhysicianName: study.referringPhysicianName,
                                studyID: study.studyID, specificCharacterSet: study.specificCharacterSet))
    }

    /// Stores each study's StudyView summary (primary series, its maxima, assessability) in the caller's transaction.
    private func summarize(_ db: Storage.Connection, studies: Set<String>) throws {
        for study in studies.sorted() {
            let view = try StudyView.load(db, study: study, rules: rules, labels: labels, thresholds: thresholds)
            try JobQueue.summarize(db, study: study, view.summary)
        }
    }

    /// One batch on the batcher's thread: decode the spooled files (each once, however many of its frames
    /// the batch holds), one forward pass, results and job completion in one transaction, then drop the
    /// files no queued frame still needs.
    private func process(_ jobs: [Job]) {
        guard let classify = lock.withLock({ classify }) else { return }
        let start = ContinuousClock.now
        var outcomes: [CompletedJob] = []
        var slices: [CTSlice] = []
        var sliceJobs: [Job] = []
        var unreadable: [Job] = []
        var readError: (any Error)?
        var files: [String: [Job]] = [:]
        var order: [String] = []
        for job in jobs {
            if files[job.spoolName] == nil { order.append(job.spoolName) }
            files[job.spoolName, default: []].append(job)
        }
        for name in order {
            let frames = files[name]!
            do {
                let data = try spool.read(name)
                let decoded = data.withUnsafeBytes { DICOMDecoder.decode($0, frames: frames.map(\.frameNumber)) }
                for (job, result) in zip(frames, decoded) {
                    switch result {
                    case .success(let slice):
                        slices.append(slice)
                        sliceJobs.append(job)
                    case .failure(let error):
                        outcomes.append(CompletedJob(job, .failed(type: error.type, detail: error.detail)))
                    }
                }
            } catch ServiceError.spool(_, let code) where code == ENOENT {
                // The study was deleted while its jobs waited; their rows are gone, so this is not recorded.
                outcomes += frames.map {
                    CompletedJob($0, .failed(type: "spool-missing", detail: "The uploaded file is no longer in the spool."))
                }
            } catch {
                // The file is there but cannot be read now (EIO, say): the jobs stay queued and are tried again.
                unreadable += frames
                readError = error
            }
        }
        if let readError {
            logger.error("reading spooled uploads failed; their jobs stay queued and are retried in a second",
                         metadata: ["jobs": "\(unreadable.count)", "error": "\(loggable(readError))"])
            metrics.error("spool")
            DispatchQueue.global().asyncAfter(deadline: .now() + 1) { [self, unreadable] in batcher.submit(unreadable) }
        }
        do {
            let probabilities = try classify(slices)
            outcomes += zip(sliceJobs, probabilities).map { CompletedJob($0, .done(probabilities: $1)) }
        } catch {
            let type = (error as? NeuralNetError)?.type ?? "inference-error"
            logger.error("forward pass failed", metadata: ["type": "\(type)", "slices": "\(slices.count)"])
            outcomes += sliceJobs.map { CompletedJob($0, .failed(type: "inference-error", detail: "The forward pass failed (\(type)).")) }
        }
        metrics.batchSize.record(Double(slices.count))
        metrics.inferenceDuration.record(ContinuousClock.now - start)
        guard let (recorded, released) = store(outcomes, studies: Set(jobs.map(\.studyInstanceUID))) else { return }
        for name in released { spool.remove(name) }
        var done = 0
        var failed = 0
        for (result, wasRecorded) in zip(outcomes, recorded) where wasRecorded {
            if case .done = result.outcome { done += 1 } else { failed += 1 }
        }
        metrics.processed("done", count: done)
        metrics.processed("failed", count: failed)
        metrics.queueDepth.set(Double(batcher.depth))
    }

    /// After a successful commit: the files kept after failed ones that have no job row are removed. One with
    /// a row (its commit was durable after all) stays for the next start's recovery to queue.
    private func removeUnsureFiles() {
        let names = lock.withLock { () -> [String] in
            defer { unsure = [] }
            return unsure
        }
        guard !names.isEmpty else { return }
        guard let queued = try? writer.sync({ try Set(JobQueue.queued($0).map(\.spoolName)) }) else {
            lock.withLock { unsure += names }
            return
        }
        for name in names where !queued.contains(name) { spool.remove(name) }
        let kept = names.filter(queued.contains).count
        if kept > 0 {
            logger.warning("uploads refused after a failed commit were stored after all; they run at the next start",
                           metadata: ["files": "\(kept)"])
        }
    }

    /// Commits a batch's outcomes, retrying as `CommitRetry` says (giving up would
    /// leave the jobs queued until a restart) until shutdown, after which the jobs stay
    /// queued with their spool files and run again on the next start (nil).
    /// Returns per outcome whether it was recorded (not for a deleted study's job), and the spool files
    /// no queued job needs any more.
    private func store(_ outcomes: [CompletedJob], studies: Set<String>) -> ([Bool], [String])? {
        var retry = CommitRetry()
        while true {
            do {
                let time = clock.now()
                let (recorded, released) = try writer.write { db in
                    let recorded = try JobQueue.complete(db, outcomes, model: modelID, at: time)
                    try summarize(db, studies: studies)
                    return (recorded, try JobQueue.releasable(db, spoolFiles: outcomes.map(\.spoolName)))
                }
                removeUnsureFiles()
                if retry.failures > 0 { logger.notice("results stored after retrying", metadata: ["attempts": "\(retry.failures + 1)"]) }
                return (recorded, released)
            } catch {
                metrics.error("database")
                let (delay, log) = retry.failed()
                if log {
                    logger.error("storing results failed; retrying", metadata: ["attempt": "\(retry.failures)", "error": "\(loggable(error))"])
                }
                let deadline = Date().addingTimeInterval(delay)
                let stopped = lock.withLock {
                    while !stopping && lock.wait(until: deadline) {}
                    return stopping
                }
                if stopped {
                    logger.warning("results not stored before shutdown; the jobs stay queued for the next start",
                                   metadata: ["jobs": "\(outcomes.count)"])
                    return nil
                }
            }
        }
    }
}
