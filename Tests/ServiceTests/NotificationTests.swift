import Testing

@testable import Service

@Suite struct NotificationTests {
    /// RFC 4231 test cases 1 and 2 (HMAC-SHA-256).
    @Test func signatureIsHMACSHA256OfTheBodyInHex() {
        #expect(Signature.value(body: Array("Hi There".utf8), secret: [UInt8](repeating: 0x0b, count: 20))
                == "sha256=b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        #expect(Signature.value(body: Array("what do ya want for nothing?".utf8), secret: Array("Jefe".utf8))
                == "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    @Test func retriesBackOffExponentiallyUpToTheCapThenGiveUp() {
        let schedule = RetrySchedule(base: 5, cap: 60, maxAttempts: 6)
        #expect((1...5).map { schedule.delay(afterAttempts: $0) } == [5, 10, 20, 40, 60])
        #expect(schedule.delay(afterAttempts: 6) == nil)
        #expect(schedule.delay(afterAttempts: 1, retryAfter: 30) == 30, "the receiver's Retry-After wins when longer")
        #expect(schedule.delay(afterAttempts: 1, retryAfter: 3_600) == 60, "but never past the cap")
        #expect(RetrySchedule(base: 1, cap: 3_600, maxAttempts: 1_000).delay(afterAttempts: 200) == 3_600, "no overflow")
    }

    @Test func configurationNeedsHTTPURLsAndASecret() {
        var webhooks = WebhookConfiguration()
        #expect(webhooks.problem() == nil, "no webhooks is fine")
        webhooks.urls = ["https://pager.example.org/ich"]
        #expect(webhooks.problem() != nil, "a URL without a secret is refused")
        webhooks.secret = Array("0123456789abcdef".utf8)
        #expect(webhooks.problem() == nil)
        for bad in ["file:///etc/passwd", "ftp://x/y", "https://a b/c", "http://"] {
            webhooks.urls = [bad]
            #expect(webhooks.problem() != nil, "\(bad)")
        }
    }
}
