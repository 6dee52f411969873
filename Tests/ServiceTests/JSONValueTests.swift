import Testing

@testable import Service

@Suite struct JSONValueTests {
    @Test func keepsKeyOrderWritesNullsAndEscapes() {
        let value = JSONValue.object([
            ("b", .null), ("a", .array([.int(1), .float(0.1), .bool(false)])), ("s", .string("q\"\\\n\u{01}é")),
        ])
        #expect(String(decoding: value.serialized(), as: UTF8.self) == #"{"b":null,"a":[1,0.1,false],"s":"q\"\\\n\u0001é"}"#)
    }
}
