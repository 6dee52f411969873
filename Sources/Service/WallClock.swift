import Foundation

/// Seconds since 1970 for what the service records and decides by the calendar
/// (receive times, the stable age, audit rows, webhook due times). One value
/// passed to the parts, so that tests can move time instead of sleeping.
struct WallClock: Sendable {
    let now: @Sendable () -> Double

    static let system = WallClock { Date().timeIntervalSince1970 }
}
