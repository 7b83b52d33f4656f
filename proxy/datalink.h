#ifndef FTPSGATE_DATALINK_H
#define FTPSGATE_DATALINK_H
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>
#include <openssl/ssl.h>

#include "config.h"
#include "datatls.h"
#include "metrics.h"
#include "portpool.h"

/* One data transfer (DESIGN.md §3–4): a client-facing endpoint (TLS server
 * under PROT P, or clear) and a backend-facing endpoint (plain), with a pump
 * each way that stops reading its source while its sink is above the high
 * mark.
 *
 * Client side:  passive (the client connects to a port of the pool) or
 *               active (the proxy connects to the client's PORT/EPRT address
 *               when the transfer command goes out; still the TLS server,
 *               RFC 4217 §7).
 * Backend side: connect (to the port of the backend's 227/229), or listen
 *               (the proxy sent PORT/EPRT; only the backend's IP may connect).
 *
 * The owner learns the outcome once, through done_cb, always from the event
 * loop (never inside a datalink_* call or a callback of the link's own
 * streams, so the owner may detach the link there): code 0 when every byte
 * was delivered (download: close_notify/FIN sent to the client; upload: FIN
 * sent to the backend after the last byte), or an FTP reply code (425, 426,
 * 522) and text; backend_failed says the backend's side broke first (its own
 * reply then tells the client why better than ours). The link frees itself
 * once its handles are closed; after datalink_detach the owner must not touch
 * it and gets no callback. */

typedef struct datalink datalink_t;

typedef void (*datalink_done_cb)(void *owner, int code, const char *text, int backend_failed);

typedef enum { DL_CLIENT_PASSIVE = 0, DL_CLIENT_ACTIVE } dl_client_mode_t;
typedef enum { DL_BACKEND_CONNECT = 0, DL_BACKEND_LISTEN } dl_backend_mode_t;

/* Everything a link needs, by value: the link keeps its own copy. */
typedef struct {
    dl_client_mode_t client_mode;
    struct sockaddr_storage listen_addr;   /* passive: bind address of the client-facing port (port ignored) */
    portpool_t *pool;                      /* passive: where that port comes from */
    struct sockaddr_storage client_addr;   /* the peer data connections come from (client or balancer) */
    int check_peer_ip;                     /* passive: only client_addr's IP may connect */
    struct sockaddr_storage client_target; /* active: the validated PORT/EPRT address */
    int has_active_source;
    struct sockaddr_storage active_source; /* active: local address to connect from */
    int transparent;                       /* listen_addr / active_source may be non-local (TPROXY) */
    int has_backend_source;
    struct sockaddr_storage backend_source;/* the client's address, to reach the backend from (port 0) */

    dl_backend_mode_t backend_mode;
    struct sockaddr_storage backend_addr;  /* connect: backend control peer (port set later);
                                              listen: the only IP allowed to connect */
    struct sockaddr_storage backend_local; /* listen: local address to bind (port 0: ephemeral) */

    datatls_t tls;                         /* tls.ctx NULL: clear data channel (PROT C) */
    int accept_upload_without_close_notify; /* a TLS upload ending in a bare FIN counts as complete */
    unsigned connect_timeout_ms;
    unsigned stall_timeout_s;              /* no byte either way for this long: 426 */
    uint64_t rate_limit;                   /* bytes/s each way (policy.rate_limit); 0: none */
    uint64_t max_upload_bytes;             /* policy.max_upload_bytes; 0: none */
    unsigned long long session_id;         /* for logs */
    char peer[72];                         /* for logs */
    metrics_t *metrics;
} datalink_opts_t;

/* Opens the listeners the modes need. Returns FG_OK and *out, FG_RANGE when
 * the passive pool has no free port, FG_IO when nothing could be bound. */
int datalink_new(uv_loop_t *loop, const datalink_opts_t *opts, datalink_done_cb cb, void *owner,
                 datalink_t **out);

/* Passive client side: the port the client must connect to. */
uint16_t datalink_client_port(const datalink_t *dl);
/* Listen backend side: the address to put in PORT/EPRT toward the backend. */
const struct sockaddr *datalink_backend_listen_addr(const datalink_t *dl);
/* Connect backend side: the port from the backend's 227/229. */
void datalink_set_backend_port(datalink_t *dl, uint16_t port);

/* Called when the transfer command is forwarded: which way the bytes go
 * decides which end completes the transfer; an active client is dialled now. */
void datalink_set_direction(datalink_t *dl, int upload);

/* The client data connection's TLS, once its handshake is done: 1 and the
 * protocol, cipher (static strings) and whether it resumed a session; 0 when
 * clear or not (yet) negotiated. */
int datalink_tls_info(const datalink_t *dl, const char **version, const char **cipher, int *resumed);

/* Payload bytes moved so far, for STAT during a transfer. */
void datalink_progress(const datalink_t *dl, uint64_t *to_client, uint64_t *to_backend);

/* The owner is gone or no longer wants this link: tear it down (reset) unless
 * it already finished, and free it when its handles are closed. */
void datalink_detach(datalink_t *dl);

#endif
