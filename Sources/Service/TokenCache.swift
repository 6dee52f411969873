import Foundation
import Storage
import Synchronization

/// The active tokens by hash, and when to read them again. Pure, with time
/// passed in. Tokens are created and revoked by other processes too
/// (`ich-server token create|revoke`), so the table is read again when it is
/// older than `refresh` seconds (a token revoked anywhere stops working within
/// that time) and when a token is not in it (a new token works on its first
/// request; bad tokens are limited per address by `AuthThrottle` before they
/// get here, so they cannot turn into a flood of reads). Reading a few rows a
/// second is nothing beside the requests it serves.
struct TokenTable: Sendable {
    private var byHash: [[UInt8]: TokenRecord] = [:]
    private(set) var loadedAt = -Double.infinity
    let refresh: Double
    /// When each token's use was last written (`TokenStore.recordUse`): at most once per `useInterval`.
    private var useRecordedAt: [Int: Double] = [:]
    let useInterval: Double

    init(refresh: Double = 1, useInterval: Double = 60) {
        self.refresh = refresh
        self.useInterval = useInterval
    }

    enum Lookup: Equatable {
        case found(TokenRecord)
        /// Read the table again (`replace`), then take `record(hash)`.
        case reload
    }

    func lookup(_ hash: [UInt8], now: Double) -> Lookup {
        guard now - loadedAt < refresh, now >= loadedAt, let record = byHash[hash] else { return .reload }
        return .found(record)
    }

    func record(_ hash: [UInt8]) -> TokenRecord? { byHash[hash] }

    mutating func replace(_ records: [TokenRecord], at now: Double) {
        byHash = Dictionary(records.map { ($0.hash, $0) }, uniquingKeysWith: { first, _ in first })
        loadedAt = now
    }

    /// Forgets the table, so that the next lookup reads it: after this process revoked a token.
    mutating func invalidate() { loadedAt = -.infinity }

    /// Whether this use of token `id` at `now` should be written; notes it if so.
    mutating func noteUse(_ id: Int, now: Double) -> Bool {
        if let last = useRecordedAt[id], now - last < useInterval, now >= last { return false }
        useRecordedAt[id] = now
        return true
    }
}

/// `TokenTable` shared by the connection queues, read from the service's reader connection.
final class TokenCache: Sendable {
    private let table: Mutex<TokenTable>
    private let db: DatabaseQueue
    private let clock: @Sendable () -> Double
    /// Seconds since 1970, for expiry and last use.
    private let wallClock: @Sendable () -> Double
    /// Writes a token's last use; called off the request's path, at most once a minute per token.
    private let recordUse: @Sendable (_ id: Int, _ at: Double) -> Void

    init(db: DatabaseQueue, table: TokenTable = TokenTable(),
         clock: @escaping @Sendable () -> Double = { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 },
         wallClock: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 },
         recordUse: @escaping @Sendable (Int, Double) -> Void = { _, _ in }) {
        self.table = Mutex(table)
        self.db = db
        self.clock = clock
        self.wallClock = wallClock
        self.recordUse = recordUse
    }

    /// The active token with this hash, or nil (unknown, revoked or expired). Reads the database only
    /// when the table says so.
    func find(_ hash: [UInt8]) throws -> TokenRecord? {
        let now = clock()
        let wall = wallClock()
        var record: TokenRecord?
        if case .found(let found) = table.withLock({ $0.lookup(hash, now: now) }) {
            record = found
        } else {
            let records = try db.sync { try TokenStore.active($0, at: wall) }
            record = table.withLock { table in
                table.replace(records, at: now)
                return table.record(hash)
            }
        }
        // Expiry is exact: a token expiring between two reads of the table is refused from that second.
        guard let record, record.expiresAt.map({ $0 > wall }) ?? true else { return nil }
        if table.withLock({ $0.noteUse(record.id, now: now) }) { recordUse(record.id, wall) }
        return record
    }

    func invalidate() { table.withLock { $0.invalidate() } }
}
