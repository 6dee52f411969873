/// A CT display window as centre/width in Hounsfield units. As in the RSNA
/// baseline, values are clipped to [centre - width//2, centre + width//2]
/// and then scaled to [0, 1] over that interval.
public struct CTWindow: Sendable, Equatable, Codable {
    public var center: Double
    public var width: Double

    public init(center: Double, width: Double) {
        self.center = center
        self.width = width
    }

    public static let brain = CTWindow(center: 40, width: 80)
    public static let subdural = CTWindow(center: 80, width: 200)
    public static let softTissue = CTWindow(center: 40, width: 380)
    public static let bone = CTWindow(center: 600, width: 2800)

    /// Python's `width // 2`: floor division, so an odd width loses its last unit.
    public var lower: Double { center - (width / 2).rounded(.down) }
    public var upper: Double { center + (width / 2).rounded(.down) }
}
