// A plain C view of OpenSSL 3 for the HTTP server: a server context built
// from PEM files (TLS 1.2 and 1.3 only, the server's cipher order, optional
// client certificates) and one non-blocking session per accepted socket.
// No OpenSSL type crosses this header; the Swift side sees opaque pointers,
// byte counts and the status codes below.
#ifndef COPENSSL_H
#define COPENSSL_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct copenssl_context copenssl_context;
typedef struct copenssl_session copenssl_session;

/// What a session call returned instead of a byte count (which is > 0).
typedef enum {
    /// The peer closed the TLS stream (close_notify, or an EOF, which a client may send instead).
    COPENSSL_CLOSED = 0,
    COPENSSL_WANT_READ = -1,
    COPENSSL_WANT_WRITE = -2,
    /// The handshake or the stream failed; `copenssl_session_error` says why.
    COPENSSL_FAILED = -3,
    /// The peer sent a plain HTTP request instead of a ClientHello.
    COPENSSL_PLAIN_HTTP = -4
} copenssl_status;

/// Loads the certificate chain and its key (PEM) and, when `client_ca_path` is
/// not NULL, requires client certificates issued by that CA bundle. NULL on
/// failure, with a reason (never key material) in `error`.
copenssl_context *copenssl_context_new(const char *certificate_path, const char *key_path,
                                       const char *client_ca_path, char *error, size_t error_length);
/// Sessions hold their own reference: a context may be freed while they run.
void copenssl_context_free(copenssl_context *context);
/// The leaf certificate's notAfter in seconds since 1970 (UTC), or -1.
long long copenssl_context_not_after(const copenssl_context *context);

/// A server-side session on a connected non-blocking socket; NULL when out of memory.
copenssl_session *copenssl_session_new(copenssl_context *context, int fd);
void copenssl_session_free(copenssl_session *session);
/// Runs the handshake as needed, then reads decrypted bytes: a count > 0 or a `copenssl_status`.
long copenssl_session_read(copenssl_session *session, void *buffer, size_t length);
/// Writes (part of) `buffer`: a count > 0 or a `copenssl_status`.
long copenssl_session_write(copenssl_session *session, const void *buffer, size_t length);
/// Decrypted bytes already buffered, which no socket event will announce.
int copenssl_session_pending(const copenssl_session *session);
/// Whether the handshake has completed.
int copenssl_session_established(const copenssl_session *session);
/// Sends close_notify once, best effort; the socket is the caller's to close.
void copenssl_session_close_notify(copenssl_session *session);
/// Why the last call failed (an OpenSSL reason or errno text), for the log.
void copenssl_session_error(const copenssl_session *session, char *buffer, size_t length);
/// "TLSv1.3" or "TLSv1.2" once the handshake is done.
const char *copenssl_session_version(const copenssl_session *session);

#ifdef __cplusplus
}
#endif

#endif
