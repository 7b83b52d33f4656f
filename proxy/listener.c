#include "listener.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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
    listener_shared_t shared;
    session_t *sessions;
    unsigned n_sessions;
    metrics_t *metrics; /* this worker's */
    int stopped, closed;
};


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

static const char *env_admit_client(void *ctx, const struct sockaddr *addr)
{
    listener_t *l = ctx;
    return admission_enter_ip(l->shared.admission, addr, l->limits->max_sessions_per_ip);
}

static void env_session_gone(void *ctx, session_t *s, const struct sockaddr *counted_ip)
{
    listener_t *l = ctx;
    session_unlink(s, &l->sessions);
    l->n_sessions--;
    METRIC_DEC(l->metrics, sessions_active);
    admission_leave(l->shared.admission, counted_ip);
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
    int behind_balancer = l->cfg->proxy_protocol.enabled;
    if (l->stopped)
        refusal = "shutting down";
    /* SECURITY: only trusted balancers may tell us who the client is. */
    else if (behind_balancer && !trusted)
        refusal = "SECURITY: not a trusted PROXY protocol sender";
    /* The limits are per process, over every listener and worker. Behind a
     * balancer the real client is known only after the PROXY header: the
     * session counts it per IP then. */
    else
        refusal = admission_enter(l->shared.admission, behind_balancer ? NULL : (const struct sockaddr *)&peer,
                                  l->limits->max_sessions, l->limits->max_sessions_per_ip);

    /* Interception: the backend is where the client meant to go; only a
     * destination the policy allows is served (DESIGN.md §5). */
    session_origin_t origin, *served = NULL;
    if (!refusal && l->cfg->backend.intercept) {
        struct sockaddr_storage local;
        int llen = sizeof local;
        char dst[72];
        if (transparent_original_dst(tstream_tcp(client), &origin.dst, &origin.redirected) != 0 ||
            uv_tcp_getsockname(tstream_tcp(client), (struct sockaddr *)&local, &llen) != 0) {
            admission_leave(l->shared.admission, behind_balancer ? NULL : (const struct sockaddr *)&peer);
            tstream_close(client, 1);
            return;
        }
        const char *why = policy_intercept_refusal(l->cfg, generation_config(l->gen),
                                                   (const struct sockaddr *)&origin.dst,
                                                   (const struct sockaddr *)&local);
        if (why) {
            char who[72];
            METRIC_INC(l->metrics, policy_refusals);
            LOG_WARN(0, netaddr_format((struct sockaddr *)&peer, who, sizeof who),
                     "SECURITY: intercepted connection to %s refused: %s",
                     netaddr_format((const struct sockaddr *)&origin.dst, dst, sizeof dst), why);
            admission_leave(l->shared.admission, behind_balancer ? NULL : (const struct sockaddr *)&peer);
            tstream_close(client, 0);
            return;
        }
        served = &origin;
    }
    if (refusal) {
        char who[72];
        METRIC_INC(l->metrics, sessions_refused);
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
        .pool = l->shared.pool,
        .audit = l->shared.audit,
        .metrics = l->metrics,
        .admit_client = env_admit_client,
        .gone = env_session_gone,
        .ctx = l,
    };
    unsigned long long id = __atomic_add_fetch(l->shared.session_ids, 1, __ATOMIC_RELAXED);
    session_t *s = session_start(&env, client, id, served);
    if (!s) {
        admission_leave(l->shared.admission, behind_balancer ? NULL : (const struct sockaddr *)&peer);
        return;
    }
    session_link(s, &l->sessions);
    l->n_sessions++;
    METRIC_INC(l->metrics, sessions_total);
    METRIC_INC(l->metrics, sessions_active);
}

int listener_bind(const config_listener_t *cfg, int reuseport, int *fds, size_t n, char *err, size_t errlen)
{
    struct sockaddr_storage addr;
    if (netaddr_parse_ip(cfg->bind.host, cfg->bind.port, &addr) != FG_OK) {
        snprintf(err, errlen, "listener %s: bad bind address %s", cfg->name, cfg->bind.host);
        return FG_CONFIG;
    }
    int on = 1;
    size_t made = 0;
    /* SECURITY: a SO_REUSEPORT group takes any process of this user that
     * asks; a probe bind without it first makes an occupied port an error. */
    for (size_t i = 0; i < n + (reuseport ? 1 : 0); i++) {
        int probe = reuseport && i == 0;
        int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        const char *what = "socket";
        int ok = fd >= 0;
        if (ok && (what = "SO_REUSEADDR", setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0))
            ok = 0;
        if (ok && reuseport && !probe &&
            (what = "SO_REUSEPORT", setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0))
            ok = 0;
        /* "[::]:21" is IPv6 only, so it can live beside "0.0.0.0:21" (as the
         * config check assumes) and an IPv4 client is always seen as IPv4. */
        if (ok && addr.ss_family == AF_INET6 &&
            (what = "IPV6_V6ONLY", setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on) != 0))
            ok = 0;
        /* TPROXY: the listener takes connections addressed to other hosts. */
        if (ok && cfg->transparent && (what = "IP_TRANSPARENT", transparent_set(fd, addr.ss_family) != 0))
            ok = 0;
        if (ok && (what = "bind", bind(fd, (struct sockaddr *)&addr, netaddr_len((struct sockaddr *)&addr)) != 0))
            ok = 0;
        if (ok && !probe && (what = "listen", listen(fd, 511) != 0))
            ok = 0;
        if (!ok) {
            int e = errno;
            if (fd >= 0)
                close(fd);
            while (made > 0)
                close(fds[--made]);
            if (cfg->transparent && strcmp(what, "IP_TRANSPARENT") == 0)
                snprintf(err, errlen, "listener %s: \"transparent\" needs CAP_NET_ADMIN (IP_TRANSPARENT: %s)",
                         cfg->name, strerror(e));
            else
                snprintf(err, errlen, "listener %s: cannot listen on %s:%u: %s (%s)", cfg->name, cfg->bind.host,
                         (unsigned)cfg->bind.port, uv_strerror(-e), what);
            return FG_IO;
        }
        if (probe)
            close(fd);
        else
            fds[made++] = fd;
    }
    return FG_OK;
}

int listener_new(uv_loop_t *loop, generation_t *gen, size_t index, int fd, const listener_shared_t *shared,
                 metrics_t *metrics, listener_t **out, char *err, size_t errlen)
{
    const config_listener_t *cfg = &generation_config(gen)->listeners[index];
    listener_t *l = calloc(1, sizeof *l);
    if (!l) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return FG_NOMEM;
    }
    l->loop = loop;
    l->gen = gen;
    generation_ref(gen);
    l->index = index;
    l->cfg = cfg;
    l->limits = &generation_config(gen)->limits;
    l->shared = *shared;
    l->metrics = metrics;
    uv_tcp_init(loop, &l->tcp);
    l->tcp.data = l;
    int rc = uv_tcp_open(&l->tcp, fd);
    if (rc != 0)
        close(fd);
    else
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

int listener_can_reconfigure(const config_listener_t *o, const config_listener_t *n, char *err, size_t errlen)
{
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
    generation_unref(l->gen);
    free(l);
    return 1;
}

unsigned listener_session_count(const listener_t *l)
{
    return l->n_sessions;
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

void listener_snapshot(listener_t *l, liveview_snap_t *snap, uint64_t loop_now, int64_t wall_now)
{
    for (session_t *s = l->sessions; s; s = session_next(s))
        session_snapshot(s, liveview_snap_add(snap), loop_now, wall_now);
}
