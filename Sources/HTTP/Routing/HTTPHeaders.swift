/// Header fields in the order they arrived. Names keep their spelling; lookups
/// ignore ASCII case, as RFC 9110 says field names are case-insensitive.
public struct HTTPHeaders: Sendable, Sequence, Equatable {
    public typealias Element = (name: String, value: String)

    private var fields: [Element]

    public init(_ pairs: [(String, String)] = []) {
        fields = pairs.map { (name: $0.0, value: $0.1) }
    }

    public var count: Int { fields.count }
    public var isEmpty: Bool { fields.isEmpty }

    /// The first value of `name`, or nil.
    public subscript(name: String) -> String? {
        fields.first { equalsIgnoringASCIICase($0.name, name) }?.value
    }

    public func values(_ name: String) -> [String] {
        fields.compactMap { equalsIgnoringASCIICase($0.name, name) ? $0.value : nil }
    }

    public func contains(_ name: String) -> Bool {
        fields.contains { equalsIgnoringASCIICase($0.name, name) }
    }

    public mutating func add(_ name: String, _ value: String) {
        fields.append((name: name, value: value))
    }

    /// Replaces the first field called `name` and drops any others; appends when absent.
    public mutating func replaceOrAdd(_ name: String, _ value: String) {
        guard let first = fields.firstIndex(where: { equalsIgnoringASCIICase($0.name, name) }) else {
            add(name, value)
            return
        }
        fields[first].value = value
        var index = fields.count - 1
        while index > first {
            if equalsIgnoringASCIICase(fields[index].name, name) { fields.remove(at: index) }
            index -= 1
        }
    }

    public mutating func remove(_ name: String) {
        fields.removeAll { equalsIgnoringASCIICase($0.name, name) }
    }

    public func makeIterator() -> IndexingIterator<[Element]> {
        fields.makeIterator()
    }

    public static func == (lhs: HTTPHeaders, rhs: HTTPHeaders) -> Bool {
        lhs.fields.count == rhs.fields.count
            && zip(lhs.fields, rhs.fields).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }

    /// Comma-separated tokens across every field called `name`, lowercased and
    /// trimmed; how `Connection` and `Transfer-Encoding` are read.
    func tokens(_ name: String) -> [String] {
        values(name).flatMap { $0.split(separator: ",", omittingEmptySubsequences: false) }
            .map { $0.trimmingOWS().lowercasedASCII() }
    }
}

func equalsIgnoringASCIICase(_ a: String, _ b: String) -> Bool {
    var left = a.utf8.makeIterator()
    var right = b.utf8.makeIterator()
    while true {
        switch (left.next(), right.next()) {
        case (nil, nil): return true
        case (let x?, let y?):
            if x != y && asciiLower(x) != asciiLower(y) { return false }
        default: return false
        }
    }
}

@inline(__always) func asciiLower(_ byte: UInt8) -> UInt8 {
    byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte
}

extension StringProtocol {
    /// Strips optional whitespace (SP and HTAB) only; Unicode spaces are data.
    func trimmingOWS() -> Substring {
        let text = Substring(self)
        let start = text.utf8.firstIndex { $0 != 0x20 && $0 != 0x09 } ?? text.utf8.endIndex
        let end = text.utf8.lastIndex { $0 != 0x20 && $0 != 0x09 }.map { text.utf8.index(after: $0) } ?? start
        return start < end ? text[start..<end] : text[start..<start]
    }

    func lowercasedASCII() -> String {
        String(decoding: utf8.map(asciiLower), as: UTF8.self)
    }
}
