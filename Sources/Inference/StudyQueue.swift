/// Which study's slices go into the next batch.
///
/// `.arrival` is first in, first out by slice: a 400-slice thin series that
/// arrives first holds every study behind it for the whole of its forward passes.
/// `.study` serves studies: urgent ones first (the DICOM priority hint), then the
/// study with the fewest slices waiting, less an ageing credit of `agingRate`
/// slices per second its oldest slice has waited. A study of n waiting slices
/// therefore competes like a fresh study of one slice after (n - 1) / agingRate
/// seconds at most, so nothing waits for ever behind a stream of short studies.
public struct SchedulingPolicy: Sendable, Equatable {
    public enum Order: String, Sendable, CaseIterable {
        case arrival
        case study
    }

    public var order: Order
    public var agingRate: Double

    public init(order: Order = .study, agingRate: Double = 2) {
        precondition(agingRate > 0, "agingRate > 0")
        self.order = order
        self.agingRate = agingRate
    }
}

/// The batcher's queue under a `SchedulingPolicy`. Pure, with time passed in,
/// so the order is tested without clocks or threads.
public struct StudyQueue<Item> {
    private struct Entry {
        var item: Item
        var arrival: Double
    }

    private struct Study {
        var entries: [Entry] = []
        var head = 0
        var urgent = false
        var waiting: Int { entries.count - head }
        var oldestArrival: Double { entries[head].arrival }
    }

    public let policy: SchedulingPolicy
    /// `.arrival`: one queue in the order submitted. `.study`: a queue per study.
    private var fifo = Study()
    private var studies: [String: Study] = [:]
    public private(set) var count = 0

    public init(policy: SchedulingPolicy) {
        self.policy = policy
    }

    public var isEmpty: Bool { count == 0 }

    /// When the longest-waiting item arrived: what `BatchPolicy` waits on.
    public var oldestArrival: Double? {
        switch policy.order {
        case .arrival: fifo.waiting > 0 ? fifo.oldestArrival : nil
        case .study: studies.values.lazy.map(\.oldestArrival).min()
        }
    }

    public mutating func append(_ item: Item, study: String, urgent: Bool, arrival: Double) {
        count += 1
        let entry = Entry(item: item, arrival: arrival)
        switch policy.order {
        case .arrival:
            fifo.entries.append(entry)
        case .study:
            studies[study, default: Study()].entries.append(entry)
            if urgent { studies[study]!.urgent = true }
        }
    }

    /// Makes the study's waiting items urgent or not (an operator's override); later items of the
    /// study bring their own flag. No effect under `.arrival`, which has no studies.
    public mutating func setUrgent(_ urgent: Bool, study: String) {
        studies[study]?.urgent = urgent
    }

    /// Removes and returns up to `limit` items: under `.study`, all from the best
    /// study, then from the next best while the batch has room.
    public mutating func take(_ limit: Int, now: Double) -> [Item] {
        var batch: [Item] = []
        batch.reserveCapacity(min(limit, count))
        switch policy.order {
        case .arrival:
            Self.take(from: &fifo, into: &batch, limit: limit)
        case .study:
            while batch.count < limit, let key = best(now: now) {
                Self.take(from: &studies[key]!, into: &batch, limit: limit)
                if studies[key]!.waiting == 0 { studies[key] = nil }
            }
        }
        count -= batch.count
        return batch
    }

    private static func take(from study: inout Study, into batch: inout [Item], limit: Int) {
        let n = min(limit - batch.count, study.waiting)
        batch += study.entries[study.head..<study.head + n].lazy.map(\.item)
        study.head += n
        if study.head == study.entries.count {
            study.entries.removeAll(keepingCapacity: true)
            study.head = 0
        } else if study.head > 1024, study.head * 2 > study.entries.count {
            study.entries.removeFirst(study.head)
            study.head = 0
        }
    }

    /// Urgent first; then the smallest waiting count less the ageing credit; then the oldest.
    private func best(now: Double) -> String? {
        var best: (key: String, urgent: Bool, score: Double, oldest: Double)?
        for (key, study) in studies {
            let oldest = study.oldestArrival
            let score = Double(study.waiting) - policy.agingRate * max(0, now - oldest)
            if let b = best {
                let better = study.urgent != b.urgent ? study.urgent
                    : score != b.score ? score < b.score
                    : oldest != b.oldest ? oldest < b.oldest : key < b.key
                guard better else { continue }
            }
            best = (key, study.urgent, score, oldest)
        }
        return best?.key
    }
}
