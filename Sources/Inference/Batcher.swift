import Foundation

/// A queue of work items drained by one thread in batches: `BatchPolicy` says
/// when to run one and how large, `SchedulingPolicy` whose items go in it. The
/// batcher holds no durable state: items are identifiers of jobs that are
/// already committed, so dropping the queue loses nothing.
public final class Batcher<Item: Sendable>: @unchecked Sendable {
    // @unchecked: all mutable state is guarded by `condition`.
    private let policy: BatchPolicy
    private let study: (Item) -> (study: String, urgent: Bool)
    private let process: ([Item]) -> Void
    private let condition = NSCondition()
    private var queue: StudyQueue<Item>
    private var stopping = false
    private var running = false
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)

    /// `study` names an item's study and whether it is urgent (for `.study` scheduling);
    /// `process` runs on the batcher's thread, one batch at a time.
    public init(policy: BatchPolicy, scheduling: SchedulingPolicy = SchedulingPolicy(order: .arrival),
                study: @escaping (Item) -> (study: String, urgent: Bool) = { _ in ("", false) },
                process: @escaping ([Item]) -> Void) {
        self.policy = policy
        self.queue = StudyQueue(policy: scheduling)
        self.study = study
        self.process = process
    }

    public static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    /// Items waiting, not counting a batch being processed.
    public var depth: Int {
        condition.lock()
        defer { condition.unlock() }
        return queue.count
    }

    public func submit(_ items: [Item]) {
        guard !items.isEmpty else { return }
        let arrival = Self.now()
        condition.lock()
        for item in items {
            let (key, urgent) = study(item)
            queue.append(item, study: key, urgent: urgent, arrival: arrival)
        }
        condition.signal()
        condition.unlock()
    }

    public func setUrgent(_ urgent: Bool, study: String) {
        condition.lock()
        queue.setUrgent(urgent, study: study)
        condition.unlock()
    }

    public func start() {
        let thread = Thread { [self] in loop() }
        thread.name = "ich-batcher"
        thread.qualityOfService = .userInitiated
        self.thread = thread
        running = true
        thread.start()
    }

    /// Returns once the batch in progress (if any) is done; queued items stay
    /// queued (they are resumed from the database on the next start).
    public func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
        if running { finished.wait() }
        running = false
    }

    private func loop() {
        while let batch = next() {
            process(batch)
        }
        finished.signal()
    }

    /// Blocks until the policy says run, or the batcher stops (nil).
    private func next() -> [Item]? {
        condition.lock()
        defer { condition.unlock() }
        while !stopping {
            let now = Self.now()
            switch policy.decide(queued: queue.count, oldestArrival: queue.oldestArrival, now: now) {
            case .idle:
                condition.wait()
            case .wait(let until):
                _ = condition.wait(until: Date(timeIntervalSinceNow: max(0, until - Self.now())))
            case .run(let count):
                return queue.take(count, now: now)
            }
        }
        return nil
    }
}
