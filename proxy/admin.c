#include "admin.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fgerr.h"
#include "log.h"
#include "netaddr.h"
#include "tstream.h"

#define ADMIN_HEAD_MAX 2048u
#define ADMIN_BODY_MAX (64u * 1024u)
#define ADMIN_TIMEOUT_MS 5000u

typedef struct admin_conn admin_conn_t;

/* Lifetime: `open` counts the listening socket and every connection that
 * still has a handle; the admin's memory goes when it reaches zero, in a
 * close callback. admin_stop closes the open connections too, so no request
 * is answered through a daemon that is shutting down. */
struct admin {
    uv_tcp_t tcp;
    admin_render_cb render;
    void *userdata;
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

static void admin_release(admin_t *a)
{
    assert(a->open > 0);
    if (--a->open == 0)
        free(a);
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

static void conn_respond(admin_conn_t *c, int status, const char *reason, const char *body,
                         size_t body_len)
{
    char hdr[256];
    int n = snprintf(hdr, sizeof hdr,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     status, reason, body_len);
    tstream_write(c->stream, hdr, (size_t)n);
    if (body_len)
        tstream_write(c->stream, body, body_len);
    tstream_shutdown(c->stream);
    c->answered = 1;
}

static void conn_handle(admin_conn_t *c)
{
    /* Only the request line matters: "GET /path HTTP/1.x". */
    const char *h = c->head;
    if (c->len < 4 || memcmp(h, "GET ", 4) != 0) {
        conn_respond(c, 405, "Method Not Allowed", "GET only\n", 9);
        return;
    }
    const char *path = h + 4;
    const char *end = memchr(path, ' ', c->len - 4);
    size_t plen = end ? (size_t)(end - path) : 0;
    if (plen == 8 && memcmp(path, "/healthz", 8) == 0) {
        /* A balancer's health check takes a draining instance out at once. */
        if (c->admin->draining)
            conn_respond(c, 503, "Service Unavailable", "draining\n", 9);
        else
            conn_respond(c, 200, "OK", "ok\n", 3);
    } else if (plen == 8 && memcmp(path, "/metrics", 8) == 0) {
        char *body = malloc(ADMIN_BODY_MAX);
        int n = body ? c->admin->render(c->admin->userdata, body, ADMIN_BODY_MAX) : -1;
        if (n < 0)
            conn_respond(c, 500, "Internal Server Error", "error\n", 6);
        else
            conn_respond(c, 200, "OK", body, (size_t)n);
        free(body);
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

int admin_start(uv_loop_t *loop, const config_hostport_t *bind, admin_render_cb render,
                void *userdata, admin_t **out, char *err, size_t errlen)
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
    a->render = render;
    a->userdata = userdata;
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
