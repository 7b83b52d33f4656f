#include "listener.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fgerr.h"
#include "log.h"
#include "netaddr.h"
#include "policy.h"
#include "session.h"
#include "transparent.h"
#include "tstream.h"

struct listener {
    uv_tcp_t tcp;
    uv_loop_t *loop;
    generation_t *gen;
    size_t index;
    const config_listener_t *cfg; /* gen's listener `index` */
    const config_limits_t *limits;
    portpool_t *pool;
    session_t *sessions;
    unsigned n_sessions;
    metrics_t *metrics;
    listener_t *const *siblings;
    const size_t *n_siblings;
    unsigned long long *next_id; /* shared by the loop's listeners: ids unique per process */
    int stopped, closed;
};


static unsigned sessions_on(const listener_t *l, const struct sockaddr *addr)
{
    unsigned n = 0;
    for (const session_t *s = l->sessions; s; s = session_next(s))
        if (netaddr_same_ip(session_client_addr(s), addr))
            n++;
    return n;
}

/* max_sessions_per_ip is per process: a client's sessions on every listener. */
static unsigned sessions_from(const listener_t *l, const struct sockaddr *addr)
{
    if (!l->siblings)
        return sessions_on(l, addr);
    unsigned n = 0;
    for (size_t i = 0; i < *l->n_siblings; i++)
        n += sessions_on(l->siblings[i], addr);
    return n;
}

void listener_set_siblings(listener_t *l, listener_t *const *all, const size_t *n_all)
{
    l->siblings = all;
    l->n_siblings = n_all;
}

static void reject_on_end(tstream_t *t, tstream_end_t how, const char *reason)
{
    (void)how;
    (void)reason;
    tstream_close(t, 0);
}

static void reject_on_shutdown(tstream_t *t, int status)
{
    (void)status;
    tstream_close(t, 0);
}

static const tstream_cbs_t reject_cbs = {
    .on_end = reject_on_end,
    .on_shutdown = reject_on_shutdown,
};

static unsigned env_sessions_from(void *ctx, const struct sockaddr *addr)
{
    return sessions_from(ctx, addr);
}

static void listener_session_gone(listener_t *l, session_t *s);

static void env_session_gone(void *ctx, session_t *s)
{
    listener_session_gone(ctx, s);
}

static void on_connection(uv_stream_t *server, int status)
{
    listener_t *l = server->data;
    if (status < 0) {
        LOG_WARN(0, NULL, "listener %s: accept failed: %s", l->cfg->name, uv_strerror(status));
        return;
    }
    tstream_t *client = tstream_new(l->loop, &reject_cbs, NULL);
    if (!client)
        return;
    if (uv_accept(server, tstream_uv(client)) != 0) {
        tstream_close(client, 1);
        return;
    }
    struct sockaddr_storage peer;
    int plen = sizeof peer;
    if (uv_tcp_getpeername(tstream_tcp(client), (struct sockaddr *)&peer, &plen) != 0) {
        tstream_close(client, 1);
        return;
    }
    const char *refusal = NULL;
    int trusted = config_cidr_any(l->cfg->proxy_protocol.trusted, l->cfg->proxy_protocol.n_trusted,
                                  (struct sockaddr *)&peer);
    if (l->stopped)
        refusal = "shutting down";
    /* SECURITY: only trusted balancers may tell us who the client is. */
    else if (l->cfg->proxy_protocol.enabled && !trusted)
        refusal = "SECURITY: not a trusted PROXY protocol sender";
    /* The metrics count every listener's sessions: the cap is per process. */
    else if (l->limits->max_sessions && l->metrics->sessions_active >= l->limits->max_sessions)
        refusal = "too many sessions";
    /* Behind a balancer the real client is known only after the PROXY header:
     * the session checks its per-IP limit then. */
    else if (!l->cfg->proxy_protocol.enabled && l->limits->max_sessions_per_ip &&
             sessions_from(l, (const struct sockaddr *)&peer) >= l->limits->max_sessions_per_ip)
        refusal = "too many sessions from this address";
    /* Interception: the backend is where the client meant to go; only a
     * destination the policy allows is served (DESIGN.md §5). */
    session_origin_t origin, *served = NULL;
    if (!refusal && l->cfg->backend.intercept) {
        struct sockaddr_storage local;
        int llen = sizeof local;
        char dst[72];
        if (transparent_original_dst(tstream_tcp(client), &origin.dst, &origin.redirected) != 0 ||
            uv_tcp_getsockname(tstream_tcp(client), (struct sockaddr *)&local, &llen) != 0) {
            tstream_close(client, 1);
            return;
        }
        const char *why = policy_intercept_refusal(l->cfg, generation_config(l->gen),
                                                   (const struct sockaddr *)&origin.dst,
                                                   (const struct sockaddr *)&local);
        if (why) {
            char who[72];
            l->metrics->policy_refusals++;
            LOG_WARN(0, netaddr_format((struct sockaddr *)&peer, who, sizeof who),
                     "SECURITY: intercepted connection to %s refused: %s",
                     netaddr_format((const struct sockaddr *)&origin.dst, dst, sizeof dst), why);
            tstream_close(client, 0);
            return;
        }
        served = &origin;
    }
    if (refusal) {
        char who[72];
        l->metrics->sessions_refused++;
        LOG_WARN(0, netaddr_format((struct sockaddr *)&peer, who, sizeof who),
                 "listener %s: connection refused: %s", l->cfg->name, refusal);
        tstream_set_connected(client);
        if (l->cfg->mode == LISTEN_EXPLICIT && !l->cfg->proxy_protocol.enabled) {
            char msg[96];
            int n = snprintf(msg, sizeof msg, "421 Service not available: %s\r\n", refusal);
            tstream_write(client, msg, (size_t)n);
            tstream_start_read(client);
            tstream_shutdown(client);
        } else {
            tstream_close(client, 0);
        }
        return;
    }
    session_env_t env = {
        .loop = l->loop,
        .gen = l->gen,
        .listener_index = l->index,
        .pool = l->pool,
        .metrics = l->metrics,
        .sessions_from = env_sessions_from,
        .gone = env_session_gone,
        .ctx = l,
    };
    session_t *s = session_start(&env, client, ++*l->next_id, served);
    if (s) {
        session_link(s, &l->sessions);
        l->n_sessions++;
        l->metrics->sessions_total++;
        l->metrics->sessions_active++;
    }
}

int listener_new(uv_loop_t *loop, generation_t *gen, size_t index, unsigned long long *id_counter,
                 metrics_t *metrics, listener_t **out, char *err, size_t errlen)
{
    const config_listener_t *cfg = &generation_config(gen)->listeners[index];
    listener_t *l = calloc(1, sizeof *l);
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return FG_NOMEM;
    }
    l->loop = loop;
    l->gen = gen;
    generation_ref(gen);
    l->index = index;
    l->cfg = cfg;
    l->limits = &generation_config(gen)->limits;
    l->next_id = id_counter;
    l->metrics = metrics;
    l->pool = portpool_new(cfg->passive.first, cfg->passive.last);
    struct sockaddr_storage addr;
    if (!l->pool || netaddr_parse_ip(cfg->bind.host, cfg->bind.port, &addr) != FG_OK) {
        snprintf(err, errlen, "listener %s: bad bind address %s", cfg->name, cfg->bind.host);
        portpool_free(l->pool);
        generation_unref(gen);
        free(l);
        return FG_CONFIG;
    }
    uv_tcp_init(loop, &l->tcp);
    l->tcp.data = l;
    int rc = 0;
    /* TPROXY: the listener takes connections addressed to other hosts. */
    if (cfg->transparent && (rc = transparent_open(&l->tcp, addr.ss_family)) != 0) {
        snprintf(err, errlen, "listener %s: \"transparent\" needs CAP_NET_ADMIN (IP_TRANSPARENT: %s)",
                 cfg->name, uv_strerror(rc));
        l->stopped = 1;
        uv_close((uv_handle_t *)&l->tcp, NULL);
        *out = l;
        return FG_IO;
    }
    /* "[::]:21" is IPv6 only, so it can live beside "0.0.0.0:21" (as the
     * config check assumes) and an IPv4 client is always seen as IPv4. */
    rc = uv_tcp_bind(&l->tcp, (struct sockaddr *)&addr, addr.ss_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->tcp, 511, on_connection);
    if (rc != 0) {
        snprintf(err, errlen, "listener %s: cannot listen on %s:%u: %s", cfg->name, cfg->bind.host,
                 (unsigned)cfg->bind.port, uv_strerror(rc));
        l->stopped = 1;
        uv_close((uv_handle_t *)&l->tcp, NULL);
        *out = l;
        return FG_IO;
    }
    *out = l;
    return FG_OK;
}

int listener_can_reconfigure(const listener_t *l, const config_listener_t *n, char *err, size_t errlen)
{
    const config_listener_t *o = l->cfg;
    const char *what = NULL;
    if (strcmp(n->bind.host, o->bind.host) != 0 || n->bind.port != o->bind.port)
        what = "bind";
    else if (n->mode != o->mode)
        what = "mode";
    else if (n->passive.first != o->passive.first || n->passive.last != o->passive.last)
        what = "passive.ports";
    else if (n->transparent != o->transparent)
        what = "transparent";
    else if (config_listener_source_client(n) != config_listener_source_client(o))
        what = "backend.source";
    if (!what)
        return 0;
    snprintf(err, errlen, "listener %s: %s changed; restart ftpsgate to apply it", n->name, what);
    return -1;
}

void listener_reconfigure(listener_t *l, generation_t *gen, size_t index)
{
    const config_listener_t *n = &generation_config(gen)->listeners[index];
    generation_ref(gen);
    generation_unref(l->gen);
    l->gen = gen;
    l->index = index;
    l->cfg = n;
    l->limits = &generation_config(gen)->limits;
}

static void listener_closed(uv_handle_t *h)
{
    listener_t *l = h->data;
    l->closed = 1;
}

void listener_stop(listener_t *l)
{
    if (l->stopped)
        return;
    l->stopped = 1;
    uv_close((uv_handle_t *)&l->tcp, listener_closed);
}

int listener_try_free(listener_t *l)
{
    if (!l->stopped || l->n_sessions > 0 || !uv_is_closing((uv_handle_t *)&l->tcp))
        return 0;
    portpool_free(l->pool);
    generation_unref(l->gen);
    free(l);
    return 1;
}

portpool_t *listener_pool(listener_t *l)
{
    return l->pool;
}

unsigned listener_session_count(const listener_t *l)
{
    return l->n_sessions;
}

static void listener_session_gone(listener_t *l, session_t *s)
{
    session_unlink(s, &l->sessions);
    l->n_sessions--;
    l->metrics->sessions_active--;
}

void listener_close_sessions(listener_t *l)
{
    session_t *s = l->sessions;
    while (s) {
        session_t *next = session_next(s);
        session_abort(s, "proxy shutting down");
        s = next;
    }
}
