/// The DICOM listener (`--dicom-port`): off unless a port is given.
public struct DICOMNodeConfiguration: Sendable, Equatable {
    public var port: Int
    public static let defaultAETitle = "ICHTRIAGE"
    /// The called AE title this node answers to; associations calling another are rejected.
    public var aeTitle: String = Self.defaultAETitle
    /// Who may connect, as `AE@HOST`; empty: loopback callers only, any AE title.
    public var peers: [DICOMPeer] = []
    public var maxAssociations: Int = 16
    /// Largest PDU we receive (PS3.8: 0 means unlimited; we never offer that).
    public var maxPDU: Int = 65_536
    /// ARTIM (an association request must arrive whole in it) and DIMSE (the longest silence
    /// between messages, or within one) timeouts, in seconds.
    public var timeout: Int = 30

    public init(port: Int) {
        self.port = port
    }

    /// Why this configuration cannot be used, if it cannot.
    public func problem() -> String? {
        guard (1...65_535).contains(port) else { return "dicom-port must be 1 to 65535" }
        guard DICOMPeer.isValidAETitle(aeTitle) else {
            return "ae-title must be 1 to 16 characters of printable ASCII without backslash, not all spaces"
        }
        guard maxAssociations >= 1, (4_096...1_048_576).contains(maxPDU), timeout >= 1 else {
            return "dicom-max-associations must be at least 1, dicom-max-pdu 4096 to 1048576 and dicom-timeout at least 1"
        }
        return nil
    }
}

/// One allowed caller: its AE title and the host (an IP address, or a name resolved at start) it calls from.
public struct DICOMPeer: Sendable, Equatable {
    public var aeTitle: String
    public var host: String

    public init(aeTitle: String, host: String) {
        self.aeTitle = aeTitle
        self.host = host
    }

    /// `AE@HOST`, as `--dicom-peer` takes it.
    public init?(parsing text: String) {
        guard let at = text.lastIndex(of: "@") else { return nil }
        let title = String(text[..<at]), host = String(text[text.index(after: at)...])
        guard Self.isValidAETitle(title), !host.isEmpty else { return nil }
        self.init(aeTitle: title, host: host)
    }

    /// PS3.5 AE VR: up to 16 characters of the default repertoire, no backslash or control characters, not only spaces.
    public static func isValidAETitle(_ title: String) -> Bool {
        let bytes = Array(title.utf8)
        return (1...16).contains(bytes.count) && bytes.allSatisfy { (0x20...0x7E).contains($0) && $0 != 0x5C }
            && bytes.contains { $0 != 0x20 }
    }
}
