import DICOM

/// The slice's position along the patient axis in millimetres: Image Position
/// (Patient) projected on the normal of Image Orientation (Patient), which
/// orders tilted acquisitions correctly; z alone when orientation is absent.
public func slicePosition(_ slice: CTSlice) -> Double? {
    guard let p = slice.imagePositionPatient, p.count == 3 else { return nil }
    guard let o = slice.imageOrientationPatient, o.count == 6 else { return p[2] }
    let n = [o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]]
    let length = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).squareRoot()
    guard length > 1e-6 else { return p[2] }
    return (p[0] * n[0] + p[1] * n[1] + p[2] * n[2]) / length
}
