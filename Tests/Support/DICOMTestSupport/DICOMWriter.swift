/// Builds small Part-10 files (explicit VR little endian) byte by byte, so the
/// decoder's tests do not depend on the decoder's own library to make input.
public struct DICOMWriter {
    public init() {}

    public private(set) var elements: [(group: UInt16, element: UInt16, vr: String, value: [UInt8])] = []

    public mutating func string(_ group: UInt16, _ element: UInt16, _ vr: String, _ text: String) {
        var bytes = Array(text.utf8)
        if bytes.count % 2 == 1 { bytes.append(vr == "UI" ? 0 : UInt8(ascii: " ")) }
        set(group, element, vr, bytes)
    }

    public mutating func us(_ group: UInt16, _ element: UInt16, _ value: UInt16) {
        set(group, element, "US", [UInt8(value & 0xFF), UInt8(value >> 8)])
    }

    public mutating func pixels16(_ values: [UInt16]) {
        set(0x7FE0, 0x0010, "OW", values.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] })
    }

    /// A sequence of items with explicit lengths, each item's elements in ascending tag order.
    public mutating func sequence(_ group: UInt16, _ element: UInt16, _ items: [DICOMWriter]) {
        var value: [UInt8] = []
        for item in items {
            let body = item.dataSet()
            value += le16(0xFFFE) + le16(0xE000) + le32(UInt32(body.count)) + body
        }
        set(group, element, "SQ", value)
    }

    public mutating func set(_ group: UInt16, _ element: UInt16, _ vr: String, _ value: [UInt8]) {
        remove(group, element)
        elements.append((group, element, vr, value))
    }

    public mutating func remove(_ group: UInt16, _ element: UInt16) {
        elements.removeAll { $0.group == group && $0.element == element }
    }

    /// Preamble, "DICM", a minimal meta group and the data set, tags in ascending order.
    public func bytes(preamble: Bool = true) -> [UInt8] {
        var meta: [UInt8] = []
        append(&meta, 0x0002, 0x0001, "OB", [0, 1])
        append(&meta, 0x0002, 0x0010, "UI", Array("1.2.840.10008.1.2.1\0".utf8))
        var out: [UInt8] = []
        if preamble {
            out = [UInt8](repeating: 0, count: 128) + Array("DICM".utf8)
            append(&out, 0x0002, 0x0000, "UL", le32(UInt32(meta.count)))
            out += meta
        }
        return out + dataSet()
    }

    private func dataSet() -> [UInt8] {
        var out: [UInt8] = []
        for e in elements.sorted(by: { ($0.group, $0.element) < ($1.group, $1.element) }) {
            append(&out, e.group, e.element, e.vr, e.value)
        }
        return out
    }

    private func append(_ out: inout [UInt8], _ group: UInt16, _ element: UInt16, _ vr: String, _ value: [UInt8]) {
        out += le16(group) + le16(element) + Array(vr.utf8)
        if ["OB", "OW", "SQ", "UN", "UT"].contains(vr) {
            out += [0, 0] + le32(UInt32(value.count))
        } else {
            out += le16(UInt16(value.count))
        }
        out += value
    }

    private func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
    private func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * $0)) & 0xFF) } }

    /// A 4x3 signed 16-bit CT slice with valid UIDs and common attributes.
    public static func ct(rows: UInt16 = 3, columns: UInt16 = 4, values: [Int16]? = nil) -> DICOMWriter {
        var w = DICOMWriter()
        w.string(0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.2")
        w.string(0x0008, 0x0018, "UI", "1.2.3.4.5.3")
        w.string(0x0008, 0x0060, "CS", "CT")
        w.string(0x0020, 0x000D, "UI", "1.2.3.4.5.1")
        w.string(0x0020, 0x000E, "UI", "1.2.3.4.5.2")
        w.string(0x0020, 0x0013, "IS", "7")
        w.string(0x0020, 0x0032, "DS", "-125\\-120.5\\33.75")
        w.string(0x0020, 0x0037, "DS", "1\\0\\0\\0\\1\\0")
        w.us(0x0028, 0x0002, 1)
        w.string(0x0028, 0x0004, "CS", "MONOCHROME2")
        w.us(0x0028, 0x0010, rows)
        w.us(0x0028, 0x0011, columns)
        w.string(0x0028, 0x0030, "DS", "0.488281\\0.488281")
        w.us(0x0028, 0x0100, 16)
        w.us(0x0028, 0x0101, 16)
        w.us(0x0028, 0x0103, 1)
        w.string(0x0028, 0x1050, "DS", "40")
        w.string(0x0028, 0x1051, "DS", "80")
        w.string(0x0028, 0x1052, "DS", "-1024")
        w.string(0x0028, 0x1053, "DS", "1")
        let count = Int(rows) * Int(columns)
        let pixels = values ?? (0..<count).map { Int16($0 * 100 - 500) }
        w.pixels16(pixels.map { UInt16(bitPattern: $0) })
        return w
    }

    /// An Enhanced CT object of `frames.count` 3x4 frames: orientation and pixel measures shared, each frame's
    /// position (z = 10 * frame number) and rescale intercept (`frames[i]`) in its per-frame functional group,
    /// frame i's stored values `i * 1000 + k` for pixel k.
    public static func enhancedCT(intercepts: [Double]) -> DICOMWriter {
        var w = ct()
        w.string(0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.2.1")
        w.string(0x0008, 0x0008, "CS", "ORIGINAL\\PRIMARY\\AXIAL\\NONE")
        for tag: UInt16 in [0x0032, 0x0037] { w.remove(0x0020, tag) }
        for tag: UInt16 in [0x0030] { w.remove(0x0028, tag) }
        for tag: UInt16 in [0x1050, 0x1051, 0x1052, 0x1053] { w.remove(0x0028, tag) }
        w.string(0x0028, 0x0008, "IS", "\(intercepts.count)")
        func item(_ tag: (UInt16, UInt16), _ vr: String, _ text: String) -> DICOMWriter {
            var item = DICOMWriter()
            item.string(tag.0, tag.1, vr, text)
            return item
        }
        var shared = DICOMWriter()
        shared.sequence(0x0020, 0x9116, [item((0x0020, 0x0037), "DS", "1\\0\\0\\0\\1\\0")])
        var measures = DICOMWriter()
        measures.string(0x0018, 0x0050, "DS", "5")
        measures.string(0x0028, 0x0030, "DS", "0.5\\0.5")
        shared.sequence(0x0028, 0x9110, [measures])
        var reconstruction = DICOMWriter()
        reconstruction.string(0x0018, 0x1210, "SH", "STANDARD")
        shared.sequence(0x0018, 0x9314, [reconstruction])
        w.sequence(0x5200, 0x9229, [shared])
        w.sequence(0x5200, 0x9230, intercepts.enumerated().map { i, intercept in
            var perFrame = DICOMWriter()
            perFrame.sequence(0x0020, 0x9113, [item((0x0020, 0x0032), "DS", "-125\\-120\\\(10 * (i + 1))")])
            var transform = DICOMWriter()
            transform.string(0x0028, 0x1052, "DS", "\(intercept)")
            transform.string(0x0028, 0x1053, "DS", "1")
            perFrame.sequence(0x0028, 0x9145, [transform])
            return perFrame
        })
        w.pixels16(intercepts.indices.flatMap { i in (0..<12).map { UInt16(i * 1000 + $0) } })
        return w
    }
}
