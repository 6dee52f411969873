import Crypto

/// A UID under the 2.25 root (PS3.5 B.2: a UUID as a decimal integer) made from a hash of its parts,
/// so the same study and result always get the same UID and a resend replaces instead of duplicating.
enum DerivedUID {
    static func make(_ parts: String...) -> String {
        let digest = Array(SHA256.hash(data: Array(parts.joined(separator: "\u{1F}").utf8)))
        // The first 128 bits, as RFC 4122 version 8 (custom) so the integer is a valid UUID's.
        var bytes = Array(digest[0..<16])
        bytes[6] = (bytes[6] & 0x0F) | 0x80
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        return "2.25." + decimal(bytes)
    }

    /// A big-endian unsigned integer in base 10, by long division.
    static func decimal(_ bytes: [UInt8]) -> String {
        var number = bytes
        var digits: [UInt8] = []
        while number.contains(where: { $0 != 0 }) {
            var remainder = 0
            for i in number.indices {
                let value = remainder << 8 | Int(number[i])
                number[i] = UInt8(value / 10)
                remainder = value % 10
            }
            digits.append(UInt8(remainder))
        }
        return digits.isEmpty ? "0" : String(digits.reversed().map { Character(String($0)) })
    }
}
