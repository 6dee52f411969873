import DICOM
import Foundation

/// Whether an association request is accepted: pure, so the rules are tested without a network.
struct AssociationPolicy: Sendable {
    enum Decision: Equatable {
        case accept
        case rejectCallingAETitle
        case rejectCalledAETitle
        case rejectBusy

        /// What the A-ASSOCIATE-RJ says; nil for an accepted request.
        var rejection: DICOMAssociation.RejectReason? {
            switch self {
            case .accept: nil
            case .rejectCallingAETitle: .callingAETitle
            case .rejectCalledAETitle: .calledAETitle
            case .rejectBusy: .busy
            }
        }
    }

    let aeTitle: String
    /// Each allowed caller with the addresses its host resolved to at start.
    let peers: [(aeTitle: String, addresses: Set<String>)]
    let maxAssociations: Int

    /// AE titles compare without their padding spaces (PS3.8 §9.3.2: leading and trailing spaces are not significant).
    func decide(calling: String, called: String, host: String, open: Int) -> Decision {
        guard trimmed(called) == trimmed(aeTitle) else { return .rejectCalledAETitle }
        let allowed =
            peers.isEmpty
            ? Self.isLoopback(host)
            : peers.contains { trimmed($0.aeTitle) == trimmed(calling) && $0.addresses.contains(Self.unmapped(host)) }
        guard allowed else { return .rejectCallingAETitle }
        return open < maxAssociations ? .accept : .rejectBusy
    }

    static func isLoopback(_ host: String) -> Bool {
        let address = unmapped(host)
        return address.hasPrefix("127.") || address == "::1"
    }

    /// An IPv4-mapped IPv6 address (`::ffff:10.0.0.5`) is its IPv4 address.
    static func unmapped(_ host: String) -> String {
        host.lowercased().hasPrefix("::ffff:") && host.contains(".") ? String(host.dropFirst(7)) : host
    }

    private func trimmed(_ title: String) -> String { title.trimmingCharacters(in: .whitespaces) }
}
