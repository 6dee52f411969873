// swift-tools-version:6.0
import Foundation
import PackageDescription

// libFuzzer targets, kept apart from the main package because they build with
// `-sanitize=fuzzer,address` (see `make fuzz`). A path dependency is named
// after its folder, which differs between checkouts (CI clones elsewhere).
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().lastPathComponent

let package = Package(
    name: "ich-fuzz",
    dependencies: [.package(path: "..")],
    targets: [
        .target(name: "FuzzDriver"),
        .executableTarget(
            name: "FuzzDICOM",
            dependencies: ["FuzzDriver", .product(name: "DICOM", package: root)]
        ),
        .executableTarget(
            name: "FuzzHTTP",
            dependencies: ["FuzzDriver", .product(name: "HTTP", package: root)]
        ),
        .executableTarget(
            name: "FuzzSafeTensors",
            dependencies: ["FuzzDriver", .product(name: "NeuralNet", package: root)]
        ),
    ]
)
