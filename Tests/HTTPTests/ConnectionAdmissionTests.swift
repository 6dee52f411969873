import Testing

@testable import HTTP

private let start = ContinuousClock.now
private func at(_ seconds: Int) -> ContinuousClock.Instant { start + .seconds(seconds) }

@Test func aClientPastItsCapIsRefusedThenDroppedWhileOthersAreAdmitted() {
    var table = ConnectionAdmission<Int>(maxConnections: 100, maxPerClient: 2)
    let decisions = (1...5).map { table.connect($0, client: "a", candidates: { [] }) }
    #expect(decisions == [.admit, .admit, .refuse(.clientFull), .refuse(.clientFull), .drop(.clientFull)])
    #expect(table.connect(6, client: "b", candidates: { [] }) == .admit)
    #expect(table.total == 5)  // the dropped one is never counted
    table.disconnect(1)
    table.disconnect(3)
    #expect(table.count(of: "a") == 2)
    #expect(table.connect(7, client: "a", candidates: { [] }) == .refuse(.clientFull))
}

@Test func aFullServerEvictsTheConnectionWaitingLongestForAHead() {
    var table = ConnectionAdmission<Int>(maxConnections: 3, maxPerClient: 0)
    for id in 1...3 { #expect(table.connect(id, client: "x\(id)", candidates: { [] }) == .admit) }
    let waiting = [(1, at(5)), (3, at(2))]  // 2 is busy with a request
    #expect(table.connect(4, client: "y", candidates: { waiting }) == .admitEvicting(3))
    // Until 3 has closed it is not chosen twice.
    #expect(table.connect(5, client: "z", candidates: { waiting }) == .admitEvicting(1))
    #expect(table.connect(6, client: "w", candidates: { waiting + [(6, at(9))] }) == .refuse(.serverFull))
    #expect(table.total == 6)
    // The two being evicted do not count towards twice the cap: two more fit before the drop.
    for id in 7...8 { #expect(table.connect(id, client: "v\(id)", candidates: { [] }) == .refuse(.serverFull)) }
    #expect(table.connect(9, client: "u", candidates: { [] }) == .drop(.serverFull))
    table.spare(1)  // 1 turned out busy: it counts again
    #expect(table.connect(10, client: "s", candidates: { [] }) == .drop(.serverFull))
    for id in 1...3 { table.disconnect(id) }
    #expect(table.connect(11, client: "t", candidates: { [] }) == .refuse(.serverFull))
}

@Test func theCandidatesAreOnlyAskedForWhenTheServerIsFull() {
    var table = ConnectionAdmission<Int>(maxConnections: 2, maxPerClient: 0)
    var asked = 0
    _ = table.connect(1, client: "a") { asked += 1; return [] }
    _ = table.connect(2, client: "a") { asked += 1; return [] }
    #expect(asked == 0)
    _ = table.connect(3, client: "a") { asked += 1; return [] }
    #expect(asked == 1)
}

@Test func aClientNamedLaterIsCountedFromThen() {
    var table = ConnectionAdmission<Int>(maxConnections: 100, maxPerClient: 1)
    for id in 1...3 { #expect(table.connect(id, client: nil, candidates: { [] }) == .admit) }
    #expect(table.identify(1, client: "c") == .admit)
    #expect(table.identify(2, client: "c") == .refuse(.clientFull))
    #expect(table.identify(3, client: "c") == .drop(.clientFull))
    table.disconnect(1)
    table.disconnect(2)
    table.disconnect(3)
    #expect(table.count(of: "c") == 0)
    #expect(table.total == 0)
}

@Test func clientKeysFoldMappedAddressesAndIPv6Prefixes() {
    #expect(clientKey("192.0.2.7") == "192.0.2.7")
    #expect(clientKey("::ffff:192.0.2.7") == "192.0.2.7")
    #expect(clientKey("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64")
    #expect(clientKey("2001:db8:1:2:bbbb::9") == clientKey("2001:db8:1:2::1"))
    #expect(clientKey("2001:db8:1:3::1") != clientKey("2001:db8:1:2::1"))
    #expect(clientKey("fe80::1%eth0") == "fe80:0:0:0::/64")
}
