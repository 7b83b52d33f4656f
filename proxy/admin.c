#include "admin.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "adminreq.h"
#include "fgerr.h"
#include "liveview.h"
#include "log.h"
#include "netaddr.h"
#include "status_page.h"
#include "tstream.h"

#define ADMIN_HEAD_MAX 8192u /* a browser's request with Basic credentials fits */
#define ADMIN_BODY_MAX (64u * 1024u)
#define ADMIN_TIMEOUT_MS 5000u

typedef struct admin_conn admin_conn_t;

/* Lifetime: `open` counts the listening socket and every connection that
 * still has a handle; the admin's memory goes when it reaches zero, in a
 * close callback. admin_stop closes the open connections too, so no request
 * is answered through a daemon that is shutting down. */
struct admin {
    uv_tcp_t tcp;
    admin_handlers_t h;
    char *token;      /* admin.token; NULL: none */
    char csp[512];    /* the Content-Security-Policy of /status */
    uv_loop_t *loop;
    admin_conn_t *conns;
    unsigned open;
    int stopped;
    int draining;
};

struct admin_conn {
    admin_conn_t *next, *prev;
    tstream_t *stream;
    admin_t *admin;
    uv_timer_t timer;
    size_t len;
    int answered;
    char head[ADMIN_HEAD_MAX];
};

static void free_token(admin_t *a)
{
    if (a->token) {
        OPENSSL_cleanse(a->token, strlen(a->token));
        free(a->token);
        a->token = NULL;
    }
}

static void admin_release(admin_t *a)
{
    assert(a->open > 0);
    if (--a->open == 0) {
        free_token(a);
        free(a);
    }
}

static void conn_timer_closed(uv_handle_t *h)
{
    admin_conn_t *c = h->data;
    admin_t *a = c->admin;
    if (c->prev)
        c->prev->next = c->next;
    else
        a->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
    admin_release(a);
}

static void conn_on_close(tstream_t *t)
{
    admin_conn_t *c = tstream_userdata(t);
    c->stream = NULL;
    uv_close((uv_handle_t *)&c->timer, conn_timer_closed);
}

/* The headers every answer carries, then the status-specific ones. */
static void conn_respond_with(admin_conn_t *c, int status, const char *reason, const char *type,
                              const char *extra, const char *body, size_t body_len)
{
    char hdr[1024];
    int n = snprintf(hdr, sizeof hdr,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "X-Content-Type-Options: nosniff\r\n%sConnection: close\r\n\r\n",
                     status, reason, type, body_len, extra ? extra : "");
    assert(n > 0 && (size_t)n < sizeof hdr);
    tstream_write(c->stream, hdr, (size_t)n);
    if (body_len)
        tstream_write(c->stream, body, body_len);
    tstream_shutdown(c->stream);
    c->answered = 1;
}

static void conn_respond(admin_conn_t *c, int status, const char *reason, const char *body, size_t body_len)
{
    conn_respond_with(c, status, reason, "text/plain; version=0.0.4; charset=utf-8", NULL, body, body_len);
}

static int path_is(const adminreq_t *r, const char *p)
{
    return r->path_len == strlen(p) && memcmp(r->path, p, r->path_len) == 0;
}

static void serve_sessions(admin_conn_t *c, const adminreq_t *r)
{
    unsigned long limit = LIVEVIEW_DEFAULT_LIMIT;
    int rc = adminreq_query_uint(r, "limit", LIVEVIEW_LIMIT_MAX, &limit);
    if (rc != FG_OK && rc != FG_NEED_MORE) {
        conn_respond(c, 400, "Bad Request", "limit: a number from 0 to 10000\n", 32);
        return;
    }
    char *body = NULL;
    size_t len = 0;
    if (!c->admin->h.render_sessions ||
        c->admin->h.render_sessions(c->admin->h.userdata, limit, &body, &len) != FG_OK) {
        conn_respond(c, 500, "Internal Server Error", "error\n", 6);
        return;
    }
    /* Personal data (user names, client addresses): no cache keeps it. */
    conn_respond_with(c, 200, "OK", "application/json; charset=utf-8", "Cache-Control: no-store\r\n", body, len);
    free(body);
}

static void serve_status(admin_conn_t *c)
{
    char extra[700];
    snprintf(extra, sizeof extra,
             "Content-Security-Policy: %s\r\nCache-Control: no-store\r\nReferrer-Policy: no-referrer\r\n"
             "X-Frame-Options: DENY\r\n",
             c->admin->csp);
    conn_respond_with(c, 200, "OK", "text/html; charset=utf-8", extra, status_page_html, status_page_len);
}

static void conn_handle(admin_conn_t *c)
{
    admin_t *a = c->admin;
    adminreq_t r;
    if (adminreq_parse(c->head, c->len, &r) != FG_OK) {
        conn_respond(c, 400, "Bad Request", "bad request\n", 12);
        return;
    }
    if (r.method_len != 3 || memcmp(r.method, "GET", 3) != 0) {
        conn_respond_with(c, 405, "Method Not Allowed", "text/plain; charset=utf-8", "Allow: GET\r\n", "GET only\n",
                          9);
        return;
    }
    if (path_is(&r, "/healthz")) {
        /* A balancer's health check takes a draining instance out at once;
         * it needs no token (it says nothing about anybody). */
        if (a->draining)
            conn_respond(c, 503, "Service Unavailable", "draining\n", 9);
        else
            conn_respond(c, 200, "OK", "ok\n", 3);
        return;
    }
    /* SECURITY: admin.token guards everything else (the live view names
     * users and client addresses). */
    if (a->token && !adminreq_authorized(&r, a->token)) {
        conn_respond_with(c, 401, "Unauthorized", "text/plain; charset=utf-8",
                          "WWW-Authenticate: Basic realm=\"ftpsgate\", charset=\"UTF-8\"\r\n", "token required\n",
                          15);
        return;
    }
    if (path_is(&r, "/metrics")) {
        char *body = malloc(ADMIN_BODY_MAX);
        int n = body ? a->h.render_metrics(a->h.userdata, body, ADMIN_BODY_MAX) : -1;
        if (n < 0)
            conn_respond(c, 500, "Internal Server Error", "error\n", 6);
        else
            conn_respond(c, 200, "OK", body, (size_t)n);
        free(body);
    } else if (path_is(&r, "/sessions")) {
        serve_sessions(c, &r);
    } else if (path_is(&r, "/status")) {
        serve_status(c);
    } else {
        conn_respond(c, 404, "Not Found", "not found\n", 10);
    }
}

static void conn_on_data(tstream_t *t, const char *buf, size_t len)
{
    admin_conn_t *c = tstream_userdata(t);
    if (c->answered)
        return;
    size_t room = sizeof c->head - c->len;
    if (len > room) {
        conn_respond(c, 431, "Request Header Fields Too Large", "", 0);
        return;
    }
    memcpy(c->head + c->len, buf, len);
    c->len += len;
    for (size_t i = 3; i < c->len; i++) {
        if (memcmp(c->head + i - 3, "\r\n\r\n", 4) == 0) {
            conn_handle(c);
            return;
        }
    }
}

static void conn_on_end(tstream_t *t, tstream_end_t how, const char *reason)
{
    (void)how;
    (void)reason;
    admin_conn_t *c = tstream_userdata(t);
    if (!c->answered || tstream_shutdown_done(t))
        tstream_close(t, 0);
}

static void conn_on_shutdown(tstream_t *t, int status)
{
    (void)status;
    tstream_close(t, 0);
}

static const tstream_cbs_t conn_cbs = {
    .on_data = conn_on_data,
    .on_end = conn_on_end,
    .on_shutdown = conn_on_shutdown,
    .on_close = conn_on_close,
};

static void conn_on_timeout(uv_timer_t *t)
{
    admin_conn_t *c = t->data;
    if (c->stream)
        tstream_close(c->stream, 1);
}

static void on_admin_connection(uv_stream_t *server, int status)
{
    admin_t *a = server->data;
    if (status < 0)
        return;
    if (a->stopped)
        return;
    admin_conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->admin = a;
    c->stream = tstream_new(a->loop, &conn_cbs, c);
    if (!c->stream) {
        free(c);
        return;
    }
    uv_timer_init(a->loop, &c->timer);
    c->timer.data = c;
    c->next = a->conns;
    if (a->conns)
        a->conns->prev = c;
    a->conns = c;
    a->open++;
    if (uv_accept(server, tstream_uv(c->stream)) != 0) {
        tstream_close(c->stream, 1);
        return;
    }
    tstream_set_connected(c->stream);
    tstream_start_read(c->stream);
    uv_timer_start(&c->timer, conn_on_timeout, ADMIN_TIMEOUT_MS, 0);
}

/* "'sha256-BASE64'" of the text between open and close in the page. */
static void page_hash(const char *open, const char *close, char *out, size_t cap)
{
    const char *p = strstr(status_page_html, open);
    const char *e = p ? strstr(p, close) : NULL;
    unsigned char md[32];
    unsigned char b64[64];
    assert(p && e); /* the page is ours: built in */
    p += strlen(open);
    EVP_Digest(p, (size_t)(e - p), md, NULL, EVP_sha256(), NULL);
    EVP_EncodeBlock(b64, md, sizeof md);
    snprintf(out, cap, "'sha256-%s'", (const char *)b64);
}

/* SECURITY: the page may run its own inline script and style and nothing
 * else: no other script, no plugin, no frame, no form; it may fetch only
 * from its own origin (/sessions). */
static void make_csp(admin_t *a)
{
    char script[80], style[80];
    page_hash("<script>", "</script>", script, sizeof script);
    page_hash("<style>", "</style>", style, sizeof style);
    snprintf(a->csp, sizeof a->csp,
             "default-src 'none'; script-src %s; style-src %s; connect-src 'self'; "
             "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
             script, style);
}

int admin_set_token(admin_t *a, const char *token)
{
    char *copy = NULL;
    if (token && (copy = strdup(token)) == NULL)
        return FG_NOMEM;
    free_token(a);
    a->token = copy;
    return FG_OK;
}

int admin_start(uv_loop_t *loop, const config_hostport_t *bind, const admin_handlers_t *h, const char *token,
                admin_t **out, char *err, size_t errlen)
{
    struct sockaddr_storage addr;
    if (netaddr_parse_ip(bind->host, bind->port, &addr) != FG_OK) {
        snprintf(err, errlen, "admin.bind: not a literal IP address: %s", bind->host);
        return FG_CONFIG;
    }
    admin_t *a = calloc(1, sizeof *a);
    if (!a)
        return FG_NOMEM;
    a->loop = loop;
    a->open = 1; /* the listening socket */
    a->h = *h;
    make_csp(a);
    if (admin_set_token(a, token) != FG_OK) {
        free(a);
        return FG_NOMEM;
    }
    uv_tcp_init(loop, &a->tcp);
    a->tcp.data = a;
    int rc = uv_tcp_bind(&a->tcp, (struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&a->tcp, 16, on_admin_connection);
    if (rc != 0) {
        snprintf(err, errlen, "admin.bind: cannot listen on %s:%u: %s", bind->host,
                 (unsigned)bind->port, uv_strerror(rc));
        admin_stop(a);
        return FG_IO;
    }
    *out = a;
    return FG_OK;
}

static void admin_closed(uv_handle_t *h)
{
    admin_release(h->data);
}

void admin_set_draining(admin_t *a)
{
    if (a)
        a->draining = 1;
}

void admin_stop(admin_t *a)
{
    if (!a || a->stopped)
        return;
    a->stopped = 1;
    /* SECURITY: a request still being read would otherwise be answered
     * through a daemon (and an admin) that is going away. */
    for (admin_conn_t *c = a->conns; c; c = c->next)
        if (c->stream)
            tstream_close(c->stream, 0);
    uv_close((uv_handle_t *)&a->tcp, admin_closed);
}
