#include "datalink.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fgerr.h"
#include "log.h"
#include "netaddr.h"
#include "tls_engine.h"
#include "transparent.h"
#include "tstream.h"

#define DATALINK_LINGER_MS 3000
#define DATALINK_BIND_ATTEMPTS 16

enum { DIR_UNKNOWN = -1, DIR_DOWNLOAD = 0, DIR_UPLOAD = 1 };

typedef struct {
    uv_tcp_t tcp;
    struct datalink *dl;
    uint16_t port;
    int from_pool;
} lsock_t;

/* One chunk read from a side whose peer endpoint does not exist yet (an
 * active backend or a passive client still to connect): kept here while that
 * side is paused, written as soon as the peer appears. */
typedef struct {
    char *data;
    size_t len;
} stash_t;

struct datalink {
    uv_loop_t *loop;
    datalink_done_cb cb;
    void *owner;
    dl_client_mode_t client_mode;
    dl_backend_mode_t backend_mode;
    portpool_t *pool;
    lsock_t *client_lsn, *backend_lsn;
    uint16_t client_port;
    struct sockaddr_storage client_addr, client_target, active_source, backend_addr, backend_listen;
    int check_peer_ip, has_active_source, backend_port_known, transparent, has_backend_source;
    struct sockaddr_storage backend_source;
    SSL_CTX *tls;
    const tls_sni_t *sni;
    unsigned char tls_token[TLS_ENGINE_TOKEN_LEN];
    int require_session_reuse, accept_fin_upload;
    unsigned connect_timeout_ms, stall_timeout_s, stalled_s;
    tstream_t *client, *backend;
    stash_t stash_c2b, stash_b2c;
    uv_timer_t timer;
    int direction;
    unsigned handles;
    unsigned finished : 1, detached : 1, failed : 1, lingering : 1, timer_closing : 1,
        c2b_ended : 1, c2b_clean : 1, b2c_ended : 1, b2c_clean : 1, client_shut : 1,
        backend_shut : 1, client_up : 1, backend_up : 1, backend_started : 1, running : 1;
    unsigned long long sid;
    char peer[72];
    uint64_t bytes_c2b, bytes_b2c, progress_mark;
    metrics_t *metrics;
};

static void dl_handle_closed(uv_handle_t *h);
static void on_stall_tick(uv_timer_t *t);
static void on_connect_timeout(uv_timer_t *t);
static void dl_maybe_connect_backend(datalink_t *dl);

/* ---- lifetime ---------------------------------------------------------------- */

/* Freed only once detached and every handle is closed; the timer goes last
 * because lingering after a good transfer uses it. */
static void dl_maybe_free(datalink_t *dl)
{
    if (!dl->detached)
        return;
    if (!dl->client && !dl->backend && !dl->client_lsn && !dl->backend_lsn && !dl->timer_closing) {
        dl->timer_closing = 1;
        uv_close((uv_handle_t *)&dl->timer, dl_handle_closed);
        return;
    }
    if (dl->handles == 0) {
        free(dl->stash_c2b.data);
        free(dl->stash_b2c.data);
        free(dl);
    }
}

static void dl_handle_closed(uv_handle_t *h)
{
    datalink_t *dl = h->data;
    dl->handles--;
    dl_maybe_free(dl);
}

static void lsock_closed(uv_handle_t *h)
{
    lsock_t *ls = (lsock_t *)h;
    datalink_t *dl = ls->dl;
    /* A pool port returns only once nothing listens on it. */
    if (ls->from_pool)
        portpool_release(dl->pool, ls->port);
    free(ls);
    dl->handles--;
    dl_maybe_free(dl);
}

static void dl_close_lsock(lsock_t **slot)
{
    if (*slot) {
        uv_close((uv_handle_t *)&(*slot)->tcp, lsock_closed);
        *slot = NULL;
    }
}

static void dl_close_streams(datalink_t *dl, int reset)
{
    if (dl->client)
        tstream_close(dl->client, reset);
    if (dl->backend)
        tstream_close(dl->backend, reset);
}

static void dl_report(datalink_t *dl, int code, const char *text)
{
    datalink_done_cb cb = dl->cb;
    dl->cb = NULL;
    if (cb && !dl->detached)
        cb(dl->owner, code, text);
}

static void poke_on_connect(tstream_t *s, int status)
{
    (void)status;
    tstream_close(s, 1);
}

static void poke_on_close(tstream_t *s)
{
    datalink_t *dl = tstream_userdata(s);
    dl->backend = NULL;
    dl->handles--;
    dl_maybe_free(dl);
}

static const tstream_cbs_t poke_cbs = {
    .on_connect = poke_on_connect,
    .on_close = poke_on_close,
};

/* The client never brought a usable data connection, but a passive backend
 * already has the transfer command and waits (for minutes) on its port.
 * Connecting and resetting makes it fail the transfer now, so its final reply
 * comes promptly and the session goes on. */
static void dl_poke_backend(datalink_t *dl)
{
    if (dl->backend_mode != DL_BACKEND_CONNECT || dl->backend_started || dl->backend ||
        !dl->backend_port_known)
        return;
    dl->backend_started = 1;
    tstream_t *bs = tstream_new(dl->loop, &poke_cbs, dl);
    if (!bs)
        return;
    dl->backend = bs;
    dl->handles++;
    if (tstream_connect(bs, (const struct sockaddr *)&dl->backend_addr) != FG_OK)
        tstream_close(bs, 1);
}

static void dl_account(datalink_t *dl, int ok)
{
    if (ok)
        dl->metrics->transfers_ok++;
    else
        dl->metrics->transfers_failed++;
    dl->metrics->bytes_to_backend += dl->bytes_c2b;
    dl->metrics->bytes_to_client += dl->bytes_b2c;
}

static void dl_fail(datalink_t *dl, int code, const char *text)
{
    if (dl->finished)
        return;
    dl->finished = 1;
    dl->failed = 1;
    dl_account(dl, 0);
    if (code == 522)
        dl->metrics->data_tls_failures++;
    /* Counted as read: on a failure some of the backend's bytes never reached the client. */
    LOG_INFO(dl->sid, dl->peer,
             "data transfer failed (%d %s); %llu bytes read from the client, %llu from the backend", code, text,
             (unsigned long long)dl->bytes_c2b, (unsigned long long)dl->bytes_b2c);
    uv_timer_stop(&dl->timer);
    dl_close_lsock(&dl->client_lsn);
    dl_close_lsock(&dl->backend_lsn);
    /* SECURITY: reset, not FIN, so the backend cannot take a cut upload as complete. */
    dl_close_streams(dl, 1);
    if (dl->direction != DIR_UNKNOWN)
        dl_poke_backend(dl);
    dl_report(dl, code, text);
}

static void dl_linger_check(datalink_t *dl)
{
    /* After success each side is closed once its reading ended and our
     * shutdown went out, so neither peer sees a reset after a good transfer. */
    if (dl->client && !tstream_closing(dl->client) && tstream_ended(dl->client) &&
        tstream_shutdown_done(dl->client))
        tstream_close(dl->client, 0);
    if (dl->backend && !tstream_closing(dl->backend) && tstream_ended(dl->backend) &&
        tstream_shutdown_done(dl->backend))
        tstream_close(dl->backend, 0);
}

static void on_linger_timeout(uv_timer_t *t)
{
    datalink_t *dl = t->data;
    dl_close_streams(dl, 0);
}

static void dl_evaluate(datalink_t *dl)
{
    if (dl->finished) {
        if (dl->lingering)
            dl_linger_check(dl);
        return;
    }
    int done = 0;
    if (dl->direction == DIR_DOWNLOAD)
        done = dl->b2c_ended && dl->b2c_clean && dl->client_shut;
    else if (dl->direction == DIR_UPLOAD)
        done = dl->c2b_ended && dl->c2b_clean && dl->backend_shut;
    if (!done)
        return;
    dl->finished = 1;
    dl->lingering = 1;
    dl_account(dl, 1);
    LOG_DEBUG(dl->sid, dl->peer, "data transfer complete: %llu bytes to backend, %llu to client",
              (unsigned long long)dl->bytes_c2b, (unsigned long long)dl->bytes_b2c);
    if (dl->client)
        tstream_shutdown(dl->client);
    if (dl->backend)
        tstream_shutdown(dl->backend);
    uv_timer_start(&dl->timer, on_linger_timeout, DATALINK_LINGER_MS, 0);
    dl_report(dl, 0, NULL);
    dl_linger_check(dl);
}

/* Both ends are connected: from now on the timer watches for stalls. */
static void dl_check_running(datalink_t *dl)
{
    if (dl->running || dl->finished || !dl->client_up || !dl->backend_up)
        return;
    dl->running = 1;
    uv_timer_start(&dl->timer, on_stall_tick, 1000, 1000);
}

/* ---- pumps -------------------------------------------------------------------- */

static int dl_stash(datalink_t *dl, stash_t *st, tstream_t *source, const char *buf, size_t len)
{
    char *p = realloc(st->data, st->len + len);
    if (!p) {
        dl_fail(dl, 426, "Out of memory; transfer aborted");
        return -1;
    }
    memcpy(p + st->len, buf, len);
    st->data = p;
    st->len += len;
    tstream_pause(source);
    return 0;
}

/* A sink endpoint now exists: what waited for it goes first, then its source reads again. */
static void dl_unstash(datalink_t *dl, stash_t *st, tstream_t *sink, tstream_t *source)
{
    if (st->len) {
        int rc = tstream_write(sink, st->data, st->len);
        free(st->data);
        st->data = NULL;
        st->len = 0;
        if (rc != FG_OK) { /* never a transfer that ends "clean" without these bytes */
            dl_fail(dl, 426, "Connection closed; transfer aborted");
            return;
        }
    }
    if (source && tstream_queued(sink) <= TSTREAM_HIGH_MARK)
        tstream_resume(source);
}

static void pump(datalink_t *dl, tstream_t *source, tstream_t *sink, stash_t *st, const char *buf,
                 size_t len)
{
    if (!sink) {
        dl_stash(dl, st, source, buf, len);
        return;
    }
    if (tstream_write(sink, buf, len) != FG_OK) {
        dl_fail(dl, 426, "Connection closed; transfer aborted");
        return;
    }
    if (tstream_queued(sink) > TSTREAM_HIGH_MARK)
        tstream_pause(source);
}

/* ---- client side ---------------------------------------------------------------- */

static void client_on_handshake(tstream_t *s)
{
    datalink_t *dl = tstream_userdata(s);
    int resumed = tls_engine_resumed_with_token(tstream_engine(s), dl->tls_token);
    /* Another connection's session is not resumed at all (the token is the
     * session id context), so what tells it from a client that does not reuse
     * is whether its ClientHello offered one. */
    int foreign = !resumed && (SSL_session_reused(tstream_ssl(s)) || tls_engine_offered_session(tstream_engine(s)));
    LOG_DEBUG(dl->sid, dl->peer, "data TLS established (%s, %s)", tstream_tls_desc(s),
              resumed ? "resumed the control session"
                      : foreign ? "offered ANOTHER session" : "new session");
    /* SECURITY: data-connection theft with a TLS session of its own (RFC 4217
     * §10.2): only a resumption of this control connection's session proves
     * the data connection comes from the same client. */
    /* A data connection's own new session (a full handshake) is never resumed
     * by design: out of the server cache at once, or TLS 1.2 clients that do
     * not reuse would fill it for the 7 days of a control session. */
    if (!SSL_session_reused(tstream_ssl(s)))
        tls_session_forget(dl->tls, tls_engine_get1_session(tstream_engine(s)));
    if (dl->require_session_reuse && !resumed) {
        LOG_WARN(dl->sid, dl->peer, "SECURITY: data TLS did not resume the control session (%s); refused",
                 foreign ? "another connection's session" : "full handshake");
        dl_fail(dl, 522, "Data connection must resume the control connection's TLS session");
    }
}

static void client_on_data(tstream_t *s, const char *buf, size_t len)
{
    datalink_t *dl = tstream_userdata(s);
    dl->bytes_c2b += len;
    pump(dl, s, dl->backend, &dl->stash_c2b, buf, len);
}

static void client_on_end(tstream_t *s, tstream_end_t how, const char *reason)
{
    datalink_t *dl = tstream_userdata(s);
    /* Policy "upload_requires_close_notify": false — a bare FIN after the
     * handshake ends the upload (vsftpd's strict_ssl_read_eof=NO). */
    if (how == TSTREAM_END_TRUNCATED && dl->accept_fin_upload && tstream_handshake_done(s) &&
        dl->direction != DIR_DOWNLOAD) {
        LOG_INFO(dl->sid, dl->peer, "upload ended without TLS close_notify; accepted by policy");
        how = TSTREAM_END_CLEAN;
    }
    dl->c2b_ended = 1;
    dl->c2b_clean = how == TSTREAM_END_CLEAN;
    if (dl->finished) {
        dl_evaluate(dl);
        return;
    }
    if (how == TSTREAM_END_TLS_FAILED && !tstream_handshake_done(s)) {
        LOG_WARN(dl->sid, dl->peer, "data TLS handshake failed: %s", reason);
        dl_fail(dl, 522, "Data connection TLS handshake failed");
        return;
    }
    if (how == TSTREAM_END_CLEAN) {
        if (dl->backend && !dl->stash_c2b.len)
            tstream_shutdown(dl->backend);
        dl_evaluate(dl);
        return;
    }
    if (how == TSTREAM_END_TRUNCATED && dl->direction == DIR_DOWNLOAD)
        return; /* the client stops sending; what we send it still counts */
    LOG_INFO(dl->sid, dl->peer, "client data connection ended badly: %s", reason);
    dl_fail(dl, 426, "Data connection closed abnormally; transfer aborted");
}

static void client_on_drain(tstream_t *s)
{
    datalink_t *dl = tstream_userdata(s);
    if (dl->backend)
        tstream_resume(dl->backend);
}

static void client_on_shutdown(tstream_t *s, int status)
{
    datalink_t *dl = tstream_userdata(s);
    if (status < 0 && !dl->finished) {
        dl_fail(dl, 426, "Data connection to client failed; transfer aborted");
        return;
    }
    dl->client_shut = 1;
    dl_evaluate(dl);
}

static void client_on_close(tstream_t *s)
{
    datalink_t *dl = tstream_userdata(s);
    dl->client = NULL;
    dl->handles--;
    if (!dl->finished)
        dl_fail(dl, 426, "Data connection closed; transfer aborted");
    else if (dl->lingering && dl->backend && tstream_ended(dl->backend))
        tstream_close(dl->backend, 0);
    dl_maybe_free(dl);
}

static void client_on_connect(tstream_t *s, int status);

static const tstream_cbs_t client_cbs = {
    .on_connect = client_on_connect,
    .on_handshake = client_on_handshake,
    .on_data = client_on_data,
    .on_end = client_on_end,
    .on_drain = client_on_drain,
    .on_shutdown = client_on_shutdown,
    .on_close = client_on_close,
};

/* The client endpoint is connected (accepted, or our connect to it done). */
static void dl_client_up(datalink_t *dl)
{
    tstream_t *cs = dl->client;
    dl->client_up = 1;
    uv_tcp_nodelay(tstream_tcp(cs), 1);
    tstream_start_read(cs);
    if (dl->backend)
        dl_unstash(dl, &dl->stash_b2c, cs, dl->backend);
    if (dl->finished)
        return;
    /* An active backend that already sent everything is passed on. */
    if (dl->b2c_ended && dl->b2c_clean)
        tstream_shutdown(cs);
    dl_maybe_connect_backend(dl);
    dl_check_running(dl);
}

/* Makes cs (new, or just accepted) the link's client endpoint. */
static int dl_adopt_client_stream(datalink_t *dl, tstream_t *cs)
{
    tstream_set_userdata(cs, &client_cbs, dl);
    dl->client = cs;
    dl->handles++;
    if (dl->tls) {
        if (tstream_start_tls(cs, dl->tls) != FG_OK) {
            dl_fail(dl, 425, "Cannot start TLS on the data connection");
            return -1;
        }
        tls_engine_set_token(tstream_engine(cs), dl->tls_token, 0);
        tls_engine_set_sni(tstream_engine(cs), dl->sni);
        /* No tickets on data connections (tls_engine.h); the control connection issues them. */
        tls_engine_set_num_tickets(tstream_engine(cs), 0);
    }
    return 0;
}

static void client_on_connect(tstream_t *s, int status)
{
    datalink_t *dl = tstream_userdata(s);
    if (status < 0) {
        LOG_INFO(dl->sid, dl->peer, "cannot connect to the client's data port: %s", uv_strerror(status));
        dl_fail(dl, 425, "Cannot open data connection");
        return;
    }
    dl_client_up(dl);
}

/* Active client (PORT/EPRT): RFC 959 §3.2 — the server side dials the
 * client's port once the transfer command is in. */
static void dl_dial_client(datalink_t *dl)
{
    if (dl->client || dl->finished)
        return;
    tstream_t *cs = tstream_new(dl->loop, &client_cbs, dl);
    if (!cs) {
        dl_fail(dl, 425, "Cannot open data connection (out of memory)");
        return;
    }
    if (dl_adopt_client_stream(dl, cs) != 0)
        return;
    if (dl->has_active_source &&
        transparent_bind(tstream_tcp(dl->client), (const struct sockaddr *)&dl->active_source, dl->transparent) != 0) {
        dl_fail(dl, 425, "Cannot open data connection (source address)");
        return;
    }
    if (tstream_connect(dl->client, (const struct sockaddr *)&dl->client_target) != FG_OK)
        dl_fail(dl, 425, "Cannot open data connection");
}

/* ---- backend side --------------------------------------------------------------- */

static void backend_on_data(tstream_t *s, const char *buf, size_t len)
{
    datalink_t *dl = tstream_userdata(s);
    dl->bytes_b2c += len;
    pump(dl, s, dl->client_up ? dl->client : NULL, &dl->stash_b2c, buf, len);
}

static void backend_on_end(tstream_t *s, tstream_end_t how, const char *reason)
{
    datalink_t *dl = tstream_userdata(s);
    dl->b2c_ended = 1;
    dl->b2c_clean = how == TSTREAM_END_CLEAN;
    if (dl->finished) {
        dl_evaluate(dl);
        return;
    }
    if (how != TSTREAM_END_CLEAN) {
        LOG_INFO(dl->sid, dl->peer, "backend data connection failed: %s", reason);
        dl_fail(dl, 426, "Server data connection failed; transfer aborted");
        return;
    }
    if (dl->client && dl->client_up && !dl->stash_b2c.len)
        tstream_shutdown(dl->client);
    dl_evaluate(dl);
}

static void backend_on_drain(tstream_t *s)
{
    datalink_t *dl = tstream_userdata(s);
    if (dl->client)
        tstream_resume(dl->client);
}

static void backend_on_shutdown(tstream_t *s, int status)
{
    datalink_t *dl = tstream_userdata(s);
    if (status < 0 && !dl->finished) {
        dl_fail(dl, 426, "Data connection to server failed; transfer aborted");
        return;
    }
    dl->backend_shut = 1;
    dl_evaluate(dl);
}

static void backend_on_close(tstream_t *s)
{
    datalink_t *dl = tstream_userdata(s);
    dl->backend = NULL;
    dl->handles--;
    if (!dl->finished)
        dl_fail(dl, 426, "Server data connection closed; transfer aborted");
    else if (dl->lingering && dl->client && tstream_ended(dl->client) &&
             tstream_shutdown_done(dl->client))
        tstream_close(dl->client, 0);
    dl_maybe_free(dl);
}

static void backend_on_connect(tstream_t *s, int status);

static const tstream_cbs_t backend_cbs = {
    .on_connect = backend_on_connect,
    .on_data = backend_on_data,
    .on_end = backend_on_end,
    .on_drain = backend_on_drain,
    .on_shutdown = backend_on_shutdown,
    .on_close = backend_on_close,
};

static void dl_backend_up(datalink_t *dl)
{
    tstream_t *bs = dl->backend;
    dl->backend_up = 1;
    uv_tcp_nodelay(tstream_tcp(bs), 1);
    tstream_start_read(bs);
    if (dl->client)
        dl_unstash(dl, &dl->stash_c2b, bs, dl->client);
    if (dl->finished)
        return;
    /* A client that already finished its upload (e.g. 0 bytes) is passed on. */
    if (dl->c2b_ended && dl->c2b_clean)
        tstream_shutdown(bs);
    dl_check_running(dl);
}

static void backend_on_connect(tstream_t *s, int status)
{
    datalink_t *dl = tstream_userdata(s);
    if (status < 0) {
        LOG_WARN(dl->sid, dl->peer, "cannot connect to backend data port: %s", uv_strerror(status));
        dl_fail(dl, 425, "Cannot open data connection to the server");
        return;
    }
    dl_backend_up(dl);
}

/* The backend's passive port is dialled only once the real client is here, so
 * a refused or absent client never reaches the backend. */
static void dl_maybe_connect_backend(datalink_t *dl)
{
    if (dl->backend_mode != DL_BACKEND_CONNECT || dl->backend_started || !dl->client_up ||
        !dl->backend_port_known || dl->finished)
        return;
    tstream_t *bs = tstream_new(dl->loop, &backend_cbs, dl);
    if (!bs) {
        dl_fail(dl, 425, "Cannot open data connection (out of memory)");
        return;
    }
    dl->backend = bs;
    dl->backend_started = 1;
    dl->handles++;
    /* Source-IP transparency: the backend sees the client's address (README). */
    if (dl->has_backend_source && dl->backend_source.ss_family == dl->backend_addr.ss_family &&
        transparent_bind(tstream_tcp(bs), (const struct sockaddr *)&dl->backend_source, 1) != 0) {
        dl_fail(dl, 425, "Cannot open data connection from the client's address");
        return;
    }
    if (tstream_connect(bs, (const struct sockaddr *)&dl->backend_addr) != FG_OK)
        dl_fail(dl, 425, "Cannot open data connection to the server");
}

/* ---- listening sockets ------------------------------------------------------------- */

static const tstream_cbs_t stray_cbs = {0};

/* Accepts one connection into a fresh stream; refuses (reset) a peer whose IP
 * is not `expected` when check is on. Returns the stream or NULL. */
static tstream_t *dl_accept(datalink_t *dl, uv_stream_t *server, const struct sockaddr *expected,
                            int check, const char *what)
{
    tstream_t *st = tstream_new(dl->loop, &stray_cbs, NULL);
    if (!st)
        return NULL;
    struct sockaddr_storage peer;
    int plen = sizeof peer;
    if (uv_accept(server, tstream_uv(st)) != 0 ||
        uv_tcp_getpeername(tstream_tcp(st), (struct sockaddr *)&peer, &plen) != 0) {
        tstream_close(st, 1);
        return NULL;
    }
    /* SECURITY: data-port theft (RFC 2577 §3, "PASV hijacking"): only the
     * expected peer IP may connect; others are reset and the port waits on. */
    if (check && !netaddr_same_ip((const struct sockaddr *)&peer, expected)) {
        char ip[64];
        netaddr_format_ip((const struct sockaddr *)&peer, ip, sizeof ip);
        dl->metrics->data_peer_refused++;
        LOG_WARN(dl->sid, dl->peer, "SECURITY: refused %s data connection from %s (not the expected IP)",
                 what, ip);
        tstream_close(st, 1);
        return NULL;
    }
    tstream_set_connected(st);
    return st;
}

static void on_client_connection(uv_stream_t *server, int status)
{
    lsock_t *ls = (lsock_t *)server;
    datalink_t *dl = ls->dl;
    if (status < 0 || dl->finished || dl->client)
        return;
    tstream_t *st = dl_accept(dl, server, (const struct sockaddr *)&dl->client_addr, dl->check_peer_ip,
                              "client");
    if (!st)
        return;
    dl_close_lsock(&dl->client_lsn);
    if (dl_adopt_client_stream(dl, st) == 0)
        dl_client_up(dl);
}

static void on_backend_connection(uv_stream_t *server, int status);

static int dl_bind_listen(datalink_t *dl, lsock_t *ls, const struct sockaddr *addr, uint16_t port,
                          uv_connection_cb cb)
{
    struct sockaddr_storage sa;
    memcpy(&sa, addr, netaddr_len(addr));
    netaddr_set_port((struct sockaddr *)&sa, port);
    uv_tcp_init(dl->loop, &ls->tcp);
    ls->tcp.data = dl;
    ls->dl = dl;
    ls->port = port;
    dl->handles++;
    /* TPROXY: the passive port listens on the server's address, not ours;
     * with source-IP transparency the port given to an active backend is on
     * the client's address. Neither is local without IP_TRANSPARENT. */
    int rc = transparent_bind(&ls->tcp, (struct sockaddr *)&sa,
                              (dl->transparent && ls->from_pool) || (dl->has_backend_source && !ls->from_pool));
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&ls->tcp, 4, cb);
    return rc;
}

static void on_backend_connection(uv_stream_t *server, int status)
{
    lsock_t *ls = (lsock_t *)server;
    datalink_t *dl = ls->dl;
    if (status < 0 || dl->finished || dl->backend)
        return;
    /* SECURITY: only the backend itself may connect to the PORT we gave it. */
    tstream_t *st = dl_accept(dl, server, (const struct sockaddr *)&dl->backend_addr, 1, "backend");
    if (!st)
        return;
    dl_close_lsock(&dl->backend_lsn);
    tstream_set_userdata(st, &backend_cbs, dl);
    dl->backend = st;
    dl->backend_started = 1;
    dl->handles++;
    dl_backend_up(dl);
}

/* Passive client side: a port from the pool; a port taken by something else
 * on the host is skipped. */
static int dl_listen_client(datalink_t *dl, const struct sockaddr *addr)
{
    int last_rc = FG_RANGE;
    for (int attempt = 0; attempt < DATALINK_BIND_ATTEMPTS; attempt++) {
        uint16_t port;
        if (portpool_acquire(dl->pool, &port) != FG_OK)
            return last_rc;
        lsock_t *ls = calloc(1, sizeof *ls);
        if (!ls) {
            portpool_release(dl->pool, port);
            return FG_NOMEM;
        }
        ls->from_pool = 1;
        if (dl_bind_listen(dl, ls, addr, port, on_client_connection) == 0) {
            dl->client_lsn = ls;
            dl->client_port = port;
            return FG_OK;
        }
        uv_close((uv_handle_t *)&ls->tcp, lsock_closed);
        last_rc = FG_IO;
    }
    return last_rc;
}

/* Listen backend side: an ephemeral port on the backend-facing address. */
static int dl_listen_backend(datalink_t *dl, const struct sockaddr *addr)
{
    lsock_t *ls = calloc(1, sizeof *ls);
    if (!ls)
        return FG_NOMEM;
    if (dl_bind_listen(dl, ls, addr, 0, on_backend_connection) != 0) {
        uv_close((uv_handle_t *)&ls->tcp, lsock_closed);
        return FG_IO;
    }
    int len = sizeof dl->backend_listen;
    if (uv_tcp_getsockname(&ls->tcp, (struct sockaddr *)&dl->backend_listen, &len) != 0) {
        uv_close((uv_handle_t *)&ls->tcp, lsock_closed);
        return FG_IO;
    }
    dl->backend_lsn = ls;
    return FG_OK;
}

/* ---- timers -------------------------------------------------------------------------- */

/* Once a second while the transfer runs: a peer that neither sends nor reads
 * for stall_timeout_s seconds ends it, so a stuck transfer cannot pin a
 * session and its buffers forever. */
static void on_stall_tick(uv_timer_t *t)
{
    datalink_t *dl = t->data;
    uint64_t mark = dl->bytes_c2b + dl->bytes_b2c;
    if (dl->client)
        mark += tstream_queued(dl->client);
    if (dl->backend)
        mark += tstream_queued(dl->backend);
    if (mark != dl->progress_mark) {
        dl->progress_mark = mark;
        dl->stalled_s = 0;
        return;
    }
    if (++dl->stalled_s >= dl->stall_timeout_s) {
        LOG_INFO(dl->sid, dl->peer, "data transfer stalled for %u s", dl->stalled_s);
        dl_fail(dl, 426, "Transfer stalled; aborted");
    }
}

static void on_connect_timeout(uv_timer_t *t)
{
    datalink_t *dl = t->data;
    dl_fail(dl, 425, "Data connection timed out");
}

/* ---- public ------------------------------------------------------------------------------ */

int datalink_new(uv_loop_t *loop, const datalink_opts_t *opts, datalink_done_cb cb, void *owner,
                 datalink_t **out)
{
    datalink_t *dl = calloc(1, sizeof *dl);
    if (!dl)
        return FG_NOMEM;
    dl->loop = loop;
    dl->cb = cb;
    dl->owner = owner;
    dl->client_mode = opts->client_mode;
    dl->backend_mode = opts->backend_mode;
    dl->pool = opts->pool;
    dl->tls = opts->tls;
    dl->sni = opts->sni;
    dl->require_session_reuse = opts->require_session_reuse;
    dl->accept_fin_upload = opts->accept_upload_without_close_notify;
    if (opts->tls_token)
        memcpy(dl->tls_token, opts->tls_token, sizeof dl->tls_token);
    dl->direction = DIR_UNKNOWN;
    dl->check_peer_ip = opts->check_peer_ip;
    dl->connect_timeout_ms = opts->connect_timeout_ms;
    dl->stall_timeout_s = opts->stall_timeout_s;
    dl->sid = opts->session_id;
    dl->metrics = opts->metrics;
    snprintf(dl->peer, sizeof dl->peer, "%s", opts->peer ? opts->peer : "");
    memcpy(&dl->client_addr, opts->client_addr, netaddr_len(opts->client_addr));
    memcpy(&dl->backend_addr, opts->backend_addr, netaddr_len(opts->backend_addr));
    if (opts->client_target)
        memcpy(&dl->client_target, opts->client_target, netaddr_len(opts->client_target));
    if (opts->active_source) {
        memcpy(&dl->active_source, opts->active_source, netaddr_len(opts->active_source));
        dl->has_active_source = 1;
    }
    dl->transparent = opts->transparent;
    if (opts->backend_source) {
        memcpy(&dl->backend_source, opts->backend_source, netaddr_len(opts->backend_source));
        netaddr_set_port((struct sockaddr *)&dl->backend_source, 0);
        dl->has_backend_source = 1;
    }
    uv_timer_init(loop, &dl->timer);
    dl->timer.data = dl;
    dl->handles = 1;
    int rc = FG_OK;
    if (dl->client_mode == DL_CLIENT_PASSIVE)
        rc = dl_listen_client(dl, opts->listen_addr);
    if (rc == FG_OK && dl->backend_mode == DL_BACKEND_LISTEN)
        rc = dl_listen_backend(dl, opts->backend_local);
    if (rc != FG_OK) {
        dl->detached = 1;
        dl->finished = 1;
        dl_close_lsock(&dl->client_lsn);
        dl_close_lsock(&dl->backend_lsn);
        dl_maybe_free(dl);
        return rc;
    }
    /* A passive port waits for its client from now; active ends start at the command. */
    if (dl->client_mode == DL_CLIENT_PASSIVE)
        uv_timer_start(&dl->timer, on_connect_timeout, dl->connect_timeout_ms, 0);
    *out = dl;
    return FG_OK;
}

uint16_t datalink_client_port(const datalink_t *dl)
{
    return dl->client_port;
}

const struct sockaddr *datalink_backend_listen_addr(const datalink_t *dl)
{
    return (const struct sockaddr *)&dl->backend_listen;
}

void datalink_set_backend_port(datalink_t *dl, uint16_t port)
{
    netaddr_set_port((struct sockaddr *)&dl->backend_addr, port);
    dl->backend_port_known = 1;
    dl_maybe_connect_backend(dl);
}

void datalink_set_direction(datalink_t *dl, int upload)
{
    dl->direction = upload ? DIR_UPLOAD : DIR_DOWNLOAD;
    if (dl->failed)
        dl_poke_backend(dl);
    if (dl->finished)
        return;
    /* A client that connected and then failed before the command: report now. */
    if (dl->direction == DIR_UPLOAD && dl->c2b_ended && !dl->c2b_clean) {
        dl_fail(dl, 426, "Data connection closed abnormally; transfer aborted");
        return;
    }
    if (!dl->running && (dl->client_mode == DL_CLIENT_ACTIVE || dl->backend_mode == DL_BACKEND_LISTEN))
        uv_timer_start(&dl->timer, on_connect_timeout, dl->connect_timeout_ms, 0);
    if (dl->client_mode == DL_CLIENT_ACTIVE)
        dl_dial_client(dl);
    dl_evaluate(dl);
}

void datalink_progress(const datalink_t *dl, uint64_t *to_client, uint64_t *to_backend)
{
    *to_client = dl->bytes_b2c;
    *to_backend = dl->bytes_c2b;
}

void datalink_detach(datalink_t *dl)
{
    if (!dl || dl->detached)
        return;
    dl->detached = 1;
    dl->cb = NULL;
    dl->owner = NULL;
    if (!dl->finished) {
        dl->finished = 1;
        if (dl->direction != DIR_UNKNOWN) /* ABOR, or the session ended mid-transfer */
            dl_account(dl, 0);
        dl_close_lsock(&dl->client_lsn);
        dl_close_lsock(&dl->backend_lsn);
        dl_close_streams(dl, 1);
    }
    dl_maybe_free(dl);
}
