import Foundation
import Testing

@testable import HTTP

@Suite struct TLSTests {
    @Test func aCertificateAndItsKeyLoadWithTheirExpiry() throws {
        let pki = try TestCertificates()
        defer { pki.remove() }
        let (certificate, key) = try pki.issue("server", days: 3)
        let context = try TLSContext(TLSConfiguration(certificatePath: certificate, keyPath: key))
        // openssl x509 -days 3 starts now: the expiry is three days from the test, give or take its run.
        let notAfter = try #require(context.notAfter)
        #expect(abs(notAfter.timeIntervalSinceNow - 3 * 86_400) < 600)
        #expect(!context.requiresClientCertificate)
        let mutual = try TLSContext(TLSConfiguration(certificatePath: certificate, keyPath: key, clientCAPath: pki.ca))
        #expect(mutual.requiresClientCertificate)
    }

    @Test func unusableFilesAreTypedErrorsThatNameTheFile() throws {
        let pki = try TestCertificates()
        defer { pki.remove() }
        let (certificate, key) = try pki.issue("server", days: 3)
        let (_, otherKey) = try pki.issue("other", days: 3)
        let missing = pki.folder + "/absent.pem"
        let cases: [(TLSConfiguration, String)] = [
            (TLSConfiguration(certificatePath: missing, keyPath: key), "absent.pem"),
            (TLSConfiguration(certificatePath: certificate, keyPath: missing), "absent.pem"),
            (TLSConfiguration(certificatePath: certificate, keyPath: otherKey), "does not match"),
            (TLSConfiguration(certificatePath: key, keyPath: key), "reading the certificate"),
            (TLSConfiguration(certificatePath: certificate, keyPath: key, clientCAPath: missing), "client CA"),
        ]
        for (configuration, expected) in cases {
            #expect {
                _ = try TLSContext(configuration)
            } throws: { error in
                (error as? TLSError)?.description.contains(expected) == true
            }
        }
    }

    @Test func aReloadThatFailsKeepsTheCertificateInUse() throws {
        let pki = try TestCertificates()
        defer { pki.remove() }
        let (certificate, key) = try pki.issue("served", days: 3)
        let server = HTTPServer(
            configuration: HTTPServerConfiguration(
                port: 0, tls: TLSConfiguration(certificatePath: certificate, keyPath: key), bodyDirectory: pki.folder + "/bodies"),
            logger: .init(label: "tls-test"), errorResponse: { HTTPResponse(status: $0.status) }, handler: { _ in HTTPResponse(status: 200) })
        _ = try server.start()
        defer { Task { await server.shutdown(gracePeriod: .zero) } }
        let first = try #require(server.tlsCertificate?.notAfter)
        try pki.issue("served", days: 9)  // renewed in place
        try server.reloadTLS()
        let renewed = try #require(server.tlsCertificate?.notAfter)
        #expect(renewed.timeIntervalSince(first) > 5 * 86_400)
        try Data("not a certificate\n".utf8).write(to: URL(fileURLWithPath: certificate))
        #expect(throws: TLSError.self) { try server.reloadTLS() }
        #expect(server.tlsCertificate?.notAfter == renewed)
    }
}
