import Foundation

/// A FIFO of work items drained by one thread in batches chosen by
/// `BatchPolicy`. The batcher holds no durable state: items are identifiers of
/// jobs that are already committed, so dropping the queue loses nothing.
public final class Batcher<Item: Sendable>: @unchecked Sendable {
    // @unchecked: all mutable state is guarded by `condition`.
    private let policy: BatchPolicy
    private let process: ([Item]) -> Void
    private let condition = NSCondition()
    private var queue: [(item: Item, arrival: Double)] = []
    private var head = 0
    private var stopping = false
    private var running = false
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)

    /// `process` runs on the batcher's thread, one batch at a time.
    public init(policy: BatchPolicy, process: @escaping ([Item]) -> Void) {
        self.policy = policy
        self.process = process
    }

    public static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    /// Items waiting, not counting a batch being processed.
    public var depth: Int {
        condition.lock()
        defer { condition.unlock() }
        return queue.count - head
    }

    public func submit(_ items: [Item]) {
        guard !items.isEmpty else { return }
        let arrival = Self.now()
        condition.lock()
        queue.append(contentsOf: items.map { ($0, arrival) })
        condition.signal()
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
            let waiting = queue.count - head
            switch policy.decide(queued: waiting, oldestArrival: waiting > 0 ? queue[head].arrival : nil, now: Self.now()) {
            case .idle:
                condition.wait()
            case .wait(let until):
                _ = condition.wait(until: Date(timeIntervalSinceNow: max(0, until - Self.now())))
            case .run(let count):
                let batch = queue[head..<head + count].map(\.item)
                head += count
                if head > 1024, head * 2 > queue.count {
                    queue.removeFirst(head)
                    head = 0
                }
                return batch
            }
        }
        return nil
    }
}
