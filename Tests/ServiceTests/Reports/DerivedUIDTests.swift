import Testing

@testable import Service

@Suite struct DerivedUIDTests {
    @Test func decimalIsTheUnsignedInteger() {
        #expect(DerivedUID.decimal([0]) == "0")
        #expect(DerivedUID.decimal([0x01, 0x00]) == "256")
        #expect(DerivedUID.decimal([UInt8](repeating: 0xFF, count: 16)) == "340282366920938463463374607431768211455")
    }

    @Test func uidsAreStableValidAndDistinct() {
        let a = DerivedUID.make("study", "1"), b = DerivedUID.make("study", "1"), c = DerivedUID.make("study", "2")
        #expect(a == b && a != c)
        #expect(DerivedUID.make("ab", "c") != DerivedUID.make("a", "bc"), "parts are separated")
        for uid in [a, c] {
            #expect(uid.hasPrefix("2.25.") && uid.count <= 64)
            #expect(uid.dropFirst(5).allSatisfy(\.isNumber) && uid.dropFirst(5).first != "0")
        }
    }
}
