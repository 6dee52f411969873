/// The PROXY protocol header (HAProxy's specification, versions 1 and 2) that a
/// trusted load balancer puts before the first request, naming the client it
/// accepted the connection from. Only read when `proxyProtocol` is on: a
/// client that can reach the port directly could otherwise claim any address.
public enum ProxyHeader {
    public enum Result: Equatable, Sendable {
        case needMoreInput
        /// `client` is nil for a LOCAL (health check) or UNKNOWN header: the socket's own peer applies.
        case complete(client: String?, consumed: Int)
    }

    /// v1 is one text line of at most 107 bytes (the specification's bound).
    static let maxV1Length = 107
    static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
    /// v2 with TLVs can be longer; past this a header is refused rather than buffered.
    static let maxV2Length = 16 + 512

    public static func parse(_ bytes: some Collection<UInt8>) throws(HTTPParseError) -> Result {
        let bytes = Array(bytes.prefix(maxV2Length))
        if bytes.first == 0x0D {
            let known = min(bytes.count, v2Signature.count)
            guard bytes[0..<known].elementsEqual(v2Signature[0..<known]) else { throw .malformedProxyHeader }
            return try parseV2(bytes)
        }
        let prefix = Array("PROXY ".utf8)
        let known = min(bytes.count, prefix.count)
        guard bytes[0..<known].elementsEqual(prefix[0..<known]) else { throw .malformedProxyHeader }
        return try parseV1(bytes)
    }

    /// `PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n`, or `PROXY UNKNOWN ...\r\n`.
    private static func parseV1(_ bytes: [UInt8]) throws(HTTPParseError) -> Result {
        guard let end = bytes.firstIndex(of: 0x0A) else {
            if bytes.count >= maxV1Length { throw .malformedProxyHeader }
            return .needMoreInput
        }
        guard end + 1 <= maxV1Length, end > 0, bytes[end - 1] == 0x0D else { throw .malformedProxyHeader }
        let fields = bytes[0..<(end - 1)].split(separator: 0x20, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        guard fields.count >= 2 else { throw .malformedProxyHeader }
        switch fields[1] {
        case "UNKNOWN":
            return .complete(client: nil, consumed: end + 1)
        case "TCP4", "TCP6":
            guard fields.count == 6, let source = fields[2].numericAddress(v6: fields[1] == "TCP6"),
                  fields[3].numericAddress(v6: fields[1] == "TCP6") != nil,
                  UInt16(fields[4]) != nil, UInt16(fields[5]) != nil else { throw .malformedProxyHeader }
            return .complete(client: source, consumed: end + 1)
        default:
            throw .malformedProxyHeader
        }
    }

    /// 12-byte signature, version/command, family/protocol, 16-bit length, then addresses and TLVs.
    private static func parseV2(_ bytes: [UInt8]) throws(HTTPParseError) -> Result {
        guard bytes.count >= 16 else { return .needMoreInput }
        let versionCommand = bytes[12], family = bytes[13]
        let length = Int(bytes[14]) << 8 | Int(bytes[15])
        guard versionCommand >> 4 == 2, versionCommand & 0x0F <= 1, 16 + length <= maxV2Length else { throw .malformedProxyHeader }
        guard bytes.count >= 16 + length else { return .needMoreInput }
        let consumed = 16 + length
        // LOCAL: the proxy's own connection (a health check); the socket's peer applies.
        if versionCommand & 0x0F == 0 { return .complete(client: nil, consumed: consumed) }
        switch family {
        case 0x11:  // TCP over IPv4: source, destination, ports
            guard length >= 12 else { throw .malformedProxyHeader }
            return .complete(client: bytes[16..<20].map(String.init).joined(separator: "."), consumed: consumed)
        case 0x21:  // TCP over IPv6
            guard length >= 36 else { throw .malformedProxyHeader }
            return .complete(client: ipv6Text(bytes[16..<32]), consumed: consumed)
        case 0x00:  // UNSPEC
            return .complete(client: nil, consumed: consumed)
        default:
            throw .malformedProxyHeader
        }
    }
}

extension String {
    /// The address if it is a numeric IPv4 (or IPv6) literal, as v1 requires.
    fileprivate func numericAddress(v6: Bool) -> String? {
        if v6 {
            guard !isEmpty, count <= 45, allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }), contains(":") else { return nil }
            return self
        }
        let parts = split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts.allSatisfy({ !$0.isEmpty && $0.count <= 3 && UInt8($0) != nil }) else { return nil }
        return self
    }
}
