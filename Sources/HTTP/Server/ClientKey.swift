#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The key connections are counted under for `maxConnectionsPerClient`: an
/// IPv4 address as it is (an IPv4-mapped IPv6 address included, so a
/// dual-stack listener counts one host once), and an IPv6 address by its /64,
/// the prefix one subscriber or one host is given (RFC 6177), so that an
/// attacker holding a /64 cannot open 2^64 counters.
func clientKey(_ numericHost: String) -> String {
    var v6 = in6_addr()
    guard inet_pton(AF_INET6, numericHost.split(separator: "%", maxSplits: 1).first.map(String.init) ?? numericHost, &v6) == 1 else {
        return numericHost
    }
    let bytes = withUnsafeBytes(of: v6) { Array($0) }
    if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF {
        return "\(bytes[12]).\(bytes[13]).\(bytes[14]).\(bytes[15])"
    }
    return ipv6Text(bytes[0..<8]) + "::/64"
}

/// Network-order bytes of an IPv6 address (or its first hextets) as colon-separated hextets, uncompressed.
func ipv6Text(_ bytes: ArraySlice<UInt8>) -> String {
    stride(from: bytes.startIndex, to: bytes.endIndex, by: 2)
        .map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }
        .joined(separator: ":")
}
