// swift-tools-version:6.0
import PackageDescription

// Targets and what each may import are laid out in DESIGN.md; a target only
// imports targets declared above it here.
// OpenJPEG decodes the JPEG 2000 syntaxes that DCMTK 3.6.7 has no codec for (Debian libopenjp2-7-dev).
let dcmtkLibraries: [LinkerSetting] = ["cmr", "dcmsr", "dcmnet", "dcmjpls", "dcmjpeg", "dcmimgle", "dcmdata", "oflog", "ofstd", "openjp2"]
    .map { .linkedLibrary($0) }

let package = Package(
    name: "ich-triage",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "ichctl", targets: ["ichctl"]),
        .executable(name: "ich-server", targets: ["ich-server"]),
        // Exported for the fuzzing package in Fuzz/, which builds with sanitizers.
        .library(name: "DICOM", targets: ["DICOM"]),
        .library(name: "HTTP", targets: ["HTTP"]),
        .library(name: "NeuralNet", targets: ["NeuralNet"]),
    ],
    dependencies: [
        // Subcommands, typed options and help text for ichctl without a hand-written parser.
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // SHA-256 of model weights at load time, instead of a hand-written digest.
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        // One Logger value passed into the server, bootstrapped once by the executable. Messages
        // are constants and variable data goes in metadata; no PHI: never request bodies or paths
        // carrying UIDs, only route-level facts.
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        // Prometheus text exposition (counters, gauges, histograms with labels) for /metrics.
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        .target(
            name: "CDCMTK",
            linkerSettings: dcmtkLibraries
        ),
        // TLS for the HTTP server through OpenSSL 3 (Debian libssl-dev); only opaque handles cross its header.
        .target(name: "COpenSSL", linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]),
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),

        .target(name: "DICOM", dependencies: ["CDCMTK"]),
        .target(name: "Imaging", dependencies: ["DICOM"]),
        .target(name: "NeuralNet", dependencies: ["CBLAS", .product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "Inference", dependencies: ["DICOM", "Imaging", "NeuralNet"]),
        .target(name: "Storage", dependencies: ["CSQLite"]),
        .target(name: "HTTP", dependencies: ["COpenSSL", .product(name: "Logging", package: "swift-log")]),
        .target(name: "HTTPClient", dependencies: ["CCurl"]),
        .target(
            name: "Service",
            dependencies: [
                "DICOM", "Imaging", "NeuralNet", "Inference", "Storage", "HTTP", "HTTPClient",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),

        .executableTarget(
            name: "ich-server",
            dependencies: [
                "Service", "HTTP",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "ichctl",
            dependencies: [
                "HTTPClient", "DICOM", "Imaging", "NeuralNet", "Inference",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // Part-10 files written byte by byte for the tests, independent of DCMTK.
        .target(name: "DICOMTestSupport", path: "Tests/Support/DICOMTestSupport"),
        .testTarget(name: "DICOMTests", dependencies: ["DICOM", "DICOMTestSupport"]),
        .testTarget(name: "ImagingTests", dependencies: ["Imaging", "DICOM"]),
        .testTarget(name: "NeuralNetTests", dependencies: ["NeuralNet"]),
        .testTarget(name: "InferenceTests", dependencies: ["Inference", "NeuralNet", "Imaging", "DICOM"]),
        .testTarget(name: "StorageTests", dependencies: ["Storage"]),
        .testTarget(name: "HTTPTests", dependencies: ["HTTP"]),
        .testTarget(name: "ServiceTests", dependencies: ["Service", "HTTP", "Storage", "DICOM", "Inference", "DICOMTestSupport"]),
        .testTarget(name: "ichctlTests", dependencies: ["ichctl", "HTTPClient"]),
    ],
    cxxLanguageStandard: .cxx17
)
