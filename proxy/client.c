#include "client.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fgerr.h"
#include "linebuf.h"
#include "log.h"

/* Unparsed client bytes: reading pauses above CLIENT_INPUT_PAUSE, so the
 * buffer stays below it plus one delivery (64 KiB clear, 16 KiB TLS). */
#define CLIENT_INPUT_PAUSE (8u * 1024u)
#define CLIENT_INPUT_MAX (CLIENT_INPUT_PAUSE + 80u * 1024u)
#define CLIENT_INPUT_START 512u
#define CLIENT_REPLY_MAX 512u
#define CLIENT_LINE_MAX 8192u /* a relayed backend line, CRLF excluded */

struct client {
    tstream_t *stream;
    const client_cbs_t *cbs;
    void *owner;
    linebuf_t *lines;
    char *in;
    size_t in_len, in_pos, in_cap;
    unsigned char *pp;  /* a PROXY header being read; NULL once done or when not used */
    size_t pp_len;
    SSL_CTX *tls_ctx;
    const unsigned char *token;
    const tls_sni_t *sni;
    SSL_SESSION *session; /* the control TLS session data connections resume */
    unsigned paused : 1, closing : 1, restart_tls : 1, hold_tickets : 1;
};

static void client_grow_failed(client_t *c, const char *why)
{
    if (c->cbs->on_end)
        c->cbs->on_end(c->owner, TSTREAM_END_RESET, why);
}

/* ---- input ----------------------------------------------------------------------------- */

static void client_unpause_if_drained(client_t *c)
{
    if (c->paused && c->in_len - c->in_pos < CLIENT_INPUT_PAUSE / 2 && !c->closing) {
        c->paused = 0;
        tstream_resume(c->stream);
    }
}

static int client_append(client_t *c, const char *buf, size_t len)
{
    if (c->in_pos > 0) {
        memmove(c->in, c->in + c->in_pos, c->in_len - c->in_pos);
        c->in_len -= c->in_pos;
        c->in_pos = 0;
    }
    if (c->in_len + len > CLIENT_INPUT_MAX)
        return FG_TOO_LONG;
    if (c->in_len + len > c->in_cap) {
        /* Grows only for a client that pipelines or sends big TLS records;
         * an idle session keeps the small buffer. */
        size_t cap = c->in_len + len;
        char *p = realloc(c->in, cap);
        if (!p)
            return FG_NOMEM;
        c->in = p;
        c->in_cap = cap;
    }
    memcpy(c->in + c->in_len, buf, len);
    c->in_len += len;
    if (c->in_len > CLIENT_INPUT_PAUSE && !c->paused) {
        c->paused = 1;
        tstream_pause(c->stream);
    }
    return FG_OK;
}

int client_take_line(client_t *c, const char **line, size_t *len)
{
    while (c->in_pos < c->in_len) {
        size_t used = 0;
        int rc = linebuf_take(c->lines, c->in + c->in_pos, c->in_len - c->in_pos, &used, line, len);
        c->in_pos += used;
        if (rc != FG_NEED_MORE)
            return rc;
    }
    c->in_len = c->in_pos = 0;
    client_unpause_if_drained(c);
    return FG_NEED_MORE;
}

int client_has_input(const client_t *c)
{
    return c->in_pos < c->in_len;
}

void client_set_line_cap(client_t *c, size_t cap)
{
    linebuf_set_cap(c->lines, cap);
}

size_t client_discard_input(client_t *c)
{
    size_t dropped = c->in_len - c->in_pos + linebuf_partial(c->lines);
    c->in_len = c->in_pos = 0;
    linebuf_reset(c->lines);
    client_unpause_if_drained(c);
    return dropped;
}

/* The PROXY header (haproxy's proxy-protocol.txt) comes before anything
 * else, TLS included. */
static void client_read_proxy_header(client_t *c, const char *buf, size_t len)
{
    size_t room = PROXYPROTO_MAX - c->pp_len, take = len < room ? len : room;
    memcpy(c->pp + c->pp_len, buf, take);
    c->pp_len += take;
    proxyproto_t pp;
    int rc = proxyproto_parse(c->pp, c->pp_len, &pp);
    if (rc == FG_NEED_MORE && take == len)
        return;
    if (rc != FG_OK) {
        /* The owner logs and refuses: a listener that expects PROXY headers takes nothing else. */
        c->cbs->on_proxy_header(c->owner, rc == FG_NEED_MORE ? FG_TOO_LONG : rc, NULL);
        return;
    }
    /* The header ends mid-buffer: what follows (and what the cap cut off) is the client's stream. */
    unsigned char *header = c->pp;
    size_t header_total = c->pp_len;
    c->pp = NULL;
    if (c->cbs->on_proxy_header(c->owner, FG_OK, &pp) != 0 || c->closing) {
        free(header);
        return;
    }
    const char *rest[2] = {(const char *)header + pp.header_len, buf + take};
    size_t rest_len[2] = {header_total - pp.header_len, len - take};
    int ok = FG_OK;
    for (int i = 0; i < 2 && ok == FG_OK; i++) {
        if (rest_len[i] == 0)
            continue;
        /* Implicit listeners started TLS in on_proxy_header: these are records. */
        ok = tstream_is_tls(c->stream) ? tstream_inject_tls(c->stream, rest[i], rest_len[i])
                                       : client_append(c, rest[i], rest_len[i]);
    }
    free(header);
    if (ok != FG_OK) {
        client_grow_failed(c, fg_strerror(ok));
        return;
    }
    if (client_has_input(c))
        c->cbs->on_input(c->owner);
}

/* ---- stream callbacks -------------------------------------------------------------------- */

static void on_data(tstream_t *t, const char *buf, size_t len)
{
    client_t *c = tstream_userdata(t);
    if (c->closing)
        return;
    if (c->pp) {
        client_read_proxy_header(c, buf, len);
        return;
    }
    int rc = client_append(c, buf, len);
    if (rc != FG_OK) {
        client_grow_failed(c, rc == FG_TOO_LONG ? "client input overflow" : "out of memory");
        return;
    }
    c->cbs->on_input(c->owner);
}

static void on_handshake(tstream_t *t)
{
    client_t *c = tstream_userdata(t);
    /* A new handshake (after REIN) replaces the session data connections resume. */
    tls_session_forget(c->tls_ctx, c->session);
    c->session = tls_engine_get1_session(tstream_engine(t));
    if (c->cbs->on_handshake)
        c->cbs->on_handshake(c->owner);
}

static void on_end(tstream_t *t, tstream_end_t how, const char *reason)
{
    client_t *c = tstream_userdata(t);
    if (c->closing) {
        tstream_close(t, 0);
        return;
    }
    c->cbs->on_end(c->owner, how, reason);
}

static void on_drain(tstream_t *t)
{
    client_t *c = tstream_userdata(t);
    if (c->cbs->on_drain)
        c->cbs->on_drain(c->owner);
}

static void on_shutdown(tstream_t *t, int status)
{
    (void)status;
    client_t *c = tstream_userdata(t);
    if (c->closing)
        tstream_close(t, 0);
}

static void on_close(tstream_t *t)
{
    client_t *c = tstream_userdata(t);
    c->stream = NULL;
    /* The control session leaves the server cache with its connection. */
    tls_session_forget(c->tls_ctx, c->session);
    if (c->cbs->on_closed)
        c->cbs->on_closed(c->owner);
    linebuf_free(c->lines);
    free(c->in);
    free(c->pp);
    free(c);
}

static void on_tls_stopped(tstream_t *t)
{
    client_t *c = tstream_userdata(t);
    linebuf_reset(c->lines);
    if (c->restart_tls && client_start_tls(c) != FG_OK) {
        c->cbs->on_end(c->owner, TSTREAM_END_TLS_FAILED, "cannot start TLS again");
        return;
    }
    c->cbs->on_tls_stopped(c->owner, c->restart_tls);
}

static const tstream_cbs_t client_stream_cbs = {
    .on_handshake = on_handshake,
    .on_data = on_data,
    .on_end = on_end,
    .on_drain = on_drain,
    .on_shutdown = on_shutdown,
    .on_close = on_close,
};

/* ---- public ----------------------------------------------------------------------------- */

client_t *client_new(tstream_t *stream, int proxy_header, size_t max_line, const client_cbs_t *cbs, void *owner)
{
    client_t *c = calloc(1, sizeof *c);
    if (c) {
        c->lines = linebuf_new(max_line, 1);
        c->in_cap = CLIENT_INPUT_START;
        c->in = malloc(c->in_cap);
        c->pp = proxy_header ? malloc(PROXYPROTO_MAX) : NULL;
    }
    if (!c || !c->lines || !c->in || (proxy_header && !c->pp)) {
        if (c) {
            linebuf_free(c->lines);
            free(c->in);
            free(c->pp);
            free(c);
        }
        tstream_close(stream, 1);
        return NULL;
    }
    c->stream = stream;
    c->cbs = cbs;
    c->owner = owner;
    tstream_set_userdata(stream, &client_stream_cbs, c);
    tstream_set_connected(stream);
    uv_tcp_nodelay(tstream_tcp(stream), 1);
    return c;
}

int client_start(client_t *c)
{
    return tstream_start_read(c->stream);
}

void client_write(client_t *c, const char *data, size_t len)
{
    if (c && c->stream && !c->closing && !tstream_closing(c->stream))
        tstream_write(c->stream, data, len);
}

void client_line(client_t *c, const char *line, size_t len)
{
    char buf[CLIENT_LINE_MAX + 2];
    if (len > CLIENT_LINE_MAX)
        len = CLIENT_LINE_MAX;
    memcpy(buf, line, len);
    buf[len] = '\r';
    buf[len + 1] = '\n';
    client_write(c, buf, len + 2);
}

void client_reply(client_t *c, int code, const char *fmt, ...)
{
    char buf[CLIENT_REPLY_MAX];
    int n = snprintf(buf, sizeof buf, "%d ", code);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 2, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof buf - 3)
        len = sizeof buf - 3;
    buf[len++] = '\r';
    buf[len++] = '\n';
    client_write(c, buf, len);
}

size_t client_queued(const client_t *c)
{
    return c && c->stream ? tstream_queued(c->stream) : 0;
}

void client_set_tls(client_t *c, SSL_CTX *ctx, const unsigned char *token, const tls_sni_t *sni)
{
    c->tls_ctx = ctx;
    c->token = token;
    c->sni = sni;
}

int client_start_tls(client_t *c)
{
    int rc = tstream_start_tls(c->stream, c->tls_ctx);
    if (rc != FG_OK)
        return rc;
    tls_engine_t *e = tstream_engine(c->stream);
    tls_engine_set_token(e, c->token, 1);
    tls_engine_set_sni(e, c->sni);
    if (c->hold_tickets)
        tls_engine_set_num_tickets(e, 0);
    return FG_OK;
}

void client_hold_tickets(client_t *c)
{
    c->hold_tickets = 1;
}

void client_issue_ticket(client_t *c)
{
    tls_engine_t *e = client_tls(c);
    if (e)
        tls_engine_issue_ticket(e);
}

int client_stop_tls(client_t *c, int restart)
{
    c->restart_tls = restart;
    return tstream_stop_tls(c->stream, on_tls_stopped);
}

int client_tls_stopping(const client_t *c)
{
    return c->stream && tstream_tls_stopping(c->stream);
}

tls_engine_t *client_tls(client_t *c)
{
    return c->stream ? tstream_engine(c->stream) : NULL;
}

const char *client_tls_desc(client_t *c)
{
    return c->stream ? tstream_tls_desc(c->stream) : "closed";
}

void client_shutdown(client_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    tstream_shutdown(c->stream);
}

void client_close(client_t *c)
{
    c->closing = 1;
    if (c->stream)
        tstream_close(c->stream, 0);
}

int client_closing(const client_t *c)
{
    return c->closing;
}

int client_addresses(client_t *c, struct sockaddr_storage *peer, struct sockaddr_storage *local)
{
    int plen = sizeof *peer, llen = sizeof *local;
    memset(peer, 0, sizeof *peer);
    memset(local, 0, sizeof *local);
    if (uv_tcp_getpeername(tstream_tcp(c->stream), (struct sockaddr *)peer, &plen) != 0 ||
        uv_tcp_getsockname(tstream_tcp(c->stream), (struct sockaddr *)local, &llen) != 0)
        return FG_IO;
    return FG_OK;
}

uv_tcp_t *client_tcp(client_t *c)
{
    return tstream_tcp(c->stream);
}
