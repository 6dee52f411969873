/// Where the service stores its result objects: a DICOM node by C-STORE, or a DICOMweb server by
/// STOW-RS. Written `dicom://AET@HOST:PORT` or `http(s)://HOST/PATH` (the DICOMweb base URL, to
/// which `/studies` is appended); `description` is that text, the form the outbox stores.
public enum ResultsDestination: Sendable, Equatable, CustomStringConvertible {
    case dicom(aeTitle: String, host: String, port: Int)
    case dicomweb(baseURL: String)

    public init?(_ text: String) {
        let lower = text.lowercased()
        if lower.hasPrefix("dicom://") {
            let rest = text.dropFirst("dicom://".count)
            guard let at = rest.firstIndex(of: "@"), let colon = rest.lastIndex(of: ":"), at < colon,
                  let port = Int(rest[rest.index(after: colon)...]), (1...65_535).contains(port)
            else { return nil }
            let title = String(rest[..<at]), host = String(rest[rest.index(after: at)..<colon])
            guard DICOMPeer.isValidAETitle(title), !host.isEmpty, !host.contains(where: { $0.isWhitespace || $0 == "/" })
            else { return nil }
            self = .dicom(aeTitle: title, host: host, port: port)
        } else if lower.hasPrefix("http://") || lower.hasPrefix("https://") {
            guard !text.contains(where: { $0.isWhitespace }), text.split(separator: "/").count >= 2 else { return nil }
            self = .dicomweb(baseURL: text.hasSuffix("/") ? String(text.dropLast()) : text)
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case .dicom(let title, let host, let port): "dicom://\(title)@\(host):\(port)"
        case .dicomweb(let url): url
        }
    }

    /// The metric label.
    public var kind: String {
        switch self {
        case .dicom: "dicom"
        case .dicomweb: "dicomweb"
        }
    }
}

/// Results delivery (`--results-destination`): off when no destination is given.
public struct ResultsConfiguration: Sendable {
    public var destinations: [ResultsDestination] = []
    /// Our AE title when we call a DICOM destination (`--ae-title`).
    public var callingAETitle = DICOMNodeConfiguration.defaultAETitle
    /// Bearer token for DICOMweb destinations (`ICH_RESULTS_TOKEN`); nil sends none.
    public var token: String?
    /// An attempt is the C-STORE association or the STOW-RS request.
    public var delivery = DeliveryPolicy(timeout: 30)

    public init() {}

    /// Why this configuration cannot be used, if it cannot.
    public func problem() -> String? { delivery.problem("results") }
}
