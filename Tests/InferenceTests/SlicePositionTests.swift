import DICOM
import Foundation
import Testing

@testable import Inference

@Suite struct SlicePositionTests {
    func slice(position: [Double]?, orientation: [Double]?) -> CTSlice {
        CTSlice(studyInstanceUID: "1", seriesInstanceUID: "1.1", sopInstanceUID: "1.1.1", imagePositionPatient: position,
                imageOrientationPatient: orientation, rows: 1, columns: 1, storedValues: [0])
    }

    @Test func axialSliceUsesZ() {
        #expect(slicePosition(slice(position: [-120, -130, 42.5], orientation: [1, 0, 0, 0, 1, 0])) == 42.5)
    }

    @Test func withoutOrientationFallsBackToZ() {
        #expect(slicePosition(slice(position: [1, 2, 3], orientation: nil)) == 3)
        #expect(slicePosition(slice(position: nil, orientation: nil)) == nil)
    }

    /// A gantry tilt of 20 degrees about x: the distance along the normal, not z, orders the slices.
    @Test func tiltedSliceProjectsOnTheNormal() throws {
        let angle = 20.0 * .pi / 180
        let orientation = [1, 0, 0, 0, cos(angle), sin(angle)]
        let normal = [0, -sin(angle), cos(angle)]
        let position = [10.0, 3.0, 7.0]
        let expected = position[1] * normal[1] + position[2] * normal[2]
        let actual = try #require(slicePosition(slice(position: position, orientation: orientation)))
        #expect(abs(actual - expected) < 1e-9, "floating-point rounding only")
    }
}
