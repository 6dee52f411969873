/// Where every buffer of a graph lives in one arena, for a given batch size.
/// Buffers whose lifetimes do not overlap share memory (first fit over a
/// sorted free list); planned once, so running the graph never allocates.
public struct MemoryPlan: Sendable {
    public let batch: Int
    /// Float offset of each buffer in the arena.
    public let offsets: [Int]
    public let arenaCount: Int

    public init(graph: Graph, batch: Int) {
        let count = graph.buffers.count
        var first = [Int](repeating: Int.max, count: count)
        var last = [Int](repeating: -1, count: count)
        first[graph.input.buffer] = -1
        for (i, op) in graph.operations.enumerated() {
            for view in op.reads + [op.writes] {
                first[view.buffer] = min(first[view.buffer], i)
                last[view.buffer] = max(last[view.buffer], i)
            }
        }
        last[graph.output.buffer] = graph.operations.count

        var offsets = [Int](repeating: 0, count: count)
        var free: [(offset: Int, size: Int)] = []  // sorted by offset, coalesced
        var top = 0
        func allocate(_ size: Int) -> Int {
            if let i = free.firstIndex(where: { $0.size >= size }) {
                let block = free[i]
                if block.size == size { free.remove(at: i) } else { free[i] = (block.offset + size, block.size - size) }
                return block.offset
            }
            if let lastBlock = free.last, lastBlock.offset + lastBlock.size == top {  // grow the tail block
                free.removeLast()
                top = lastBlock.offset + size
                return lastBlock.offset
            }
            defer { top += size }
            return top
        }
        func release(_ offset: Int, _ size: Int) {
            let i = free.firstIndex(where: { $0.offset > offset }) ?? free.count
            free.insert((offset, size), at: i)
            if i + 1 < free.count, free[i].offset + free[i].size == free[i + 1].offset {
                free[i].size += free[i + 1].size
                free.remove(at: i + 1)
            }
            if i > 0, free[i - 1].offset + free[i - 1].size == free[i].offset {
                free[i - 1].size += free[i].size
                free.remove(at: i)
            }
        }
        let size = { (b: Int) in graph.buffers[b].elementsPerImage * batch }
        let byStart = (0..<count).sorted { first[$0] < first[$1] }
        var next = 0
        for step in -1...graph.operations.count {
            // Allocate what starts here before freeing what ends here: an op's output never aliases its input.
            while next < byStart.count, first[byStart[next]] == step {
                offsets[byStart[next]] = allocate(size(byStart[next]))
                next += 1
            }
            for b in 0..<count where last[b] == step && first[b] != Int.max { release(offsets[b], size(b)) }
        }
        self.batch = batch
        self.offsets = offsets
        self.arenaCount = top
    }
}
