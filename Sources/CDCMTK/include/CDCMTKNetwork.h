// A DICOM C-ECHO / C-STORE service class provider on DCMTK's dcmnet: a listener,
// one association at a time per caller thread, each stored instance handed out
// as Part-10 bytes in memory. Who may connect and what a store answers are the
// Swift side's decisions; no DCMTK type crosses this header.
#ifndef CDCMTK_NETWORK_H
#define CDCMTK_NETWORK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cdcmtk_listener cdcmtk_listener;
typedef struct cdcmtk_association cdcmtk_association;

/// Binds `port` on every interface; an association request must arrive whole within
/// `timeout_seconds` of its connection (the ARTIM timer). NULL on failure, with a reason in `error`.
cdcmtk_listener *cdcmtk_listener_open(int port, int timeout_seconds, char *error, size_t error_length);
void cdcmtk_listener_close(cdcmtk_listener *listener);

/// Waits up to `wait_seconds` for a connection and reads its association request:
/// 1 with `*out` set, 0 when none came, -1 when a request arrived but could not be
/// read (`error` says why).
int cdcmtk_listener_accept(cdcmtk_listener *listener, int wait_seconds, long max_pdu,
                           cdcmtk_association **out, char *error, size_t error_length);

const char *cdcmtk_association_calling_ae(const cdcmtk_association *association);
const char *cdcmtk_association_called_ae(const cdcmtk_association *association);
/// The peer's IP address, numeric.
const char *cdcmtk_association_peer_host(const cdcmtk_association *association);

typedef enum {
    CDCMTK_REJECT_CALLING_AE = 1,
    CDCMTK_REJECT_CALLED_AE = 2,
    /// Transient: too many associations open now.
    CDCMTK_REJECT_BUSY = 3
} cdcmtk_reject_reason;

/// Sends A-ASSOCIATE-RJ and drops the connection.
void cdcmtk_association_reject(cdcmtk_association *association, cdcmtk_reject_reason reason);

/// Accepts Verification and every storage SOP class, each in the first of the
/// transfer syntaxes we decode that the peer proposed (lossless first), and
/// acknowledges. Returns how many contexts were accepted, -1 on a network failure.
int cdcmtk_association_accept(cdcmtk_association *association, char *error, size_t error_length);

/// Called for each C-STORE with the instance as a Part-10 file; returns the DIMSE status to answer.
typedef uint16_t (*cdcmtk_store_handler)(void *context, const uint8_t *bytes, size_t length);
/// Called for each command served (0x0030 C-ECHO, 0x0001 C-STORE, other values refused) with its status.
typedef void (*cdcmtk_command_observer)(void *context, uint16_t command, uint16_t status);

typedef enum {
    CDCMTK_ENDED_RELEASE = 0,
    CDCMTK_ENDED_ABORT = 1,
    /// Nothing arrived within the DIMSE timeout: aborted.
    CDCMTK_ENDED_TIMEOUT = 2,
    CDCMTK_ENDED_ERROR = 3,
    /// `cdcmtk_association_stop` was called: aborted after the command in progress.
    CDCMTK_ENDED_STOPPED = 4
} cdcmtk_association_end;

/// Serves commands until the peer releases or aborts, `timeout_seconds` pass
/// without a message, or a stop is asked for (checked at least once a second).
cdcmtk_association_end cdcmtk_association_serve(cdcmtk_association *association, int timeout_seconds,
                                                cdcmtk_store_handler store, cdcmtk_command_observer observe, void *context);
/// Safe from another thread.
void cdcmtk_association_stop(cdcmtk_association *association);
void cdcmtk_association_free(cdcmtk_association *association);

/// A C-STORE SCU: associates as `calling_ae` with `called_ae` at host:port, proposes the object's SOP
/// class in its own transfer syntax (and explicit/implicit little endian), stores it and releases.
/// Returns 0 and the peer's DIMSE status in `*status`, or -1 when no response came (refused
/// association, network failure, timeout); `error` says why in either failure.
int cdcmtk_store_scu(const char *host, int port, const char *calling_ae, const char *called_ae, const uint8_t *bytes,
                     size_t length, int timeout_seconds, uint16_t *status, char *error, size_t error_length);

#ifdef __cplusplus
}
#endif

#endif
