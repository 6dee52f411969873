import Foundation
import Storage
import Synchronization

/// The active tokens by hash, and when to read them again. Pure, with time
/// passed in. Tokens are created by another process (`ich-server token
/// create`) and revoked in the database, so the table is read again when it is
/// older than `refresh` seconds (a revoked token stops working within that
/// time) and when a token is not in it (a new token works on its first
/// request; bad tokens are limited per address by `AuthThrottle` before they
/// get here, so they cannot turn into a flood of reads).
struct TokenTable: Sendable {
    private var byHash: [[UInt8]: TokenRecord] = [:]
    private(set) var loadedAt = -Double.infinity
    let refresh: Double

    init(refresh: Double = 10) {
        self.refresh = refresh
    }

    enum Lookup: Equatable {
        case found(TokenRecord)
        /// Read the table again (`replace`), then take `record(hash)`.
        case reload
    }

    func lookup(_ hash: [UInt8], now: Double) -> Lookup {
        guard now - loadedAt < refresh, let record = byHash[hash] else { return .reload }
        return .found(record)
    }

    func record(_ hash: [UInt8]) -> TokenRecord? { byHash[hash] }

    mutating func replace(_ records: [TokenRecord], at now: Double) {
        byHash = Dictionary(records.map { ($0.hash, $0) }, uniquingKeysWith: { first, _ in first })
        loadedAt = now
    }
}

/// `TokenTable` shared by the connection queues, read from the service's reader connection.
final class TokenCache: Sendable {
    private let table: Mutex<TokenTable>
    private let db: DatabaseQueue
    private let clock: @Sendable () -> Double

    init(db: DatabaseQueue, table: TokenTable = TokenTable(),
         clock: @escaping @Sendable () -> Double = { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }) {
        self.table = Mutex(table)
        self.db = db
        self.clock = clock
    }

    /// The active token with this hash, or nil. Reads the database only when the table says so.
    func find(_ hash: [UInt8]) throws -> TokenRecord? {
        let now = clock()
        if case .found(let record) = table.withLock({ $0.lookup(hash, now: now) }) { return record }
        let records = try db.sync { try TokenStore.active($0) }
        return table.withLock { table in
            table.replace(records, at: now)
            return table.record(hash)
        }
    }
}
