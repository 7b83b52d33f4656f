#ifndef FTPSGATE_DATALINK_H
#define FTPSGATE_DATALINK_H
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>
#include <openssl/ssl.h>

#include "metrics.h"
#include "portpool.h"
#include "tls_engine.h"

/* One data transfer (DESIGN.md §3–4): a passive listener for the client, the
 * client-facing endpoint (TLS server under PROT P, or clear) and the
 * backend-facing endpoint (plain), with a pump each way that stops reading
 * its source while its sink is above the high mark.
 *
 * The owner (a session) learns the outcome once, through done_cb: code 0 when
 * every byte of the transfer was delivered (download: close_notify/FIN sent to
 * the client; upload: FIN sent to the backend after the last byte), or an FTP
 * reply code (425, 426, 522) and text when it failed. The link frees itself
 * once all its handles are closed; after datalink_detach the owner must not
 * touch it again and gets no callback. */

typedef struct datalink datalink_t;

typedef void (*datalink_done_cb)(void *owner, int code, const char *text);

typedef struct {
    const struct sockaddr *listen_addr; /* address to bind the passive listener on (port ignored) */
    const struct sockaddr *client_addr; /* the control connection's peer */
    int check_peer_ip;                  /* only accept data connections from client_addr's IP */
    const struct sockaddr *backend_addr;/* backend data port to connect to */
    portpool_t *pool;
    SSL_CTX *tls;                       /* NULL: clear data channel (PROT C) */
    unsigned connect_timeout_ms;
    unsigned stall_timeout_s;           /* no byte either way for this long: 426 */
    unsigned long long session_id;      /* for logs */
    const char *peer;                   /* for logs */
    metrics_t *metrics;
    const tls_sni_t *sni;               /* borrowed from the listener */
    const unsigned char *tls_token;     /* the control connection's session token (tls_engine.h) */
    int require_session_reuse;          /* data TLS must resume the control session */
} datalink_opts_t;

/* Opens the passive listener. Returns FG_OK and *out, FG_RANGE when the pool
 * has no free port, FG_IO when no port could be bound. */
int datalink_new(uv_loop_t *loop, const datalink_opts_t *opts, datalink_done_cb cb, void *owner,
                 datalink_t **out);

uint16_t datalink_port(const datalink_t *dl);

/* Called when the transfer command is forwarded: which way the bytes go
 * decides which end completes the transfer. */
void datalink_set_direction(datalink_t *dl, int upload);

/* Payload bytes moved so far, for STAT during a transfer. */
void datalink_progress(const datalink_t *dl, uint64_t *to_client, uint64_t *to_backend);

/* The owner is gone or no longer wants this link: tear it down (reset) unless
 * it already finished, and free it when its handles are closed. */
void datalink_detach(datalink_t *dl);

#endif
