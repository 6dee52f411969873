import Dispatch

/// Splits `0..<count` into at most `threads` contiguous ranges and runs them
/// concurrently (on the calling thread alone when one range suffices).
/// The ranges are disjoint and the call returns only when all are done, so
/// `body` may write through the raw pointers it captures without races.
@inline(__always)
func parallelFor(_ count: Int, threads: Int, minimumPerThread: Int = 1, _ body: (Range<Int>) -> Void) {
    let chunks = max(1, min(threads, count / max(minimumPerThread, 1)))
    if chunks == 1 {
        body(0..<count)
        return
    }
    withoutActuallyEscaping(body) { body in
        nonisolated(unsafe) let body = body
        DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
            body(count * chunk / chunks..<count * (chunk + 1) / chunks)
        }
    }
}
