import DICOM
import Foundation
import Testing

@Suite struct InstanceHeaderTests {
    func header(position: [Double]?, orientation: [Double]?) -> InstanceHeader {
        InstanceHeader(studyInstanceUID: "1", seriesInstanceUID: "1.1", sopInstanceUID: "1.1.1", imagePositionPatient: position,
                       imageOrientationPatient: orientation)
    }

    @Test func axialSliceUsesZ() {
        #expect(header(position: [-120, -130, 42.5], orientation: [1, 0, 0, 0, 1, 0]).position == 42.5)
        #expect(header(position: nil, orientation: [1, 0, 0, 0, 1, 0]).sliceNormal == [0, 0, 1])
    }

    @Test func withoutOrientationFallsBackToZ() {
        #expect(header(position: [1, 2, 3], orientation: nil).position == 3)
        #expect(header(position: nil, orientation: nil).position == nil)
        #expect(header(position: [1, 2, 3], orientation: [0, 0, 0, 0, 0, 0]).sliceNormal == nil)
    }

    /// A gantry tilt of 20 degrees about x: the distance along the normal, not z, orders the slices.
    @Test func tiltedSliceProjectsOnTheNormal() throws {
        let angle = 20.0 * .pi / 180
        let orientation = [1, 0, 0, 0, cos(angle), sin(angle)]
        let normal = [0, -sin(angle), cos(angle)]
        let position = [10.0, 3.0, 7.0]
        let expected = position[1] * normal[1] + position[2] * normal[2]
        let actual = try #require(header(position: position, orientation: orientation).position)
        #expect(abs(actual - expected) < 1e-9, "floating-point rounding only")
    }
}
