/* upstream.h for the session fuzzer: the backend control connection with no
 * resolver and no socket. The backend's bytes come from the fuzz script
 * (fzu_send) and are read as upstream.c reads them: the real linebuf (no
 * Telnet, 8 KiB lines) and reply parser, the greeting first, nothing read
 * while paused. What the session writes goes to the driver's checks. */
#include "upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "defer.h"
#include "fake_world.h"
#include "fgerr.h"
#include "ftp_reply.h"
#include "linebuf.h"

#define LINE_CAP 8192u
#define CMD_MAX 65536u

struct upstream {
    upstream_t *next; /* every upstream not yet freed, newest first */
    const upstream_cbs_t *cbs;
    void *owner;
    linebuf_t *lines;
    ftp_reply_state_t replies;
    char *inbox; /* the backend's bytes not read yet */
    size_t in_len, in_cap;
    defer_t later;     /* on_failed (a failure inside a call) or on_closed */
    upstream_failure_t later_why;
    unsigned ready : 1, failed : 1, closing : 1, paused : 1, fail_pending : 1;
};

static struct {
    upstream_t *all;
    int writes_broken;
    size_t fake_bytes;
} W;

static upstream_t *newest_open(void)
{
    for (upstream_t *u = W.all; u; u = u->next)
        if (!u->closing)
            return u;
    return NULL;
}

static void unlink_up(upstream_t *u)
{
    for (upstream_t **p = &W.all; *p; p = &(*p)->next)
        if (*p == u) {
            *p = u->next;
            return;
        }
}

static void up_free(upstream_t *u)
{
    unlink_up(u);
    W.fake_bytes -= u->in_cap;
    linebuf_free(u->lines);
    free(u->inbox);
    free(u);
}

static void fail(upstream_t *u, upstream_failure_t why, const char *detail)
{
    if (u->failed || u->closing)
        return;
    u->failed = 1;
    fz_trace("backend: failure %d (%s)", (int)why, detail);
    u->cbs->on_failed(u->owner, why, detail);
}

static void run_later(defer_t *d)
{
    upstream_t *u = (upstream_t *)((char *)d - offsetof(upstream_t, later));
    if (u->closing) {
        /* The memory goes after the last callback, as upstream.c's handles. */
        if (u->cbs->on_closed)
            u->cbs->on_closed(u->owner);
        up_free(u);
        return;
    }
    if (u->fail_pending) {
        u->fail_pending = 0;
        fail(u, u->later_why, "write failed");
    }
}

/* ---- the driver's side ------------------------------------------------------------- */

void fzu_send(const char *data, size_t len)
{
    upstream_t *u = newest_open();
    if (len == 0)
        return;
    if (!u) {
        fz_trace_bytes("backend bytes with no connection (dropped)", data, len);
        return;
    }
    if (u->in_len + len > u->in_cap) {
        size_t cap = u->in_len + len;
        char *p = realloc(u->inbox, cap);
        if (!p)
            abort();
        W.fake_bytes += cap - u->in_cap;
        u->inbox = p;
        u->in_cap = cap;
    }
    memcpy(u->inbox + u->in_len, data, len);
    u->in_len += len;
}

void fzu_fail(int why)
{
    upstream_t *u = newest_open();
    if (u)
        fail(u, (upstream_failure_t)why, "fuzz event");
}

void fzu_break_writes(void)
{
    W.writes_broken = 1;
}

/* Reads one line when the upstream is reading: as upstream.c's up_feed. */
static int read_one(upstream_t *u)
{
    if (u->closing || u->failed || u->paused || u->in_len == 0)
        return 0;
    size_t used = 0, llen = 0;
    const char *line = NULL;
    int rc = linebuf_take(u->lines, u->inbox, u->in_len, &used, &line, &llen);
    /* line points into the linebuf (or into inbox, which the callback must not
     * see moved): copy it before the inbox shifts. */
    char *copy = NULL;
    if (rc == FG_OK) {
        copy = malloc(llen ? llen : 1);
        if (!copy)
            abort();
        memcpy(copy, line, llen);
    }
    memmove(u->inbox, u->inbox + used, u->in_len - used);
    u->in_len -= used;
    if (rc == FG_NEED_MORE)
        return used > 0;
    if (rc != FG_OK) {
        fail(u, UPSTREAM_PROTOCOL, "bad reply line");
        return 1;
    }
    ftp_reply_line_t r;
    fz_trace_bytes("backend replies", copy, llen);
    if (ftp_reply_feed(&u->replies, copy, llen, &r) != FG_OK) {
        fail(u, UPSTREAM_PROTOCOL, "not an FTP reply");
    } else if (u->ready) {
        u->cbs->on_reply(u->owner, &r, copy, llen);
    } else if (r.last && r.code >= 200) {
        if (r.code != 220) {
            fail(u, UPSTREAM_REFUSED, "the server refused the session");
        } else {
            u->ready = 1;
            u->cbs->on_ready(u->owner);
        }
    }
    free(copy);
    return 1;
}

int fzu_pump(void)
{
    int progress = 0;
    for (upstream_t *u = W.all; u; u = u->next)
        while (read_one(u))
            progress = 1;
    return progress;
}

unsigned fzu_live(void)
{
    unsigned n = 0;
    for (upstream_t *u = W.all; u; u = u->next)
        n++;
    return n;
}

size_t fzu_fake_bytes(void)
{
    return W.fake_bytes;
}

void fzu_reset_world(void)
{
    if (W.all)
        FZ_FAIL("a backend connection outlived its session");
    W.writes_broken = 0;
    W.fake_bytes = 0;
}

/* ---- upstream.h ------------------------------------------------------------------------ */

const char *upstream_failure_reply(upstream_failure_t why)
{
    switch (why) {
    case UPSTREAM_UNREACHABLE:
        return "Service not available: cannot reach the FTP server";
    case UPSTREAM_REFUSED:
        return "Service not available: the FTP server refused the session";
    case UPSTREAM_PROTOCOL:
        return "Service not available: bad reply from server";
    default:
        return "Service not available, remote server has closed connection";
    }
}

upstream_t *upstream_open(const upstream_opts_t *o, const upstream_cbs_t *cbs, void *owner)
{
    if (!o->loop || !o->backend || !o->limits || !o->client || !o->metrics)
        FZ_FAIL("upstream_open with incomplete options");
    if (newest_open())
        FZ_FAIL("a second backend connection opened while one is live");
    upstream_t *u = calloc(1, sizeof *u);
    if (!u)
        abort();
    u->lines = linebuf_new(LINE_CAP, 0);
    if (!u->lines)
        abort();
    ftp_reply_init(&u->replies);
    u->cbs = cbs;
    u->owner = owner;
    u->next = W.all;
    W.all = u;
    fz_trace("backend: connecting%s", o->intercepted ? " (intercepted destination)" : "");
    return u;
}

static void check_live(const upstream_t *u, const char *call)
{
    if (!u)
        FZ_FAIL("%s on NULL", call);
    if (u->closing)
        FZ_FAIL("%s after upstream_close", call);
}

static int write_backend(upstream_t *u, fz_up_kind_t kind, const char *data, size_t len)
{
    if (u->failed)
        return FG_STATE;
    if (!u->ready)
        FZ_FAIL("a command went to the backend before its 220 greeting");
    fz_obs_backend_command(kind, data, len);
    if (W.writes_broken) {
        /* tstream_write fails at once and the stream reports the end. */
        u->later_why = UPSTREAM_CLOSED;
        u->fail_pending = 1;
        defer_call(&u->later, run_later);
        return FG_IO;
    }
    return FG_OK;
}

int upstream_send_raw(upstream_t *u, const char *data, size_t len)
{
    check_live(u, "upstream_send_raw");
    return write_backend(u, FZ_UP_RAW, data, len);
}

int upstream_send_line(upstream_t *u, const char *line, size_t len)
{
    check_live(u, "upstream_send_line");
    if (len > CMD_MAX)
        return FG_TOO_LONG;
    return write_backend(u, FZ_UP_LINE, line, len);
}

void upstream_send_abort(upstream_t *u)
{
    check_live(u, "upstream_send_abort");
    write_backend(u, FZ_UP_ABORT, "ABOR", 4);
}

void upstream_pause(upstream_t *u)
{
    check_live(u, "upstream_pause");
    u->paused = 1;
}

void upstream_resume(upstream_t *u)
{
    check_live(u, "upstream_resume");
    u->paused = 0; /* the driver's next pump reads on, from the loop */
}

const struct sockaddr *upstream_peer(const upstream_t *u)
{
    check_live(u, "upstream_peer");
    return (const struct sockaddr *)&fz_env.backend_addr;
}

int upstream_local(upstream_t *u, struct sockaddr_storage *out)
{
    check_live(u, "upstream_local");
    memcpy(out, &fz_env.backend_local, sizeof *out);
    return FG_OK;
}

void upstream_close(upstream_t *u)
{
    if (!u || u->closing)
        return;
    u->closing = 1;
    fz_trace("backend: connection closed by the session");
    defer_cancel(&u->later);
    defer_call(&u->later, run_later);
}
