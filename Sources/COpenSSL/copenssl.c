#define _GNU_SOURCE
#include "COpenSSL.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

struct copenssl_context {
    SSL_CTX *ctx;
};

struct copenssl_session {
    SSL *ssl;
    /// The OpenSSL error, or 0 with `last_errno` for a failed system call.
    unsigned long last_error;
    int last_errno;
    int notified;
};

// Forward secrecy and AEAD only for TLS 1.2 (Mozilla's "intermediate" list without DHE,
// which would need parameters); TLS 1.3's suites are OpenSSL's defaults, all AEAD.
static const char *const tls12_ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

static void report(char *error, size_t length, const char *what, const char *path) {
    unsigned long code = ERR_peek_last_error();
    char reason[256] = "";
    if (code != 0) {
        ERR_error_string_n(code, reason, sizeof reason);
    } else if (errno != 0) {
        snprintf(reason, sizeof reason, "%s", strerror(errno));
    }
    if (path) {
        snprintf(error, length, "%s %s: %s", what, path, reason[0] ? reason : "unknown error");
    } else {
        snprintf(error, length, "%s: %s", what, reason[0] ? reason : "unknown error");
    }
    ERR_clear_error();
}

// An encrypted key would make OpenSSL prompt on the terminal; a service must fail instead.
static int no_passphrase(char *buffer, int size, int rwflag, void *userdata) {
    (void)buffer; (void)size; (void)rwflag; (void)userdata;
    return -1;
}

copenssl_context *copenssl_context_new(const char *certificate_path, const char *key_path,
                                       const char *client_ca_path, char *error, size_t error_length) {
    ERR_clear_error();
    errno = 0;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        report(error, error_length, "creating the TLS context", NULL);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION
                                 | SSL_OP_IGNORE_UNEXPECTED_EOF);
    // The Swift side may move its outbound buffer between a short write and its retry.
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"ich-triage", 10);
    if (SSL_CTX_set_cipher_list(ctx, tls12_ciphers) != 1) {
        report(error, error_length, "setting the cipher list", NULL);
        goto fail;
    }
    errno = 0;
    if (SSL_CTX_use_certificate_chain_file(ctx, certificate_path) != 1) {
        report(error, error_length, "reading the certificate", certificate_path);
        goto fail;
    }
    errno = 0;
    if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1) {
        unsigned long code = ERR_peek_last_error();
        int mismatch = ERR_GET_LIB(code) == ERR_LIB_X509 && ERR_GET_REASON(code) == X509_R_KEY_VALUES_MISMATCH;
        report(error, error_length, mismatch ? "the certificate does not match the private key" : "reading the private key",
               key_path);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        report(error, error_length, "the private key does not match the certificate", NULL);
        goto fail;
    }
    if (client_ca_path) {
        errno = 0;
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(client_ca_path);
        if (!names || SSL_CTX_load_verify_locations(ctx, client_ca_path, NULL) != 1) {
            if (names) sk_X509_NAME_pop_free(names, X509_NAME_free);
            report(error, error_length, "reading the client CA bundle", client_ca_path);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    copenssl_context *context = malloc(sizeof *context);
    if (!context) {
        snprintf(error, error_length, "out of memory");
        goto fail;
    }
    context->ctx = ctx;
    return context;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

void copenssl_context_free(copenssl_context *context) {
    if (!context) return;
    SSL_CTX_free(context->ctx);
    free(context);
}

long long copenssl_context_not_after(const copenssl_context *context) {
    X509 *leaf = SSL_CTX_get0_certificate(context->ctx);
    if (!leaf) return -1;
    struct tm parts;
    if (ASN1_TIME_to_tm(X509_get0_notAfter(leaf), &parts) != 1) return -1;
    return (long long)timegm(&parts);
}

copenssl_session *copenssl_session_new(copenssl_context *context, int fd) {
    copenssl_session *session = calloc(1, sizeof *session);
    if (!session) return NULL;
    session->ssl = SSL_new(context->ctx);
    if (!session->ssl || SSL_set_fd(session->ssl, fd) != 1) {
        SSL_free(session->ssl);
        free(session);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_accept_state(session->ssl);
    return session;
}

void copenssl_session_free(copenssl_session *session) {
    if (!session) return;
    SSL_free(session->ssl);
    free(session);
}

static long status_of(copenssl_session *session, int result) {
    int code = SSL_get_error(session->ssl, result);
    switch (code) {
    case SSL_ERROR_WANT_READ: return COPENSSL_WANT_READ;
    case SSL_ERROR_WANT_WRITE: return COPENSSL_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN: return COPENSSL_CLOSED;
    case SSL_ERROR_SYSCALL:
        session->last_error = ERR_peek_last_error();
        session->last_errno = errno;
        ERR_clear_error();
        // With SSL_OP_IGNORE_UNEXPECTED_EOF a bare EOF is ZERO_RETURN; what is left is a real failure.
        return COPENSSL_FAILED;
    default: {
        unsigned long error = ERR_peek_last_error();
        session->last_error = error;
        session->last_errno = 0;
        ERR_clear_error();
        if (ERR_GET_LIB(error) == ERR_LIB_SSL && ERR_GET_REASON(error) == SSL_R_HTTP_REQUEST) return COPENSSL_PLAIN_HTTP;
        return COPENSSL_FAILED;
    }
    }
}

long copenssl_session_read(copenssl_session *session, void *buffer, size_t length) {
    ERR_clear_error();
    size_t count = 0;
    int result = SSL_read_ex(session->ssl, buffer, length, &count);
    if (result == 1) return (long)count;
    return status_of(session, result);
}

long copenssl_session_write(copenssl_session *session, const void *buffer, size_t length) {
    if (length == 0) return 0;
    ERR_clear_error();
    size_t count = 0;
    int result = SSL_write_ex(session->ssl, buffer, length, &count);
    if (result == 1) return (long)count;
    return status_of(session, result);
}

int copenssl_session_pending(const copenssl_session *session) {
    return SSL_pending(session->ssl);
}

int copenssl_session_established(const copenssl_session *session) {
    return SSL_is_init_finished(session->ssl);
}

void copenssl_session_close_notify(copenssl_session *session) {
    if (session->notified || !SSL_is_init_finished(session->ssl)) return;
    session->notified = 1;
    ERR_clear_error();
    (void)SSL_shutdown(session->ssl);
    ERR_clear_error();
}

void copenssl_session_error(const copenssl_session *session, char *buffer, size_t length) {
    if (session->last_error != 0) {
        ERR_error_string_n(session->last_error, buffer, length);
    } else if (session->last_errno != 0) {
        snprintf(buffer, length, "%s", strerror(session->last_errno));
    } else {
        snprintf(buffer, length, "connection reset");
    }
}

const char *copenssl_session_version(const copenssl_session *session) {
    return SSL_get_version(session->ssl);
}
