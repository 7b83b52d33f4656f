/* client.h for the session fuzzer: the client's control connection with no
 * socket and no TLS engine. The client's bytes come from the fuzz script
 * through a modelled socket (fzc_send); the line reading is client.c's (the
 * real linebuf, the same input cap and pause marks), TLS is modelled as
 * events: a handshake that completes when the client's handshake arrives,
 * fails on anything else, and a close_notify exchange for CCC and REIN.
 *
 * Each input byte carries whether it arrived in clear, so the driver can
 * check that no plaintext sent before TLS started is executed after it. */
#include "client.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_world.h"
#include "fgerr.h"
#include "ftp_cmd.h"
#include "linebuf.h"

/* As client.c: reading pauses above the first mark, overflow past the second. */
#define IN_PAUSE (8u * 1024u)
#define IN_MAX (IN_PAUSE + 80u * 1024u)
#define READ_CLEAR (64u * 1024u) /* one read: tstream's clear buffer, or one TLS record */
#define READ_TLS (16u * 1024u)
#define REPLY_MAX 512u
#define LINE_MAX_OUT 8192u
#define TAINT_BUCKETS 1024u

/* TLS on the connection, as our side sees it. */
typedef enum { FZC_CLEAR = 0, FZC_HANDSHAKING, FZC_OPEN, FZC_STOPPING } fzc_tls_t;

/* ---- the modelled socket: what the client sent and we did not read yet -------------- */

typedef struct seg {
    struct seg *next;
    fzc_kind_t kind;
    int sent_in_tls; /* the client's view when it sent the bytes */
    size_t len, pos;
    char data[];
} seg_t;

/* Lines taken, by normalized "VERB arg", with how they arrived. */
typedef struct taint {
    struct taint *next;
    int protected_seen;   /* a copy arrived entirely under TLS */
    int clear_seen;
    unsigned clear_epoch; /* the TLS epoch when the latest clear copy arrived */
    int clear_deferred;   /* ...and whether it was taken while a transfer ran */
    size_t len;
    char key[];
} taint_t;

struct client {
    const client_cbs_t *cbs;
    void *owner;
    linebuf_t *lines;
    char *in;
    unsigned char *in_clear; /* per byte: arrived in clear */
    size_t in_len, in_pos, in_cap;
    size_t line_clear;       /* clear bytes in the line being assembled */
    unsigned char *pp;       /* PROXY header being read */
    size_t pp_len;
    uv_tcp_t tcp;            /* never connected: client_tcp for keepalive */
    fzc_tls_t tls;
    unsigned paused : 1, closing : 1, shutting : 1, close_started : 1, ended : 1, restart_tls : 1,
        hold_tickets : 1, above_high : 1;
    size_t queued;
};

static struct {
    client_t *c;
    seg_t *head, *tail;
    size_t socket_bytes;
    int client_tls_view; /* between its handshake and its close_notify */
    int reading;
    unsigned epoch;      /* TLS starts so far */
    taint_t *taint[TAINT_BUCKETS];
    size_t taint_bytes;
} W = {.reading = 1};

static void fail_now(const char *what)
{
    FZ_FAIL("client.h misuse: %s", what);
}

/* ---- taint bookkeeping --------------------------------------------------------------- */

/* The key of a command: its verb (upper case) and its argument, as ftp_cmd_parse gives them. */
static uint32_t hash_cmd(const char *verb, const char *arg, size_t arg_len)
{
    uint32_t h = 2166136261u;
    for (const char *v = verb; *v; v++)
        h = (h ^ (unsigned char)*v) * 16777619u;
    h = (h ^ ' ') * 16777619u;
    for (size_t i = 0; i < arg_len; i++)
        h = (h ^ (unsigned char)arg[i]) * 16777619u;
    return h;
}

static taint_t *taint_find(const char *verb, const char *arg, size_t arg_len, int create)
{
    size_t vlen = strlen(verb);
    uint32_t b = hash_cmd(verb, arg, arg_len) % TAINT_BUCKETS;
    for (taint_t *t = W.taint[b]; t; t = t->next)
        if (t->len == vlen + 1 + arg_len && memcmp(t->key, verb, vlen) == 0 && t->key[vlen] == ' ' &&
            (arg_len == 0 || memcmp(t->key + vlen + 1, arg, arg_len) == 0))
            return t;
    if (!create)
        return NULL;
    taint_t *t = calloc(1, sizeof *t + vlen + 1 + arg_len);
    if (!t)
        abort();
    memcpy(t->key, verb, vlen);
    t->key[vlen] = ' ';
    if (arg_len)
        memcpy(t->key + vlen + 1, arg, arg_len);
    t->len = vlen + 1 + arg_len;
    t->next = W.taint[b];
    W.taint[b] = t;
    W.taint_bytes += sizeof *t + t->len;
    return t;
}

static void taint_record(const char *line, size_t len, int had_clear)
{
    ftp_cmd_t cmd;
    if (ftp_cmd_parse(line, len, &cmd) != FG_OK)
        return; /* never executed */
    taint_t *t = taint_find(cmd.verb, cmd.arg, cmd.arg ? cmd.arg_len : 0, 1);
    if (had_clear) {
        t->clear_seen = 1;
        t->clear_epoch = W.epoch;
        t->clear_deferred = fz_transfer_running();
    } else {
        t->protected_seen = 1;
    }
}

static taint_t *taint_lookup(const char *verb, const char *arg, size_t arg_len)
{
    return taint_find(verb, arg, arg ? arg_len : 0, 0);
}

int fzc_line_stale(const char *verb, const char *arg, size_t arg_len, int *deferred)
{
    taint_t *t = taint_lookup(verb, arg, arg_len);
    /* Unknown: not from the client's stream (e.g. a line the session made). */
    if (!t || t->protected_seen || !t->clear_seen || t->clear_epoch >= W.epoch)
        return 0;
    *deferred = t->clear_deferred;
    return 1;
}

int fzc_line_protected(const char *verb, const char *arg, size_t arg_len)
{
    taint_t *t = taint_lookup(verb, arg, arg_len);
    return t && t->protected_seen;
}

/* ---- the world, for the driver --------------------------------------------------------- */

void fzc_send(fzc_kind_t kind, const char *data, size_t len)
{
    if (kind == FZC_HANDSHAKE)
        W.client_tls_view = 1;
    seg_t *s = malloc(sizeof *s + len);
    if (!s)
        abort();
    s->next = NULL;
    s->kind = kind;
    s->sent_in_tls = W.client_tls_view;
    s->len = len;
    s->pos = 0;
    if (len)
        memcpy(s->data, data, len);
    if (kind == FZC_CLOSE_NOTIFY)
        W.client_tls_view = 0;
    if (W.tail)
        W.tail->next = s;
    else
        W.head = s;
    W.tail = s;
    W.socket_bytes += sizeof *s + len;
}

static void drop_socket(void)
{
    while (W.head) {
        seg_t *s = W.head;
        W.head = s->next;
        free(s);
    }
    W.tail = NULL;
    W.socket_bytes = 0;
}

int fzc_alive(void)
{
    return W.c != NULL;
}

size_t fzc_queued(void)
{
    return W.c ? W.c->queued : 0;
}

size_t fzc_fake_bytes(void)
{
    return W.socket_bytes + W.taint_bytes;
}

void fzc_set_reading(int on)
{
    W.reading = on;
}

void fzc_reset_world(void)
{
    if (W.c)
        FZ_FAIL("a client connection outlived its session");
    drop_socket();
    for (unsigned i = 0; i < TAINT_BUCKETS; i++) {
        while (W.taint[i]) {
            taint_t *t = W.taint[i];
            W.taint[i] = t->next;
            free(t);
        }
    }
    W.taint_bytes = 0;
    W.client_tls_view = 0;
    W.reading = 1;
    W.epoch = 0;
}

/* ---- closing ------------------------------------------------------------------------------- */

static void on_tcp_closed(uv_handle_t *h)
{
    client_t *c = h->data;
    if (c->cbs->on_closed)
        c->cbs->on_closed(c->owner);
    linebuf_free(c->lines);
    free(c->in);
    free(c->in_clear);
    free(c->pp);
    free(c);
    W.c = NULL;
    drop_socket();
}

static void begin_close(client_t *c)
{
    if (c->close_started)
        return;
    c->close_started = 1;
    c->closing = 1;
    fz_trace("client: connection closed");
    uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
}

/* The end of the client's stream, as tstream reports it (reading stops). */
static void report_end(client_t *c, tstream_end_t how, const char *reason)
{
    c->ended = 1;
    fz_trace("client: end (%s)", reason);
    if (c->closing) {
        begin_close(c);
        return;
    }
    c->cbs->on_end(c->owner, how, reason);
}

void fzc_reset(void)
{
    client_t *c = W.c;
    drop_socket();
    if (c && !c->close_started && !c->ended)
        report_end(c, TSTREAM_END_RESET, "connection reset by peer");
}

/* ---- input ------------------------------------------------------------------------------- */

static int append(client_t *c, const char *buf, size_t len, int clear)
{
    if (c->in_pos > 0) {
        memmove(c->in, c->in + c->in_pos, c->in_len - c->in_pos);
        memmove(c->in_clear, c->in_clear + c->in_pos, c->in_len - c->in_pos);
        c->in_len -= c->in_pos;
        c->in_pos = 0;
    }
    if (c->in_len + len > IN_MAX)
        return FG_TOO_LONG;
    if (c->in_len + len > c->in_cap) {
        size_t cap = c->in_len + len;
        char *p = realloc(c->in, cap);
        if (p)
            c->in = p;
        unsigned char *q = p ? realloc(c->in_clear, cap) : NULL;
        if (!p || !q)
            abort();
        c->in_clear = q;
        c->in_cap = cap;
    }
    memcpy(c->in + c->in_len, buf, len);
    memset(c->in_clear + c->in_len, clear, len);
    c->in_len += len;
    if (c->in_len > IN_PAUSE)
        c->paused = 1;
    return FG_OK;
}

static void unpause_if_drained(client_t *c)
{
    if (c->paused && c->in_len - c->in_pos < IN_PAUSE / 2 && !c->closing)
        c->paused = 0;
}

int client_take_line(client_t *c, const char **line, size_t *len)
{
    while (c->in_pos < c->in_len) {
        size_t used = 0;
        int rc = linebuf_take(c->lines, c->in + c->in_pos, c->in_len - c->in_pos, &used, line, len);
        for (size_t i = 0; i < used; i++)
            c->line_clear += c->in_clear[c->in_pos + i];
        c->in_pos += used;
        if (rc == FG_NEED_MORE)
            continue;
        if (rc == FG_OK) {
            taint_record(*line, *len, c->line_clear > 0);
            fz_trace_bytes(c->line_clear ? "client line (clear)" : "client line (tls)", *line, *len);
        }
        c->line_clear = 0;
        return rc;
    }
    c->in_len = c->in_pos = 0;
    unpause_if_drained(c);
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
    c->line_clear = 0;
    linebuf_reset(c->lines);
    unpause_if_drained(c);
    return dropped;
}

/* The PROXY header, before anything else (client.c). */
static void read_proxy_header(client_t *c, const char *buf, size_t len)
{
    size_t room = PROXYPROTO_MAX - c->pp_len, take = len < room ? len : room;
    memcpy(c->pp + c->pp_len, buf, take);
    c->pp_len += take;
    proxyproto_t pp;
    int rc = proxyproto_parse(c->pp, c->pp_len, &pp);
    if (rc == FG_NEED_MORE && take == len)
        return;
    if (rc != FG_OK) {
        c->cbs->on_proxy_header(c->owner, rc == FG_NEED_MORE ? FG_TOO_LONG : rc, NULL);
        return;
    }
    unsigned char *header = c->pp;
    size_t total = c->pp_len;
    c->pp = NULL;
    if (!pp.local)
        memcpy(&fz_env.real_client, &pp.src, sizeof fz_env.real_client);
    if (c->cbs->on_proxy_header(c->owner, FG_OK, &pp) != 0 || c->closing) {
        free(header);
        return;
    }
    /* What followed the header is the client's stream: clear bytes, or TLS
     * records when an implicit listener started TLS (modelled as garbage). */
    size_t rest = total - pp.header_len + (len - take);
    int ok = FG_OK;
    if (rest > 0 && c->tls != FZC_CLEAR) {
        free(header);
        report_end(c, TSTREAM_END_TLS_FAILED, "plaintext after the PROXY header on a TLS listener");
        return;
    }
    if (total > pp.header_len)
        ok = append(c, (const char *)header + pp.header_len, total - pp.header_len, 1);
    if (ok == FG_OK && len > take)
        ok = append(c, buf + take, len - take, 1);
    free(header);
    if (ok != FG_OK) {
        report_end(c, TSTREAM_END_RESET, "client input overflow");
        return;
    }
    if (client_has_input(c))
        c->cbs->on_input(c->owner);
}

static void deliver(client_t *c, const char *buf, size_t len, int clear)
{
    if (c->pp) {
        if (!clear) {
            report_end(c, TSTREAM_END_TLS_FAILED, "TLS before the PROXY header");
            return;
        }
        read_proxy_header(c, buf, len);
        return;
    }
    if (append(c, buf, len, clear) != FG_OK) {
        report_end(c, TSTREAM_END_RESET, "client input overflow");
        return;
    }
    c->cbs->on_input(c->owner);
}

/* Bytes that are not TLS where TLS is expected (or a TLS record in clear). */
static const char TLS_HELLO[] = "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03";
static const char TLS_ALERT[] = "\x15\x03\x03\x00\x02\x01\x00";

static int start_tls_state(client_t *c)
{
    if (c->tls != FZC_CLEAR)
        return FG_STATE;
    /* SECURITY (checked): what the session did not discard before TLS would be
     * executed as if it came under TLS (CVE-2011-0411 class). */
    size_t unread = 0;
    for (size_t i = c->in_pos; i < c->in_len; i++)
        unread += c->in_clear[i];
    if (unread > 0 || c->line_clear > 0)
        FZ_FAIL("TLS started with %zu plaintext bytes still unread in the client's input", unread + c->line_clear);
    c->tls = FZC_HANDSHAKING;
    W.epoch++;
    fz_obs_tls_started();
    return FG_OK;
}

/* One step of reading the socket. */
static int read_socket(client_t *c)
{
    seg_t *s = W.head;
    if (!s)
        return 0;
    int tls = c->tls != FZC_CLEAR;
    size_t len = s->len - s->pos;
    const char *data = s->data + s->pos;
    int done_seg = 1;
    switch (s->kind) {
    case FZC_DATA:
        if (c->tls == FZC_HANDSHAKING || (tls && !s->sent_in_tls)) {
            /* Plaintext where TLS records are expected (or records of a
             * session that was stopped): the TLS engine fails. */
            report_end(c, TSTREAM_END_TLS_FAILED, "not a TLS record");
            break;
        }
        if (len > (tls ? READ_TLS : READ_CLEAR)) {
            len = tls ? READ_TLS : READ_CLEAR;
            done_seg = 0;
        }
        s->pos += len;
        W.socket_bytes -= len;
        fz_trace_bytes(tls ? "client sends (tls)" : "client sends (clear)", data, len);
        deliver(c, data, len, !tls);
        break;
    case FZC_HANDSHAKE:
        if (c->tls == FZC_HANDSHAKING) {
            c->tls = FZC_OPEN;
            fz_trace("client: TLS handshake done");
            if (c->cbs->on_handshake)
                c->cbs->on_handshake(c->owner);
        } else if (tls) {
            report_end(c, TSTREAM_END_TLS_FAILED, "renegotiation refused");
        } else {
            deliver(c, TLS_HELLO, sizeof TLS_HELLO - 1, 1);
        }
        break;
    case FZC_CLOSE_NOTIFY:
        if (c->tls == FZC_STOPPING) {
            fz_trace("client: close_notify answered%s", c->restart_tls ? ", new handshake awaited" : "");
            c->tls = FZC_CLEAR;
            linebuf_reset(c->lines);
            c->line_clear = 0;
            if (c->restart_tls && start_tls_state(c) != FG_OK) {
                report_end(c, TSTREAM_END_TLS_FAILED, "cannot start TLS again");
                break;
            }
            c->cbs->on_tls_stopped(c->owner, c->restart_tls);
        } else if (c->tls == FZC_OPEN) {
            report_end(c, TSTREAM_END_CLEAN, "close_notify");
        } else if (tls) {
            report_end(c, TSTREAM_END_TLS_FAILED, "alert during the handshake");
        } else {
            deliver(c, TLS_ALERT, sizeof TLS_ALERT - 1, 1);
        }
        break;
    case FZC_TLS_GARBAGE:
        if (tls)
            report_end(c, TSTREAM_END_TLS_FAILED, "bad record");
        else
            deliver(c, TLS_HELLO, sizeof TLS_HELLO - 1, 1);
        break;
    case FZC_FIN:
        report_end(c, c->tls == FZC_OPEN ? TSTREAM_END_TRUNCATED : TSTREAM_END_CLEAN, "FIN");
        break;
    }
    if (done_seg && W.head == s) {
        W.head = s->next;
        if (!W.head)
            W.tail = NULL;
        W.socket_bytes -= sizeof *s + (s->len - s->pos);
        free(s);
    }
    return 1;
}

int fzc_pump(void)
{
    client_t *c = W.c;
    if (!c || c->close_started)
        return 0;
    int progress = 0;
    if (W.reading && c->queued > 0) {
        fz_trace("client: reads %zu bytes of replies", c->queued);
        c->queued = 0;
        progress = 1;
        if (c->above_high) {
            c->above_high = 0;
            if (c->cbs->on_drain)
                c->cbs->on_drain(c->owner);
        }
    }
    if (W.c != c || c->close_started)
        return 1;
    if (c->shutting) {
        /* Everything we wrote was read: close_notify and FIN, then close. */
        if (c->queued == 0) {
            begin_close(c);
            return 1;
        }
        return progress;
    }
    if (!c->closing && !c->ended && !c->paused)
        progress |= read_socket(c);
    return progress;
}

/* ---- output ------------------------------------------------------------------------------- */

static void write_out(client_t *c, fz_out_src_t src, const char *data, size_t len)
{
    if (!c || c->closing || c->close_started)
        return;
    fz_trace_bytes("to client", data, len);
    c->queued += len;
    if (c->queued > TSTREAM_HIGH_MARK)
        c->above_high = 1;
    fz_obs_client_output(src, data, len);
}

void client_write(client_t *c, const char *data, size_t len)
{
    write_out(c, FZ_OUT_WRITE, data, len);
}

void client_line(client_t *c, const char *line, size_t len)
{
    char buf[LINE_MAX_OUT + 2];
    if (len > LINE_MAX_OUT)
        len = LINE_MAX_OUT;
    memcpy(buf, line, len);
    buf[len] = '\r';
    buf[len + 1] = '\n';
    write_out(c, FZ_OUT_LINE, buf, len + 2);
}

void client_reply(client_t *c, int code, const char *fmt, ...)
{
    char buf[REPLY_MAX];
    int n = snprintf(buf, sizeof buf, "%d ", code);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 2, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (size_t)(m < 0 ? 0 : m);
    if (len > sizeof buf - 3)
        len = sizeof buf - 3;
    buf[len++] = '\r';
    buf[len++] = '\n';
    write_out(c, FZ_OUT_REPLY, buf, len);
}

size_t client_queued(const client_t *c)
{
    return c ? c->queued : 0;
}

/* ---- lifetime and TLS ------------------------------------------------------------------------ */

client_t *client_new(tstream_t *stream, int proxy_header, size_t max_line, const client_cbs_t *cbs, void *owner)
{
    (void)stream; /* the driver's placeholder: no stream exists */
    if (W.c)
        fail_now("a second client connection");
    client_t *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    c->lines = linebuf_new(max_line, 1);
    c->in_cap = 2048;
    c->in = malloc(c->in_cap);
    c->in_clear = malloc(c->in_cap);
    c->pp = proxy_header ? malloc(PROXYPROTO_MAX) : NULL;
    if (!c->lines || !c->in || !c->in_clear || (proxy_header && !c->pp))
        abort();
    c->cbs = cbs;
    c->owner = owner;
    uv_tcp_init(fz_env.loop, &c->tcp);
    c->tcp.data = c;
    W.c = c;
    return c;
}

int client_start(client_t *c)
{
    (void)c;
    return FG_OK;
}

void client_set_tls(client_t *c, SSL_CTX *ctx, const unsigned char *token, const tls_sni_t *sni)
{
    (void)c;
    (void)token;
    (void)sni;
    if (!ctx)
        fail_now("client_set_tls without a context");
}

void client_hold_tickets(client_t *c)
{
    c->hold_tickets = 1;
}

void client_issue_ticket(client_t *c)
{
    (void)c; /* no engine: nothing to issue */
}

int client_start_tls(client_t *c)
{
    if (c->close_started)
        fail_now("client_start_tls on a closed client");
    return start_tls_state(c);
}

int client_stop_tls(client_t *c, int restart)
{
    if (c->tls != FZC_OPEN || c->closing)
        return FG_STATE;
    c->tls = FZC_STOPPING;
    c->restart_tls = restart ? 1 : 0;
    fz_trace("client: close_notify sent%s", restart ? " (restart)" : "");
    return FG_OK;
}

int client_tls_stopping(const client_t *c)
{
    return c->tls == FZC_STOPPING;
}

tls_engine_t *client_tls(client_t *c)
{
    (void)c;
    return NULL;
}

const char *client_tls_desc(client_t *c)
{
    return c->tls == FZC_CLEAR ? "clear" : "fake TLS";
}

void client_shutdown(client_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    c->shutting = 1;
}

void client_close(client_t *c)
{
    c->closing = 1;
    begin_close(c);
}

int client_closing(const client_t *c)
{
    return c->closing;
}

int client_addresses(client_t *c, struct sockaddr_storage *peer, struct sockaddr_storage *local)
{
    (void)c;
    memcpy(peer, &fz_env.client_addr, sizeof *peer);
    memcpy(local, &fz_env.local_addr, sizeof *local);
    return fz_env.addresses_fail ? FG_IO : FG_OK;
}

uv_tcp_t *client_tcp(client_t *c)
{
    return &c->tcp;
}
