import Foundation
import Testing

@testable import Inference

@Suite struct BatcherTests {
    /// Every submitted item is processed exactly once, in order, in batches no larger than maxBatch.
    @Test(arguments: [1, 3, 8])
    func processesEverythingInOrder(maxBatch: Int) {
        let lock = NSLock()
        var batches: [[Int]] = []
        let done = DispatchSemaphore(value: 0)
        let total = 50
        let batcher = Batcher<Int>(policy: BatchPolicy(maxBatch: maxBatch, maxDelay: 0.002)) { batch in
            lock.withLock { batches.append(batch) }
            if batch.last == total - 1 { done.signal() }
        }
        batcher.start()
        for start in stride(from: 0, to: total, by: 7) { batcher.submit(Array(start..<min(total, start + 7))) }
        #expect(done.wait(timeout: .now() + 30) == .success)
        batcher.stop()
        #expect(batches.flatMap { $0 } == Array(0..<total))
        #expect(batches.allSatisfy { (1...maxBatch).contains($0.count) })
    }

    @Test func stopWaitsForTheBatchInProgressAndKeepsTheRest() {
        let started = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let lock = NSLock()
        var finished: [Int] = []
        let batcher = Batcher<Int>(policy: BatchPolicy(maxBatch: 2, maxDelay: 0)) { batch in
            started.signal()
            release.wait()
            lock.withLock { finished += batch }
        }
        batcher.start()
        batcher.submit([1, 2])
        #expect(started.wait(timeout: .now() + 30) == .success)
        batcher.submit([3, 4, 5])
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.05) { release.signal() }
        batcher.stop()
        #expect(lock.withLock { finished } == [1, 2], "stop returns after the running batch, not before")
        #expect(batcher.depth == 3, "queued items are left for the next start (they are durable in the database)")
    }
}
