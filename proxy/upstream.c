#include "upstream.h"

#include <assert.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "defer.h"
#include "fgerr.h"
#include "linebuf.h"
#include "log.h"
#include "netaddr.h"
#include "transparent.h"
#include "tstream.h"

#define UPSTREAM_LINE_MAX 8192u
#define UPSTREAM_ALT_MAX 8 /* addresses of a backend name worth trying */
#define UPSTREAM_CMD_MAX 65536u /* client lines are capped below this */

struct upstream {
    upstream_opts_t o;
    const upstream_cbs_t *cbs;
    void *owner;
    char peer[72];
    char *host;
    uint16_t port;
    unsigned connect_timeout_ms, keepalive_s;
    struct sockaddr_storage addrs[UPSTREAM_ALT_MAX]; /* tried in order */
    unsigned n_addrs, next_addr;
    struct sockaddr_storage source;
    int has_source;
    tstream_t *stream;
    linebuf_t *lines;
    ftp_reply_state_t replies;
    uv_getaddrinfo_t resolver;
    uv_timer_t connect_timer;
    defer_t later; /* a failure found inside a call, told from the loop */
    upstream_failure_t later_why;
    const char *later_detail;
    int later_connect_status; /* nonzero: a connect that failed at once (try the next address) */
    defer_t resume_later; /* lines kept while paused, parsed again from the loop */
    char *kept;           /* the rest of a chunk read before a pause: not parsed until resumed */
    size_t kept_len;
    /* Live handles and requests (resolver, timer, streams): the memory goes
     * when the last one is done after upstream_close, in its callback. */
    unsigned pending;
    unsigned closing : 1, failed : 1, ready : 1, paused : 1;
};

static void up_dial(upstream_t *u);

/* ---- lifetime -------------------------------------------------------------------- */

static void up_release(upstream_t *u)
{
    assert(u->pending > 0);
    if (--u->pending > 0 || !u->closing)
        return;
    defer_cancel(&u->later);
    defer_cancel(&u->resume_later);
    if (u->cbs->on_closed)
        u->cbs->on_closed(u->owner);
    free(u->kept);
    linebuf_free(u->lines);
    free(u->host);
    free(u);
}

static void up_timer_closed(uv_handle_t *h)
{
    up_release(h->data);
}

void upstream_close(upstream_t *u)
{
    if (!u || u->closing)
        return;
    u->closing = 1;
    if (u->stream)
        tstream_close(u->stream, 0);
    uv_cancel((uv_req_t *)&u->resolver); /* harmless when not resolving */
    uv_close((uv_handle_t *)&u->connect_timer, up_timer_closed);
}

static void up_fail(upstream_t *u, upstream_failure_t why, const char *detail)
{
    if (u->failed || u->closing)
        return;
    u->failed = 1;
    if (why == UPSTREAM_UNREACHABLE)
        METRIC_INC(u->o.metrics, backend_connect_failures);
    u->cbs->on_failed(u->owner, why, detail);
}

static void up_connect_failed(upstream_t *u, int status);

static void up_run_later(defer_t *d)
{
    upstream_t *u = (upstream_t *)((char *)d - offsetof(upstream_t, later));
    if (u->closing)
        return;
    if (u->later_connect_status) {
        int status = u->later_connect_status;
        u->later_connect_status = 0;
        up_connect_failed(u, status);
        return;
    }
    up_fail(u, u->later_why, u->later_detail);
}

/* A failure found inside an upstream_* call: told from the loop. */
static void up_fail_later(upstream_t *u, upstream_failure_t why, const char *detail)
{
    u->later_why = why;
    u->later_detail = detail;
    defer_call(&u->later, up_run_later);
}

/* ---- replies ---------------------------------------------------------------------- */

static void up_line(upstream_t *u, const char *line, size_t len)
{
    ftp_reply_line_t r;
    if (ftp_reply_feed(&u->replies, line, len, &r) != FG_OK) {
        char shown[96];
        log_escape(line, len, shown, sizeof shown);
        LOG_WARN(u->o.sid, u->peer, "backend protocol error: \"%s\"", shown);
        up_fail(u, UPSTREAM_PROTOCOL, "not an FTP reply");
        return;
    }
    if (u->ready) {
        u->cbs->on_reply(u->owner, &r, line, len);
        return;
    }
    /* The greeting (RFC 959 §4.2: 120 lines may come before 220). */
    if (!r.last || r.code < 200)
        return;
    if (r.code != 220) {
        char shown[128];
        log_escape(line, len, shown, sizeof shown);
        LOG_WARN(u->o.sid, u->peer, "backend refused the session: \"%s\"", shown);
        up_fail(u, UPSTREAM_REFUSED, "the server refused the session");
        return;
    }
    u->ready = 1;
    u->cbs->on_ready(u->owner);
}

/* Parses reply lines until the owner pauses us (the rest is kept for
 * upstream_resume) or closes us (the rest of the chunk belongs to a retired
 * connection and is never parsed). */
static void up_feed(upstream_t *u, const char *buf, size_t len)
{
    while (len > 0 && !u->closing && !u->failed) {
        if (u->paused) {
            char *keep = malloc(len);
            if (!keep) {
                up_fail(u, UPSTREAM_CLOSED, "out of memory");
                return;
            }
            memcpy(keep, buf, len);
            free(u->kept);
            u->kept = keep;
            u->kept_len = len;
            return;
        }
        size_t used = 0, llen = 0;
        const char *line = NULL;
        int rc = linebuf_take(u->lines, buf, len, &used, &line, &llen);
        buf += used;
        len -= used;
        if (rc == FG_NEED_MORE)
            break;
        if (rc != FG_OK) {
            LOG_WARN(u->o.sid, u->peer, "backend sent a %s reply line", rc == FG_TOO_LONG ? "too long" : "malformed");
            up_fail(u, UPSTREAM_PROTOCOL, "bad reply line");
            return;
        }
        up_line(u, line, llen);
    }
}

static void up_on_data(tstream_t *t, const char *buf, size_t len)
{
    up_feed(tstream_userdata(t), buf, len);
}

static void up_run_resume(defer_t *d)
{
    upstream_t *u = (upstream_t *)((char *)d - offsetof(upstream_t, resume_later));
    char *kept = u->kept;
    size_t n = u->kept_len;
    u->kept = NULL;
    u->kept_len = 0;
    if (kept && !u->paused)
        up_feed(u, kept, n);
    else if (kept) {
        u->kept = kept; /* paused again before this ran */
        u->kept_len = n;
        return;
    }
    free(kept);
    if (!u->paused && !u->closing && u->stream)
        tstream_resume(u->stream);
}

static void up_on_end(tstream_t *t, tstream_end_t how, const char *reason)
{
    (void)how;
    upstream_t *u = tstream_userdata(t);
    LOG_INFO(u->o.sid, u->peer, "backend closed the control connection: %s", reason);
    up_fail(u, UPSTREAM_CLOSED, reason);
}

/* ---- connecting ------------------------------------------------------------------- */

static void up_on_close(tstream_t *t)
{
    upstream_t *u = tstream_userdata(t);
    if (u->stream == t)
        u->stream = NULL;
    up_release(u);
}

/* The connect attempt to the current address failed (status) or timed out:
 * the name's next address, else the backend is unreachable. */
static void up_connect_failed(upstream_t *u, int status)
{
    char addr[72];
    netaddr_format((const struct sockaddr *)&u->addrs[u->next_addr - 1], addr, sizeof addr);
    tstream_t *old = u->stream;
    u->stream = NULL;
    if (old)
        tstream_close(old, 1);
    if (u->next_addr < u->n_addrs && !u->closing) {
        LOG_WARN(u->o.sid, u->peer, "backend %s unreachable: %s; trying the next address", addr,
                 uv_strerror(status));
        up_dial(u);
        return;
    }
    LOG_ERROR(u->o.sid, u->peer, "backend %s unreachable: %s", addr, uv_strerror(status));
    up_fail(u, UPSTREAM_UNREACHABLE, uv_strerror(status));
}

static void up_on_connect_timeout(uv_timer_t *t)
{
    upstream_t *u = t->data;
    if (u->stream && !u->closing)
        up_connect_failed(u, UV_ETIMEDOUT);
}

static void up_on_connect(tstream_t *t, int status)
{
    upstream_t *u = tstream_userdata(t);
    uv_timer_stop(&u->connect_timer);
    if (status < 0) {
        up_connect_failed(u, status);
        return;
    }
    uv_tcp_nodelay(tstream_tcp(t), 1);
    /* Control connections sit idle for as long as a transfer runs: keepalive
     * probes keep NAT and firewall state alive (or the final 226 is lost). */
    if (u->keepalive_s > 0)
        uv_tcp_keepalive(tstream_tcp(t), 1, u->keepalive_s);
    if (tstream_start_read(t) != FG_OK)
        up_fail(u, UPSTREAM_UNREACHABLE, "cannot read");
    else if (u->paused)
        tstream_pause(t);
}

static const tstream_cbs_t up_stream_cbs = {
    .on_connect = up_on_connect,
    .on_data = up_on_data,
    .on_end = up_on_end,
    .on_close = up_on_close,
};

/* Connects to the next address in turn. */
static void up_dial(upstream_t *u)
{
    const struct sockaddr *to = (const struct sockaddr *)&u->addrs[u->next_addr++];
    char addr[72];
    u->stream = tstream_new(u->o.loop, &up_stream_cbs, u);
    if (!u->stream) {
        up_fail_later(u, UPSTREAM_UNREACHABLE, "out of memory");
        return;
    }
    u->pending++;
    if (u->has_source) {
        /* Source-IP transparency: the legacy server sees the client's address. */
        if (u->source.ss_family != to->sa_family ||
            transparent_bind(tstream_tcp(u->stream), (const struct sockaddr *)&u->source, 1) != 0) {
            LOG_ERROR(u->o.sid, u->peer, "cannot connect to the backend from the client's address");
            up_fail_later(u, UPSTREAM_UNREACHABLE, "source address");
            return;
        }
    }
    LOG_INFO(u->o.sid, u->peer, "backend %s%s", netaddr_format(to, addr, sizeof addr),
             u->has_source ? " (from the client's address)" : "");
    if (tstream_connect(u->stream, to) != FG_OK) {
        /* An immediate error (no route, bad family): the next address, from the loop. */
        u->later_connect_status = UV_ECONNREFUSED;
        defer_call(&u->later, up_run_later);
        return;
    }
    /* A silently dropped SYN would otherwise hold the session until the
     * kernel gives up (minutes), never trying the name's next address. */
    uv_timer_start(&u->connect_timer, up_on_connect_timeout, u->connect_timeout_ms, 0);
}

static void up_on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    upstream_t *u = req->data;
    if (u->closing) {
        uv_freeaddrinfo(res);
        up_release(u);
        return;
    }
    for (const struct addrinfo *ai = res; status == 0 && ai && u->n_addrs < UPSTREAM_ALT_MAX; ai = ai->ai_next) {
        int dup = 0;
        for (unsigned i = 0; i < u->n_addrs; i++)
            dup |= netaddr_same_ip(ai->ai_addr, (const struct sockaddr *)&u->addrs[i]);
        if (dup || ai->ai_addrlen > sizeof u->addrs[0])
            continue;
        memcpy(&u->addrs[u->n_addrs], ai->ai_addr, ai->ai_addrlen);
        netaddr_set_port((struct sockaddr *)&u->addrs[u->n_addrs++], u->port);
    }
    uv_freeaddrinfo(res);
    if (u->n_addrs == 0) {
        LOG_ERROR(u->o.sid, u->peer, "cannot resolve backend %s: %s", u->host,
                  status < 0 ? uv_strerror(status) : "no address");
        up_fail(u, UPSTREAM_UNREACHABLE, "name does not resolve");
        up_release(u);
        return;
    }
    up_dial(u);
    up_release(u); /* the resolver's count; the stream holds its own */
}

const char *upstream_failure_reply(upstream_failure_t why)
{
    switch (why) {
    case UPSTREAM_UNREACHABLE:
        return "Service not available: cannot reach the FTP server";
    case UPSTREAM_REFUSED:
        /* The backend's own refusal line (e.g. vsftpd's "500 OOPS") is logged;
         * RFC 959: 421, the service is not available. */
        return "Service not available: the FTP server refused the session";
    case UPSTREAM_PROTOCOL:
        return "Service not available: bad reply from server";
    default:
        return "Service not available, remote server has closed connection";
    }
}

upstream_t *upstream_open(const upstream_opts_t *o, const upstream_cbs_t *cbs, void *owner)
{
    upstream_t *u = calloc(1, sizeof *u);
    if (!u)
        return NULL;
    u->o = *o;
    u->cbs = cbs;
    u->owner = owner;
    snprintf(u->peer, sizeof u->peer, "%s", o->peer ? o->peer : "");
    u->o.peer = u->peer;
    const config_backend_t *b = o->backend;
    u->port = b->address.port;
    u->connect_timeout_ms = o->limits->backend_connect_timeout_s * 1000u;
    u->keepalive_s = o->limits->tcp_keepalive_s;
    u->lines = linebuf_new(UPSTREAM_LINE_MAX, 0);
    u->host = o->intercepted ? NULL : strdup(b->address.host);
    if (!u->lines || (!o->intercepted && !u->host)) {
        linebuf_free(u->lines);
        free(u->host);
        free(u);
        return NULL;
    }
    ftp_reply_init(&u->replies);
    if (b->source_client) {
        /* Source-IP transparency: the legacy server sees the client's address. */
        memcpy(&u->source, o->client, netaddr_len(o->client));
        netaddr_set_port((struct sockaddr *)&u->source, 0);
        u->has_source = 1;
    }
    uv_timer_init(o->loop, &u->connect_timer);
    u->connect_timer.data = u;
    u->pending = 1; /* the timer */
    if (o->intercepted) {
        /* Interception: the server the client dialled, on backend.port if set. */
        memcpy(&u->addrs[0], o->intercepted, netaddr_len(o->intercepted));
        if (b->port)
            netaddr_set_port((struct sockaddr *)&u->addrs[0], b->port);
        u->n_addrs = 1;
        up_dial(u);
        return u;
    }
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)u->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    u->resolver.data = u;
    u->pending++;
    if (uv_getaddrinfo(o->loop, &u->resolver, up_on_resolved, u->host, port, &hints) != 0) {
        u->pending--;
        up_fail_later(u, UPSTREAM_UNREACHABLE, "cannot resolve");
    }
    return u;
}

/* ---- commands ----------------------------------------------------------------------- */

int upstream_send_raw(upstream_t *u, const char *data, size_t len)
{
    if (!u->stream || u->closing)
        return FG_STATE;
    return tstream_write(u->stream, data, len);
}

int upstream_send_line(upstream_t *u, const char *line, size_t len)
{
    if (len > UPSTREAM_CMD_MAX)
        return FG_TOO_LONG;
    size_t iac = 0;
    for (size_t i = 0; i < len; i++)
        iac += (unsigned char)line[i] == 0xFF;
    char *buf = malloc(len + iac + 2);
    if (!buf)
        return FG_NOMEM;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        buf[n++] = line[i];
        if ((unsigned char)line[i] == 0xFF)
            buf[n++] = line[i];
    }
    buf[n++] = '\r';
    buf[n++] = '\n';
    int rc = upstream_send_raw(u, buf, n);
    free(buf);
    return rc;
}

void upstream_send_abort(upstream_t *u)
{
    static const char urgent[] = {(char)0xFF, (char)0xF4, (char)0xFF};
    static const char rest[] = {(char)0xF2, 'A', 'B', 'O', 'R', '\r', '\n'};
    uv_os_fd_t fd;
    if (!u->stream || u->closing)
        return;
    if (tstream_queued(u->stream) == 0 && uv_fileno((uv_handle_t *)tstream_tcp(u->stream), &fd) == 0 &&
        send(fd, urgent, sizeof urgent, MSG_OOB | MSG_NOSIGNAL) == (ssize_t)sizeof urgent) {
        tstream_write(u->stream, rest, sizeof rest);
        return;
    }
    static const char plain[] = "ABOR\r\n";
    tstream_write(u->stream, plain, sizeof plain - 1);
}

void upstream_pause(upstream_t *u)
{
    u->paused = 1;
    if (u->stream)
        tstream_pause(u->stream);
}

void upstream_resume(upstream_t *u)
{
    if (!u->paused)
        return;
    u->paused = 0;
    /* Kept lines first, from the loop (never inside this call). */
    defer_call(&u->resume_later, up_run_resume);
}

const struct sockaddr *upstream_peer(const upstream_t *u)
{
    unsigned i = u->next_addr > 0 ? u->next_addr - 1 : 0;
    return (const struct sockaddr *)&u->addrs[i];
}

int upstream_local(upstream_t *u, struct sockaddr_storage *out)
{
    int len = sizeof *out;
    memset(out, 0, sizeof *out);
    if (!u->stream)
        return FG_STATE;
    return uv_tcp_getsockname(tstream_tcp(u->stream), (struct sockaddr *)out, &len) == 0 ? FG_OK : FG_IO;
}
