import DICOM

/// A slice with deterministic pseudo-random stored values in [low, high].
func makeSlice(rows: Int, columns: Int, low: Int32 = -2000, high: Int32 = 3000, seed: UInt64 = 1,
               edit: (inout CTSlice) -> Void = { _ in }) -> CTSlice {
    var state = seed
    let values = (0..<rows * columns).map { _ -> Int32 in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return low + Int32(truncatingIfNeeded: (state >> 33) % UInt64(high - low + 1))
    }
    var slice = CTSlice(
        studyInstanceUID: "1.2.3", seriesInstanceUID: "1.2.3.4", sopInstanceUID: "1.2.3.4.5",
        rows: rows, columns: columns, rescaleIntercept: -1024, storedValues: values)
    edit(&slice)
    return slice
}
