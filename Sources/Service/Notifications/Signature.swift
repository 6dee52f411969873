import Crypto

/// `X-ICH-Signature: sha256=<hex>`: HMAC-SHA256 of the exact body bytes with
/// the shared secret, so a receiver can check who sent a notification and
/// that it was not changed on the way.
enum Signature {
    static let header = "X-ICH-Signature"

    static func value(body: [UInt8], secret: [UInt8]) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: secret))
        return "sha256=" + mac.map { hexDigits[Int($0 >> 4)] + hexDigits[Int($0 & 15)] }.joined()
    }

    private static let hexDigits = "0123456789abcdef".map(String.init)
}
