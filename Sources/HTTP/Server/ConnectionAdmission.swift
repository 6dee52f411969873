/// Who gets a connection slot: the open connections counted in all and per
/// client, and the decision for a new one. Pure state, so the server calls it
/// under its lock and the tests with made-up instants.
///
/// The order of the checks is the defence against a slow-client flood: a
/// client past its own cap is refused before it can take a global slot, and a
/// full server makes room by closing the connection that has waited longest
/// for a request head (an idle keep-alive or a head trickling in), not by
/// refusing the newcomer, so whoever holds sockets open without sending
/// requests loses them first.
struct ConnectionAdmission<ID: Hashable> {
    typealias Instant = ContinuousClock.Instant

    enum Refusal: Equatable, Sendable {
        case serverFull
        case clientFull
    }

    enum Decision: Equatable {
        case admit
        /// Admit, and close that connection to make room.
        case admitEvicting(ID)
        /// Counted as open until it closes, answered with the refusal.
        case refuse(Refusal)
        /// Past twice a cap: closed at once without an answer, never counted.
        case drop(Refusal)
    }

    let maxConnections: Int
    /// 0: no per-client cap.
    let maxPerClient: Int
    private(set) var total = 0
    private var perClient: [String: Int] = [:]
    private var clientOf: [ID: String] = [:]
    private var evicting: Set<ID> = []

    init(maxConnections: Int, maxPerClient: Int) {
        self.maxConnections = maxConnections
        self.maxPerClient = maxPerClient
    }

    func count(of client: String) -> Int { perClient[client] ?? 0 }

    /// A connection just accepted. `client` is nil while its address is not yet
    /// known (behind a PROXY-protocol load balancer, until the header arrives).
    /// `candidates` lists the open connections waiting for a request head and
    /// since when; it is asked for only when the server is full.
    mutating func connect(_ id: ID, client: String?, candidates: () -> [(ID, Instant)]) -> Decision {
        // Connections being evicted are closing already: a burst of newcomers must not be dropped for them.
        let staying = total - evicting.count
        if staying >= 2 * maxConnections { return .drop(.serverFull) }
        if let client, maxPerClient > 0, count(of: client) >= 2 * maxPerClient { return .drop(.clientFull) }
        let full = staying >= maxConnections
        total += 1
        if let client { record(id, client) }
        if let client, maxPerClient > 0, count(of: client) > maxPerClient { return .refuse(.clientFull) }
        guard full else { return .admit }
        let victim = candidates().filter { $0.0 != id && !evicting.contains($0.0) }.min { $0.1 < $1.1 }
        guard let victim else { return .refuse(.serverFull) }
        evicting.insert(victim.0)
        return .admitEvicting(victim.0)
    }

    /// The client behind a connection admitted with `client: nil` is now known.
    mutating func identify(_ id: ID, client: String) -> Decision {
        guard clientOf[id] == nil else { return .admit }
        record(id, client)
        guard maxPerClient > 0 else { return .admit }
        if count(of: client) > 2 * maxPerClient { return .drop(.clientFull) }
        return count(of: client) > maxPerClient ? .refuse(.clientFull) : .admit
    }

    /// An eviction found the connection busy after all (a request started): it counts in full again.
    mutating func spare(_ id: ID) {
        evicting.remove(id)
    }

    mutating func disconnect(_ id: ID) {
        total -= 1
        evicting.remove(id)
        guard let client = clientOf.removeValue(forKey: id) else { return }
        let left = count(of: client) - 1
        perClient[client] = left > 0 ? left : nil
    }

    private mutating func record(_ id: ID, _ client: String) {
        clientOf[id] = client
        perClient[client, default: 0] += 1
    }
}
