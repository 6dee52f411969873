// swift-tools-version:6.0
import PackageDescription

// libFuzzer targets, kept apart from the main package because they build with
// `-sanitize=fuzzer,address` (see `make fuzz`).
let package = Package(
    name: "ich-fuzz",
    dependencies: [.package(path: "..")],
    targets: [
        .executableTarget(
            name: "FuzzDICOM",
            dependencies: [.product(name: "DICOM", package: "main")]
        ),
    ]
)
