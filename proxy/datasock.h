#ifndef FTPSGATE_DATASOCK_H
#define FTPSGATE_DATASOCK_H
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "metrics.h"
#include "portpool.h"
#include "tstream.h"

/* A listening socket of a data link: a port of the listener's passive pool
 * (the client connects to it after PASV/EPSV), or an ephemeral port the
 * backend connects to after our PORT/EPRT. It hands the owner the first
 * connection from the expected peer; others are reset and it listens on
 * (SECURITY: data-port theft, RFC 2577 §3). A pool port returns to the pool
 * only once nothing listens on it. */

typedef struct datasock datasock_t;

/* accepted: a connected stream with no callbacks; the owner adopts it
 * (tstream_set_userdata). The socket keeps listening until closed. */
typedef void (*datasock_accept_cb)(void *owner, tstream_t *accepted);
/* The socket is closed and freed. */
typedef void (*datasock_closed_cb)(void *owner);

typedef struct {
    uv_loop_t *loop;
    const struct sockaddr *addr;   /* local address (its port is ignored) */
    int transparent;               /* addr may be another host's (IP_TRANSPARENT) */
    const struct sockaddr *expect; /* only this IP may connect; NULL: anyone */
    const char *what;              /* "client" or "backend", for the log */
    datasock_accept_cb on_accept;
    datasock_closed_cb on_closed;
    void *owner;
    metrics_t *metrics;            /* data_peer_refused */
    unsigned long long sid;
    const char *peer;
} datasock_opts_t;

/* A port of pool (a port taken by another program is skipped). FG_OK with
 * *out and *port, FG_RANGE when the pool is exhausted, FG_IO or FG_NOMEM. */
int datasock_listen_pool(const datasock_opts_t *o, portpool_t *pool, datasock_t **out, uint16_t *port);

/* An ephemeral port; *bound gets the address and port. FG_OK, FG_IO or FG_NOMEM. */
int datasock_listen_any(const datasock_opts_t *o, datasock_t **out, struct sockaddr_storage *bound);

/* Stops listening; on_closed follows (never from inside this call). */
void datasock_close(datasock_t *ds);

#endif
