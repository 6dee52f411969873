import Imaging
import Testing

@Test(arguments: [
    (CTWindow.brain, 0.0, 80.0),
    (CTWindow.subdural, -20, 180),
    (CTWindow.softTissue, -150, 230),
    (CTWindow(center: 40, width: 75), 3, 77),  // Python's 75 // 2 == 37
])
func windowBounds(window: CTWindow, lower: Double, upper: Double) {
    #expect(window.lower == lower && window.upper == upper, "\(window)")
}

@Test(arguments: [CTWindow(center: 40, width: 1), CTWindow(center: 40, width: 0), CTWindow(center: .nan, width: 80)])
func emptyWindowsAreRejected(window: CTWindow) {
    #expect(throws: ImagingError.self) { try PreprocessSettings(windows: [window]).validate() }
}
