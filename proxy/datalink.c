#include "datalink.h"

#include <stdlib.h>
#include <string.h>

#include "fgerr.h"
#include "log.h"
#include "netaddr.h"
#include "tls_engine.h"
#include "tstream.h"

#define DATALINK_LINGER_MS 3000
#define DATALINK_BIND_ATTEMPTS 16

enum { DIR_UNKNOWN = -1, DIR_DOWNLOAD = 0, DIR_UPLOAD = 1 };

struct datalink {
    uv_loop_t *loop;
    datalink_done_cb cb;
    void *owner;
    portpool_t *pool;
    uv_tcp_t *lsn;
    uint16_t port;
    struct sockaddr_storage client_addr;
    int check_peer_ip;
    struct sockaddr_storage backend_addr;
    SSL_CTX *tls;
    tstream_t *client;
    tstream_t *backend;
    uv_timer_t timer;
    int direction;
    unsigned handles;
    unsigned finished : 1, detached : 1, c2b_ended : 1, c2b_clean : 1, b2c_ended : 1,
        b2c_clean : 1, client_shut : 1, backend_shut : 1, lingering : 1, timer_closing : 1,
        failed : 1, backend_started : 1;
    unsigned long long sid;
    char peer[64];
    uint64_t bytes_c2b, bytes_b2c;
    metrics_t *metrics;
    unsigned stall_timeout_s, stalled_s;
    int require_session_reuse;
    const tls_sni_t *sni;
    unsigned char tls_token[TLS_ENGINE_TOKEN_LEN];
    uint64_t progress_mark;
};

typedef struct {
    uv_tcp_t tcp;
    datalink_t *dl;
    uint16_t port;
} passive_listener_t;

static void dl_handle_closed(uv_handle_t *h);

/* The link outlives its owner's interest: it is freed only once detached and
 * every handle is closed; the timer goes last because lingering uses it. */
static void dl_maybe_free(datalink_t *dl)
{
    if (!dl->detached)
        return;
    if (!dl->client && !dl->backend && !dl->lsn && !dl->timer_closing) {
        dl->timer_closing = 1;
        uv_close((uv_handle_t *)&dl->timer, dl_handle_closed);
        return;
    }
    if (dl->handles == 0)
        free(dl);
}

static void dl_handle_closed(uv_handle_t *h)
{
    datalink_t *dl = h->data;
    dl->handles--;
    dl_maybe_free(dl);
}

static void lsn_closed(uv_handle_t *h)
{
    passive_listener_t *pl = (passive_listener_t *)h;
    datalink_t *dl = pl->dl;
    /* The port returns to the pool only once nothing listens on it. */
    portpool_release(dl->pool, pl->port);
    free(pl);
    dl->handles--;
    dl_maybe_free(dl);
}

static void dl_close_listener(datalink_t *dl)
{
    if (dl->lsn) {
        uv_close((uv_handle_t *)dl->lsn, lsn_closed);
        dl->lsn = NULL;
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
    void *owner = dl->owner;
    dl->cb = NULL;
    if (cb && !dl->detached)
        cb(owner, code, text);
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

/* The client never brought a usable data connection, but the backend already
 * has the transfer command and waits (for minutes) on its passive port.
 * Connecting and resetting makes it fail the transfer now, so its final reply
 * comes promptly and the session goes on. */
static void dl_poke_backend(datalink_t *dl)
{
    if (dl->backend_started || dl->backend)
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

static void dl_fail(datalink_t *dl, int code, const char *text)
{
    if (dl->finished)
        return;
    dl->finished = 1;
    dl->failed = 1;
    dl->metrics->transfers_failed++;
    dl->metrics->bytes_to_backend += dl->bytes_c2b;
    dl->metrics->bytes_to_client += dl->bytes_b2c;
    if (code == 522)
        dl->metrics->data_tls_failures++;
    LOG_INFO(dl->sid, dl->peer, "data transfer failed (%d %s); %llu bytes to backend, %llu to client",
             code, text, (unsigned long long)dl->bytes_c2b, (unsigned long long)dl->bytes_b2c);
    uv_timer_stop(&dl->timer);
    dl_close_listener(dl);
    /* SECURITY: reset, not FIN, so the backend cannot take a cut upload as complete. */
    dl_close_streams(dl, 1);
    if (dl->direction != DIR_UNKNOWN)
        dl_poke_backend(dl);
    dl_report(dl, code, text);
}

static void dl_linger_check(datalink_t *dl)
{
    /* After success each side is closed once it has ended its reading and our
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
    dl->metrics->transfers_ok++;
    dl->metrics->bytes_to_backend += dl->bytes_c2b;
    dl->metrics->bytes_to_client += dl->bytes_b2c;
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

/* ---- client side ---------------------------------------------------------- */

static void client_on_handshake(tstream_t *s)
{
    datalink_t *dl = tstream_userdata(s);
    int resumed = tls_engine_resumed_with_token(tstream_engine(s), dl->tls_token);
    LOG_DEBUG(dl->sid, dl->peer, "data TLS established (%s, %s)", tstream_tls_desc(s),
              resumed ? "resumed the control session"
                      : SSL_session_reused(tstream_ssl(s)) ? "resumed ANOTHER session" : "new session");
    /* SECURITY: data-connection theft with a TLS session of its own (RFC 4217
     * §10.2): only a resumption of this control connection's session proves
     * the data connection comes from the same client. */
    if (dl->require_session_reuse && !resumed) {
        LOG_WARN(dl->sid, dl->peer, "SECURITY: data TLS did not resume the control session (%s); refused",
                 SSL_session_reused(tstream_ssl(s)) ? "another connection's session" : "full handshake");
        dl_fail(dl, 522, "Data connection must resume the control connection's TLS session");
    }
}

static void client_on_data(tstream_t *s, const char *buf, size_t len)
{
    datalink_t *dl = tstream_userdata(s);
    dl->bytes_c2b += len;
    if (!dl->backend || tstream_write(dl->backend, buf, len) != FG_OK) {
        dl_fail(dl, 426, "Connection closed; transfer aborted");
        return;
    }
    if (tstream_queued(dl->backend) > TSTREAM_HIGH_MARK)
        tstream_pause(s);
}

static void client_on_end(tstream_t *s, tstream_end_t how, const char *reason)
{
    datalink_t *dl = tstream_userdata(s);
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
        if (dl->backend)
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
    if (!dl->finished) /* closed under us (error paths) */
        dl_fail(dl, 426, "Data connection closed; transfer aborted");
    else if (dl->lingering && dl->backend && tstream_ended(dl->backend))
        tstream_close(dl->backend, 0);
    dl_maybe_free(dl);
}

static const tstream_cbs_t client_cbs = {
    .on_handshake = client_on_handshake,
    .on_data = client_on_data,
    .on_end = client_on_end,
    .on_drain = client_on_drain,
    .on_shutdown = client_on_shutdown,
    .on_close = client_on_close,
};

/* ---- backend side ---------------------------------------------------------- */

static void backend_on_connect(tstream_t *s, int status)
{
    datalink_t *dl = tstream_userdata(s);
    if (status < 0) {
        LOG_WARN(dl->sid, dl->peer, "cannot connect to backend data port: %s", uv_strerror(status));
        dl_fail(dl, 425, "Cannot open data connection to the server");
        return;
    }
    tstream_start_read(s);
}

static void backend_on_data(tstream_t *s, const char *buf, size_t len)
{
    datalink_t *dl = tstream_userdata(s);
    dl->bytes_b2c += len;
    if (!dl->client || tstream_write(dl->client, buf, len) != FG_OK) {
        dl_fail(dl, 426, "Connection closed; transfer aborted");
        return;
    }
    if (tstream_queued(dl->client) > TSTREAM_HIGH_MARK)
        tstream_pause(s);
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
    if (dl->client)
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

static const tstream_cbs_t backend_cbs = {
    .on_connect = backend_on_connect,
    .on_data = backend_on_data,
    .on_end = backend_on_end,
    .on_drain = backend_on_drain,
    .on_shutdown = backend_on_shutdown,
    .on_close = backend_on_close,
};

/* ---- passive listener -------------------------------------------------------- */

static const tstream_cbs_t stray_cbs = {0};

static void on_stall_tick(uv_timer_t *t);

static void on_data_connection(uv_stream_t *server, int status)
{
    passive_listener_t *pl = (passive_listener_t *)server;
    datalink_t *dl = pl->dl;
    if (status < 0 || dl->finished || dl->client)
        return;
    tstream_t *cs = tstream_new(dl->loop, &client_cbs, dl);
    if (!cs) {
        dl_fail(dl, 425, "Cannot open data connection (out of memory)");
        return;
    }
    dl->handles++;
    if (uv_accept(server, tstream_uv(cs)) != 0) {
        dl->client = cs;
        tstream_close(cs, 1);
        return;
    }
    struct sockaddr_storage peer;
    int plen = sizeof peer;
    if (uv_tcp_getpeername(tstream_tcp(cs), (struct sockaddr *)&peer, &plen) != 0) {
        dl->client = cs;
        tstream_close(cs, 1);
        return;
    }
    /* SECURITY: data-port theft (RFC 2577 §3 / "PASV hijacking"): only the
     * control connection's IP may connect to this port. Others are reset and
     * the port keeps waiting for the real client. */
    if (dl->check_peer_ip && !netaddr_same_ip((const struct sockaddr *)&peer, (const struct sockaddr *)&dl->client_addr)) {
        char ip[64];
        netaddr_format_ip((const struct sockaddr *)&peer, ip, sizeof ip);
        dl->metrics->data_peer_refused++;
        LOG_WARN(dl->sid, dl->peer, "SECURITY: refused data connection from %s to port %u (not the client's IP)",
                 ip, (unsigned)dl->port);
        /* Detach it from this link: it closes on its own. */
        tstream_set_userdata(cs, &stray_cbs, NULL);
        dl->handles--;
        tstream_close(cs, 1);
        return;
    }
    dl->client = cs;
    tstream_set_connected(cs);
    uv_tcp_nodelay(tstream_tcp(cs), 1);
    uv_timer_start(&dl->timer, on_stall_tick, 1000, 1000);
    dl_close_listener(dl);
    if (dl->tls) {
        if (tstream_start_tls(cs, dl->tls) != FG_OK) {
            dl_fail(dl, 425, "Cannot start TLS on the data connection");
            return;
        }
        tls_engine_set_token(tstream_engine(cs), dl->tls_token);
        tls_engine_set_sni(tstream_engine(cs), dl->sni);
        /* Tickets only where the client reads (downloads); see tls_engine.h. */
        tls_engine_set_num_tickets(tstream_engine(cs), dl->direction == DIR_DOWNLOAD ? 1 : 0);
    }
    tstream_start_read(cs);
    /* The backend's passive port is connected only now, once the real client
     * is here, so a refused or absent client never reaches the backend. */
    tstream_t *bs = tstream_new(dl->loop, &backend_cbs, dl);
    if (!bs) {
        dl_fail(dl, 425, "Cannot open data connection (out of memory)");
        return;
    }
    dl->backend = bs;
    dl->backend_started = 1;
    dl->handles++;
    if (tstream_connect(bs, (const struct sockaddr *)&dl->backend_addr) != FG_OK)
        dl_fail(dl, 425, "Cannot open data connection to the server");
}

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

static int dl_listen(datalink_t *dl, const struct sockaddr *addr)
{
    int last_rc = FG_RANGE;
    for (int attempt = 0; attempt < DATALINK_BIND_ATTEMPTS; attempt++) {
        uint16_t port;
        if (portpool_acquire(dl->pool, &port) != FG_OK)
            return last_rc;
        passive_listener_t *pl = calloc(1, sizeof *pl);
        if (!pl) {
            portpool_release(dl->pool, port);
            return FG_NOMEM;
        }
        pl->dl = dl;
        pl->port = port;
        uv_tcp_init(dl->loop, &pl->tcp);
        pl->tcp.data = dl;
        dl->handles++;
        struct sockaddr_storage sa;
        memcpy(&sa, addr, netaddr_len(addr));
        netaddr_set_port((struct sockaddr *)&sa, port);
        int rc = uv_tcp_bind(&pl->tcp, (struct sockaddr *)&sa, 0);
        if (rc == 0)
            rc = uv_listen((uv_stream_t *)&pl->tcp, 4, on_data_connection);
        if (rc == 0) {
            dl->lsn = &pl->tcp;
            dl->port = port;
            return FG_OK;
        }
        /* A port taken by something else on the host: skip it. */
        uv_close((uv_handle_t *)&pl->tcp, lsn_closed);
        last_rc = FG_IO;
    }
    return last_rc;
}

int datalink_new(uv_loop_t *loop, const datalink_opts_t *opts, datalink_done_cb cb, void *owner,
                 datalink_t **out)
{
    datalink_t *dl = calloc(1, sizeof *dl);
    if (!dl)
        return FG_NOMEM;
    dl->loop = loop;
    dl->cb = cb;
    dl->owner = owner;
    dl->pool = opts->pool;
    dl->tls = opts->tls;
    dl->direction = DIR_UNKNOWN;
    dl->check_peer_ip = opts->check_peer_ip;
    dl->sid = opts->session_id;
    dl->metrics = opts->metrics;
    dl->stall_timeout_s = opts->stall_timeout_s;
    dl->require_session_reuse = opts->require_session_reuse;
    dl->sni = opts->sni;
    if (opts->tls_token)
        memcpy(dl->tls_token, opts->tls_token, sizeof dl->tls_token);
    snprintf(dl->peer, sizeof dl->peer, "%s", opts->peer ? opts->peer : "");
    memcpy(&dl->client_addr, opts->client_addr, netaddr_len(opts->client_addr));
    memcpy(&dl->backend_addr, opts->backend_addr, netaddr_len(opts->backend_addr));
    uv_timer_init(loop, &dl->timer);
    dl->timer.data = dl;
    dl->handles = 1;
    int rc = dl_listen(dl, opts->listen_addr);
    if (rc != FG_OK) {
        dl->detached = 1;
        dl->finished = 1;
        dl_maybe_free(dl);
        return rc;
    }
    uv_timer_start(&dl->timer, on_connect_timeout, opts->connect_timeout_ms, 0);
    *out = dl;
    return FG_OK;
}

uint16_t datalink_port(const datalink_t *dl)
{
    return dl->port;
}

void datalink_set_direction(datalink_t *dl, int upload)
{
    dl->direction = upload ? DIR_UPLOAD : DIR_DOWNLOAD;
    if (!upload && dl->client && tstream_engine(dl->client) && !tstream_handshake_done(dl->client))
        tls_engine_set_num_tickets(tstream_engine(dl->client), 1);
    if (dl->failed)
        dl_poke_backend(dl);
    if (dl->finished)
        return;
    /* A client that connected and then failed before the command: report now. */
    if (dl->direction == DIR_UPLOAD && dl->c2b_ended && !dl->c2b_clean) {
        dl_fail(dl, 426, "Data connection closed abnormally; transfer aborted");
        return;
    }
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
        dl_close_listener(dl);
        dl_close_streams(dl, 1);
    }
    dl_maybe_free(dl);
}
