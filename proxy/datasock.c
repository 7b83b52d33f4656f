#include "datasock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fgerr.h"
#include "log.h"
#include "netaddr.h"
#include "policy.h"
#include "transparent.h"

#define DATASOCK_BIND_ATTEMPTS 16
#define DATASOCK_BACKLOG 4

struct datasock {
    uv_tcp_t tcp;
    portpool_t *pool; /* NULL: an ephemeral port */
    uint16_t port;
    int has_expect, reported;
    struct sockaddr_storage expect;
    datasock_opts_t o;
    char peer[72];
};

static const tstream_cbs_t no_cbs = {0};

static void on_sock_closed(uv_handle_t *h)
{
    datasock_t *ds = h->data;
    if (ds->pool)
        portpool_release(ds->pool, ds->port);
    if (ds->reported && ds->o.on_closed)
        ds->o.on_closed(ds->o.owner);
    free(ds);
}

static void on_connection(uv_stream_t *server, int status)
{
    datasock_t *ds = server->data;
    if (status < 0 || uv_is_closing((uv_handle_t *)&ds->tcp))
        return;
    tstream_t *st = tstream_new(ds->o.loop, &no_cbs, NULL);
    if (!st)
        return;
    struct sockaddr_storage peer;
    int plen = sizeof peer;
    if (uv_accept(server, tstream_uv(st)) != 0 ||
        uv_tcp_getpeername(tstream_tcp(st), (struct sockaddr *)&peer, &plen) != 0) {
        tstream_close(st, 1);
        return;
    }
    /* SECURITY: data-port theft (RFC 2577 §3, "PASV hijacking"): only the
     * expected peer IP may connect; others are reset and the port waits on. */
    if (!policy_data_peer_allowed(ds->has_expect ? (const struct sockaddr *)&ds->expect : NULL,
                                  (const struct sockaddr *)&peer)) {
        char ip[64];
        netaddr_format_ip((const struct sockaddr *)&peer, ip, sizeof ip);
        METRIC_INC(ds->o.metrics, data_peer_refused);
        LOG_WARN(ds->o.sid, ds->peer, "SECURITY: refused %s data connection from %s (not the expected IP)",
                 ds->o.what, ip);
        tstream_close(st, 1);
        return;
    }
    tstream_set_connected(st);
    ds->o.on_accept(ds->o.owner, st);
}

static datasock_t *sock_new(const datasock_opts_t *o)
{
    datasock_t *ds = calloc(1, sizeof *ds);
    if (!ds)
        return NULL;
    ds->o = *o;
    snprintf(ds->peer, sizeof ds->peer, "%s", o->peer ? o->peer : "");
    ds->o.peer = ds->peer;
    if (o->expect) {
        memcpy(&ds->expect, o->expect, netaddr_len(o->expect));
        ds->has_expect = 1;
    }
    return ds;
}

/* Binds and listens on o->addr with port; 0 or a libuv error. The handle is
 * initialised either way and must be closed by the caller. */
static int sock_bind_listen(datasock_t *ds, uint16_t port)
{
    struct sockaddr_storage sa;
    memcpy(&sa, ds->o.addr, netaddr_len(ds->o.addr));
    netaddr_set_port((struct sockaddr *)&sa, port);
    uv_tcp_init(ds->o.loop, &ds->tcp);
    ds->tcp.data = ds;
    int rc = transparent_bind(&ds->tcp, (struct sockaddr *)&sa, ds->o.transparent);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&ds->tcp, DATASOCK_BACKLOG, on_connection);
    return rc;
}

int datasock_listen_pool(const datasock_opts_t *o, portpool_t *pool, datasock_t **out, uint16_t *port)
{
    int last_rc = FG_RANGE;
    for (int attempt = 0; attempt < DATASOCK_BIND_ATTEMPTS; attempt++) {
        uint16_t p;
        if (portpool_acquire(pool, &p) != FG_OK)
            return last_rc;
        datasock_t *ds = sock_new(o);
        if (!ds) {
            portpool_release(pool, p);
            return FG_NOMEM;
        }
        ds->pool = pool;
        ds->port = p;
        if (sock_bind_listen(ds, p) == 0) {
            ds->reported = 1;
            *out = ds;
            *port = p;
            return FG_OK;
        }
        /* Taken by something else on the host: the port returns to the pool
         * once closed, and the next one is tried. */
        uv_close((uv_handle_t *)&ds->tcp, on_sock_closed);
        last_rc = FG_IO;
    }
    return last_rc;
}

int datasock_listen_any(const datasock_opts_t *o, datasock_t **out, struct sockaddr_storage *bound)
{
    datasock_t *ds = sock_new(o);
    if (!ds)
        return FG_NOMEM;
    int len = sizeof *bound;
    if (sock_bind_listen(ds, 0) != 0 || uv_tcp_getsockname(&ds->tcp, (struct sockaddr *)bound, &len) != 0) {
        uv_close((uv_handle_t *)&ds->tcp, on_sock_closed);
        return FG_IO;
    }
    ds->reported = 1;
    *out = ds;
    return FG_OK;
}

void datasock_close(datasock_t *ds)
{
    if (!uv_is_closing((uv_handle_t *)&ds->tcp))
        uv_close((uv_handle_t *)&ds->tcp, on_sock_closed);
}
