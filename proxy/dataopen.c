#include "dataopen.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasock.h"
#include "defer.h"
#include "fgerr.h"
#include "log.h"
#include "netaddr.h"
#include "transparent.h"

typedef struct {
    dataopen_end_t spec;
    datasock_t *sock;     /* listening */
    tstream_t *dialling;  /* our connect, until it is handed over */
    uint16_t port;        /* listen: the port bound */
    struct sockaddr_storage bound;
    unsigned started : 1, port_known : 1;
} end_t;

struct dataopen {
    uv_loop_t *loop;
    const dataopen_cbs_t *cbs;
    void *owner;
    metrics_t *metrics;
    unsigned long long sid;
    char peer[72];
    end_t end[2];
    tstream_t *poke;
    defer_t closed_later; /* on_closed when dataopen_close finds nothing open */
    unsigned handles;
    unsigned stopped : 1, closed : 1, silent : 1, guard : 1;
};

/* What the client is told when a dial fails, by side: the dial could not
 * start for lack of memory, from the source address, or at all; or it did
 * not connect (logged with the reason). */
static const struct {
    const char *nomem, *source, *start, *refused;
    int start_backend_failed; /* a connect that cannot start or connect: the backend's side */
} texts[2] = {
    [DATAOPEN_CLIENT] = {"Cannot open data connection (out of memory)", "Cannot open data connection (source address)",
                         "Cannot open data connection", "Cannot open data connection", 0},
    [DATAOPEN_BACKEND] = {"Cannot open data connection (out of memory)",
                          "Cannot open data connection from the client's address",
                          "Cannot open data connection to the server", "Cannot open data connection to the server", 1},
};

static const tstream_cbs_t no_cbs = {0};

/* ---- lifetime ------------------------------------------------------------------------ */

static void open_free(dataopen_t *o)
{
    defer_cancel(&o->closed_later);
    free(o);
}

static void report_closed(defer_t *d)
{
    dataopen_t *o = (dataopen_t *)((char *)d - offsetof(dataopen_t, closed_later));
    o->cbs->on_closed(o->owner);
    open_free(o);
}

/* A handle of ours is closed (or a connection left us): the last one after
 * dataopen_close frees us. Called from close callbacks only. */
static void release(dataopen_t *o)
{
    o->handles--;
    if (!o->closed || o->handles > 0)
        return;
    if (o->silent) {
        open_free(o);
        return;
    }
    o->cbs->on_closed(o->owner);
    open_free(o);
}

static void on_sock_closed(void *owner)
{
    release(owner);
}

/* ---- listening -------------------------------------------------------------------------- */

static void hand_over(dataopen_t *o, dataopen_side_t side, tstream_t *s)
{
    tstream_set_userdata(s, &no_cbs, NULL);
    o->end[side].started = 1;
    o->cbs->on_connected(o->owner, side, s);
}

static void accepted(dataopen_t *o, dataopen_side_t side, tstream_t *s)
{
    /* One connection per end: the port closes once it has come. */
    datasock_close(o->end[side].sock);
    o->end[side].sock = NULL;
    hand_over(o, side, s);
}

static void on_client_accepted(void *owner, tstream_t *s)
{
    accepted(owner, DATAOPEN_CLIENT, s);
}

static void on_backend_accepted(void *owner, tstream_t *s)
{
    accepted(owner, DATAOPEN_BACKEND, s);
}

static int listen_end(dataopen_t *o, dataopen_side_t side)
{
    end_t *e = &o->end[side];
    datasock_opts_t so = {
        .loop = o->loop,
        .addr = (const struct sockaddr *)&e->spec.addr,
        .transparent = e->spec.transparent, /* TPROXY: the server's address, not ours */
        .expect = e->spec.has_expect ? (const struct sockaddr *)&e->spec.expect : NULL,
        .what = side == DATAOPEN_CLIENT ? "client" : "backend",
        .on_accept = side == DATAOPEN_CLIENT ? on_client_accepted : on_backend_accepted,
        .on_closed = on_sock_closed,
        .owner = o,
        .metrics = o->metrics,
        .sid = o->sid,
        .peer = o->peer,
    };
    int rc = e->spec.pool ? datasock_listen_pool(&so, e->spec.pool, &e->sock, &e->port)
                          : datasock_listen_any(&so, &e->sock, &e->bound);
    if (rc == FG_OK)
        o->handles++;
    return rc;
}

int dataopen_new(uv_loop_t *loop, const dataopen_end_t *client, const dataopen_end_t *backend, metrics_t *metrics,
                 unsigned long long sid, const char *peer, const dataopen_cbs_t *cbs, void *owner,
                 dataopen_t **out)
{
    dataopen_t *o = calloc(1, sizeof *o);
    if (!o)
        return FG_NOMEM;
    o->loop = loop;
    o->cbs = cbs;
    o->owner = owner;
    o->metrics = metrics;
    o->sid = sid;
    snprintf(o->peer, sizeof o->peer, "%s", peer);
    o->end[DATAOPEN_CLIENT].spec = *client;
    o->end[DATAOPEN_BACKEND].spec = *backend;
    int rc = FG_OK;
    for (int side = DATAOPEN_CLIENT; side <= DATAOPEN_BACKEND && rc == FG_OK; side++)
        if (!o->end[side].spec.dial)
            rc = listen_end(o, side);
    if (rc != FG_OK) {
        /* Gone once what was opened is closed, without a word. */
        o->silent = 1;
        dataopen_stop(o);
        o->closed = 1;
        if (o->handles == 0)
            open_free(o);
        return rc;
    }
    *out = o;
    return FG_OK;
}

uint16_t dataopen_client_port(const dataopen_t *o)
{
    return o->end[DATAOPEN_CLIENT].port;
}

const struct sockaddr *dataopen_backend_listen_addr(const dataopen_t *o)
{
    return (const struct sockaddr *)&o->end[DATAOPEN_BACKEND].bound;
}

/* ---- dialling ----------------------------------------------------------------------------- */

static void on_dial_close(tstream_t *s)
{
    release(tstream_userdata(s));
}

static void on_dial_connect(tstream_t *s, int status)
{
    dataopen_t *o = tstream_userdata(s);
    dataopen_side_t side = s == o->end[DATAOPEN_CLIENT].dialling ? DATAOPEN_CLIENT : DATAOPEN_BACKEND;
    o->end[side].dialling = NULL;
    if (status < 0) {
        if (side == DATAOPEN_CLIENT)
            LOG_INFO(o->sid, o->peer, "cannot connect to the client's data port: %s", uv_strerror(status));
        else
            LOG_WARN(o->sid, o->peer, "cannot connect to backend data port: %s", uv_strerror(status));
        tstream_close(s, 1);
        dataopen_failure_t f = {425, texts[side].refused, texts[side].start_backend_failed};
        o->cbs->on_failed(o->owner, &f);
        return;
    }
    o->handles--; /* the owner's from now on */
    hand_over(o, side, s);
}

static const tstream_cbs_t dial_cbs = {
    .on_connect = on_dial_connect,
    .on_close = on_dial_close,
};

static int dial_failed(dataopen_failure_t *f, const char *text, int backend_failed)
{
    *f = (dataopen_failure_t){425, text, backend_failed};
    return FG_IO;
}

void dataopen_set_port(dataopen_t *o, uint16_t port)
{
    end_t *e = &o->end[DATAOPEN_BACKEND];
    netaddr_set_port((struct sockaddr *)&e->spec.addr, port);
    e->port_known = 1;
}

int dataopen_dial(dataopen_t *o, dataopen_side_t side, dataopen_failure_t *f)
{
    end_t *e = &o->end[side];
    if (!e->spec.dial || e->started || o->stopped || (side == DATAOPEN_BACKEND && !e->port_known))
        return FG_OK;
    tstream_t *s = tstream_new(o->loop, &dial_cbs, o);
    if (!s)
        return dial_failed(f, texts[side].nomem, 0);
    e->started = 1;
    e->dialling = s;
    o->handles++;
    if (e->spec.has_source &&
        transparent_bind(tstream_tcp(s), (const struct sockaddr *)&e->spec.source, e->spec.transparent) != 0)
        return dial_failed(f, texts[side].source, 0);
    if (tstream_connect(s, (const struct sockaddr *)&e->spec.addr) != FG_OK)
        return dial_failed(f, texts[side].start, texts[side].start_backend_failed);
    if (side == DATAOPEN_BACKEND && o->guard)
        tstream_reset_if_killed(s); /* the socket exists once the connect started */
    return FG_OK;
}

void dataopen_guard_upload(dataopen_t *o)
{
    o->guard = 1;
    if (o->end[DATAOPEN_BACKEND].dialling)
        tstream_reset_if_killed(o->end[DATAOPEN_BACKEND].dialling);
}

static void poke_on_connect(tstream_t *s, int status)
{
    (void)status;
    tstream_close(s, 1);
}

static void poke_on_close(tstream_t *s)
{
    dataopen_t *o = tstream_userdata(s);
    o->poke = NULL;
    release(o);
}

static const tstream_cbs_t poke_cbs = {
    .on_connect = poke_on_connect,
    .on_close = poke_on_close,
};

void dataopen_poke_backend(dataopen_t *o)
{
    end_t *e = &o->end[DATAOPEN_BACKEND];
    if (!e->spec.dial || e->started || !e->port_known || o->closed)
        return;
    e->started = 1;
    tstream_t *s = tstream_new(o->loop, &poke_cbs, o);
    if (!s)
        return;
    o->poke = s;
    o->handles++;
    if (tstream_connect(s, (const struct sockaddr *)&e->spec.addr) != FG_OK)
        tstream_close(s, 1);
}

/* ---- stop ------------------------------------------------------------------------------------- */

void dataopen_stop(dataopen_t *o)
{
    o->stopped = 1;
    for (int side = DATAOPEN_CLIENT; side <= DATAOPEN_BACKEND; side++) {
        end_t *e = &o->end[side];
        if (e->sock) {
            datasock_close(e->sock);
            e->sock = NULL;
        }
        if (e->dialling) {
            /* SECURITY: reset, not FIN: nothing was sent on it, and the peer
             * must not take it for a finished transfer. */
            tstream_close(e->dialling, 1);
            e->dialling = NULL;
        }
    }
}

void dataopen_close(dataopen_t *o)
{
    if (o->closed)
        return;
    dataopen_stop(o);
    o->closed = 1;
    if (o->handles == 0)
        defer_call(&o->closed_later, report_closed);
}
