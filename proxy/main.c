/* ftpsgate: a TLS-terminating FTP proxy. Command line, start-up, signals. */
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <pwd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <uv.h>

#include <arpa/inet.h>

#include "config.h"
#include "defer.h"
#include "ftp_addr.h"
#include "netaddr.h"
#include "route.h"
#include "fgerr.h"
#include "admin.h"
#include "auditlog.h"
#include "listener.h"
#include "metrics.h"
#include "log.h"
#include "generation.h"
#include "healthcheck.h"
#include "transparent.h"
#include "worker.h"

#define CERT_WARN_DAYS 14  /* expiry warning at start and reload */

#define DRAIN_DEADLINE_MS 30000u
#define LOG_BUFFER_BYTES (1024u * 1024u) /* log lines waiting for stderr */
#define LOG_FLUSH_WAIT_MS 2000u
#define HEALTHCHECK_TIMEOUT_MS 3000u  /* per listener: connect and greeting */

/* The main thread: start-up, signals, reload, drain and the admin endpoint on
 * an event loop of its own; the sessions run on the workers' loops. */
typedef struct {
    uv_loop_t *loop;
    const char *config_path;
    generation_t *gen;     /* the current configuration; workers and sessions hold their own refs */
    const config_t *cfg;   /* gen's */
    worker_t **workers;
    int n_workers;
    size_t n_listeners;
    /* Shared by every worker (listener_shared_t): */
    unsigned long long session_ids;
    admission_t *admission;
    portpool_t **pools;    /* one per listener */
    listener_shared_t *shared;
    int *fds;              /* listener i of worker w: fds[w * n_listeners + i] */
    admin_t *admin;
    auditlog_t *audit;     /* log.transfer_log; NULL: none */
    uv_signal_t sig_term, sig_int, sig_hup, sig_usr1;
    uv_timer_t drain_timer;
    int stopping, drain_forced;
    uint64_t drain_deadline;
} daemon_t;

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: ftpsgate --config FILE        run in the foreground\n"
            "       ftpsgate --check-config --config FILE\n"
            "                                      validate the configuration and certificates, exit 0 or 1\n"
            "       ftpsgate --healthcheck --config FILE\n"
            "                                      connect to each listener of FILE on this host: exit 0\n"
            "                                      when all answer (220 greeting on explicit ones), else 1\n"
            "       ftpsgate --version\n"
            "       ftpsgate --help\n"
            "\n"
            "A TLS-terminating FTP proxy: clients speak FTPS (explicit AUTH TLS, or implicit),\n"
            "the backend speaks plain FTP. Logs go to stderr. Signals: SIGTERM/SIGINT drain\n"
            "and stop (a second signal ends live sessions at once); SIGHUP reloads the\n"
            "configuration and certificates for new sessions.\n");
}

/* "backend HOST:PORT (data mode M)", or the original destination. */
static const char *describe_backend(const config_backend_t *b, char *out, size_t cap)
{
    const char *dm = b->data_mode == DATA_MODE_ACTIVE ? "active" : b->data_mode == DATA_MODE_CLIENT ? "client" : "passive";
    if (b->intercept && b->port)
        snprintf(out, cap, "backend the original destination, port %u (data mode %s)", (unsigned)b->port, dm);
    else if (b->intercept)
        snprintf(out, cap, "backend the original destination (data mode %s)", dm);
    else if (strchr(b->address.host, ':'))
        snprintf(out, cap, "backend [%s]:%u (data mode %s)", b->address.host, (unsigned)b->address.port, dm);
    else
        snprintf(out, cap, "backend %s:%u (data mode %s)", b->address.host, (unsigned)b->address.port, dm);
    if (b->source_client && strlen(out) + 30 < cap)
        strcat(out, ", from the client's address");
    return out;
}

/* --check-config: a routed listener's table, in the order it is tried. */
static void print_routes(const config_t *cfg, const config_listener_t *l)
{
    char match[160], backend[400];
    if (l->n_routes == 0)
        return;
    printf("  routes (first match wins; a route waits for its SNI, HOST or USER):\n");
    for (size_t j = 0; j < l->n_routes; j++) {
        const config_route_t *r = &l->routes[j];
        route_describe(r, match, sizeof match);
        printf("    %zu. %s -> %s", j + 1, match, describe_backend(&r->backend, backend, sizeof backend));
        if (r->kind == CONFIG_ROUTE_SNI)
            printf(", certificate of identity %s",
                   cfg->tls[route_sni_identity(l, r->value, strlen(r->value))].id);
        else if (r->kind == CONFIG_ROUTE_USER_AT)
            printf(", USER name@%s logs in as name", match + strlen("user_at "));
        printf("\n");
    }
    if (l->has_backend)
        printf("    otherwise -> %s\n", describe_backend(&l->backend, backend, sizeof backend));
    else
        printf("    otherwise -> no backend: the client gets 530 and no server is contacted\n");
}

/* --check-config: what a client of each network will be told by PASV/EPSV,
 * so NAT and Docker port mappings can be checked before going live, and
 * the route table of routed listeners. */
static void print_passive_plan(const config_t *cfg)
{
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const config_listener_t *l = &cfg->listeners[i];
        unsigned first = l->passive.announce_first ? l->passive.announce_first : l->passive.first;
        unsigned last = first + (unsigned)(l->passive.last - l->passive.first);
        char backend[400];
        if (l->has_backend)
            describe_backend(&l->backend, backend, sizeof backend);
        else
            snprintf(backend, sizeof backend, "routes only (no default backend)");
        printf("listener %s: %s FTPS on %s:%u -> %s\n", l->name, l->mode == LISTEN_IMPLICIT ? "implicit" : "explicit",
               l->bind.host, (unsigned)l->bind.port, backend);
        print_routes(cfg, l);
        printf("  passive ports %u-%u, announced as %u-%u\n", (unsigned)l->passive.first,
               (unsigned)l->passive.last, first, last);
        if (l->passive.n_announce == 0 && l->backend.intercept)
            printf("  every client: 227 with the address of the server it dialled (original destination), "
                   "port %u-%u;\n                229 Entering Extended Passive Mode (|||%u|) (first port)\n",
                   first, last, first);
        else if (l->passive.n_announce == 0)
            printf("  every client: 227 with the local address of its control connection, port %u-%u;\n"
                   "                229 Entering Extended Passive Mode (|||%u|) (first port)\n",
                   first, last, first);
        for (size_t j = 0; j < l->passive.n_announce; j++) {
            const config_announce_t *a = &l->passive.announce[j];
            char who[INET6_ADDRSTRLEN + 8] = "default";
            if (!a->match_all) {
                char ip[INET6_ADDRSTRLEN];
                inet_ntop(a->clients.family, a->clients.addr, ip, sizeof ip);
                snprintf(who, sizeof who, "%s/%u", ip, a->clients.prefix);
            }
            char r227[128] = "", r229[128] = "";
            struct sockaddr_storage sa;
            struct in_addr ip4;
            if (netaddr_parse_ip(a->address, 0, &sa) == FG_OK && netaddr_ipv4((struct sockaddr *)&sa, &ip4))
                ftp_addr_format_227(r227, sizeof r227, ip4, (uint16_t)first);
            else
                snprintf(r227, sizeof r227, "425 PASV needs an IPv4 address; use EPSV\r\n");
            ftp_addr_format_229(r229, sizeof r229, (uint16_t)first);
            r227[strcspn(r227, "\r")] = '\0';
            r229[strcspn(r229, "\r")] = '\0';
            printf("  clients %s: %s\n  %*s  %s\n", who, r227, (int)strlen(who) + 8, "", r229);
        }
    }
}

/* Transparent listeners and source-IP transparency open IP_TRANSPARENT
 * sockets for every session: CAP_NET_ADMIN (and nothing else) survives the
 * switch to the unprivileged user. */
static int keep_only_net_admin(void)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    data[0].effective = data[0].permitted = 1u << CAP_NET_ADMIN;
    return (int)syscall(SYS_capset, &hdr, data);
}

static int drop_privileges(const char *user, int keep_net_admin)
{
    if (!user || geteuid() != 0)
        return 0;
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        fprintf(stderr, "ftpsgate: user: no such user \"%s\"\n", user);
        return -1;
    }
    if (keep_net_admin && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) {
        fprintf(stderr, "ftpsgate: cannot keep CAP_NET_ADMIN: %s\n", strerror(errno));
        return -1;
    }
    if (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0) {
        fprintf(stderr, "ftpsgate: cannot drop privileges to %s: %s\n", user, strerror(errno));
        return -1;
    }
    if (keep_net_admin && keep_only_net_admin() != 0) {
        fprintf(stderr, "ftpsgate: cannot keep CAP_NET_ADMIN after dropping to %s: %s\n", user, strerror(errno));
        return -1;
    }
    /* SECURITY: make sure root cannot be regained. */
    if (setuid(0) == 0) {
        fprintf(stderr, "ftpsgate: privileges were not dropped\n");
        return -1;
    }
    LOG_INFO(0, NULL, "running as user %s%s", user, keep_net_admin ? " with CAP_NET_ADMIN only" : "");
    return 0;
}

static void on_walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* The admission count is exact at every moment (taken at accept, given back at
 * the end); the workers' own counts are polled and can miss a session that
 * began a moment ago (the drain line said 0 while a download ran). */
static int sessions_left(const daemon_t *d)
{
    return (int)admission_total(d->admission);
}

static int render_metrics(void *userdata, char *out, size_t cap)
{
    daemon_t *d = userdata;
    unsigned in_use = 0, configured = 0;
    for (size_t i = 0; i < d->n_listeners; i++) {
        in_use += portpool_in_use(d->pools[i]);
        configured += portpool_size(d->pools[i]);
    }
    metrics_t now;
    memset(&now, 0, sizeof now);
    for (int w = 0; w < d->n_workers; w++)
        metrics_sum(&now, worker_metrics(d->workers[w]));
    now.log_lines_dropped = log_dropped();
    now.transfer_log_dropped = d->audit ? auditlog_dropped(d->audit) : 0;
    int n = metrics_format(&now, in_use, configured, generation_tls_sessions_cached(d->gen), out, cap);
    int k = n < 0 ? -1 : metrics_format_cert_header(out + n, cap - (size_t)n);
    for (size_t i = 0; k >= 0 && i < d->cfg->n_tls; i++) {
        n += k;
        k = metrics_format_cert_line(d->cfg->tls[i].id, generation_cert_not_after(d->gen, i), out + n,
                                     cap - (size_t)n);
    }
    if (k < 0)
        return -1;
    n += k;
    const metrics_t *per[CONFIG_WORKERS_MAX];
    for (int w = 0; w < d->n_workers; w++)
        per[w] = worker_metrics(d->workers[w]);
    k = metrics_format_workers(per, d->n_workers, out + n, cap - (size_t)n);
    return k < 0 ? -1 : n + k;
}

/* GET /sessions (liveview.h): every worker's snapshot, the listeners' passive
 * ports and the certificates' expiry. */
static int render_sessions(void *userdata, size_t limit, char **body, size_t *len)
{
    daemon_t *d = userdata;
    liveview_board_t *boards[CONFIG_WORKERS_MAX];
    liveview_listener_t *ls = calloc(d->n_listeners + 1, sizeof *ls);
    liveview_cert_t *cs = calloc(d->cfg->n_tls + 1, sizeof *cs);
    int rc = FG_NOMEM;
    if (ls && cs) {
        for (int w = 0; w < d->n_workers; w++)
            boards[w] = worker_board(d->workers[w]);
        for (size_t i = 0; i < d->n_listeners; i++)
            ls[i] = (liveview_listener_t){d->cfg->listeners[i].name, portpool_in_use(d->pools[i]),
                                          portpool_size(d->pools[i])};
        for (size_t i = 0; i < d->cfg->n_tls; i++)
            cs[i] = (liveview_cert_t){d->cfg->tls[i].id, generation_cert_not_after(d->gen, i)};
        liveview_context_t ctx = {ls, d->n_listeners, cs, d->cfg->n_tls, (int64_t)time(NULL) * 1000};
        struct timespec ts;
        if (clock_gettime(CLOCK_REALTIME, &ts) == 0)
            ctx.now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        rc = liveview_render(boards, (size_t)d->n_workers, &ctx, limit, body, len);
    }
    free(ls);
    free(cs);
    return rc;
}

/* An expired or soon-expiring certificate is the classic outage of a TLS
 * front end: said at start and at each reload. */
static void check_certificates(const generation_t *gen)
{
    const config_t *cfg = generation_config(gen);
    long long now = (long long)time(NULL);
    for (size_t i = 0; i < cfg->n_tls; i++) {
        long long end = generation_cert_not_after(gen, i);
        if (end == 0)
            continue;
        time_t t = (time_t)end;
        struct tm tm;
        char when[32] = "?";
        if (gmtime_r(&t, &tm))
            strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
        if (end <= now)
            LOG_ERROR(0, NULL, "tls.%s: the certificate expired at %s", cfg->tls[i].id, when);
        else if (end - now < CERT_WARN_DAYS * 86400LL)
            LOG_WARN(0, NULL, "tls.%s: the certificate expires at %s, in %lld hours", cfg->tls[i].id, when,
                     (end - now) / 3600);
    }
}

static void finish_stop(daemon_t *d)
{
    admin_stop(d->admin);
    d->admin = NULL;
    uv_close((uv_handle_t *)&d->sig_term, NULL);
    uv_close((uv_handle_t *)&d->sig_int, NULL);
    uv_close((uv_handle_t *)&d->sig_hup, NULL);
    uv_close((uv_handle_t *)&d->sig_usr1, NULL);
    uv_close((uv_handle_t *)&d->drain_timer, NULL);
}

/* Polls for the last session to end; past the deadline, ends the rest. */
static void on_drain_poll(uv_timer_t *t)
{
    daemon_t *d = t->data;
    /* Ended, not a session count: a count is a snapshot that misses a
     * session accepted since the worker's last poll. */
    int running = 0;
    for (int w = 0; w < d->n_workers; w++)
        running += !worker_ended(d->workers[w]);
    if (running == 0) {
        finish_stop(d);
        return;
    }
    int left = sessions_left(d);
    if (uv_now(d->loop) >= d->drain_deadline && !d->drain_forced) {
        d->drain_forced = 1;
        LOG_WARN(0, NULL, "drain deadline passed: closing %d live sessions", left);
        for (int w = 0; w < d->n_workers; w++)
            worker_close_sessions(d->workers[w]);
    }
}

static void on_stop_signal(uv_signal_t *sig, int signum)
{
    daemon_t *d = sig->data;
    if (d->stopping) {
        LOG_WARN(0, NULL, "second signal %d: stopping now", signum);
        d->drain_deadline = uv_now(d->loop);
        return;
    }
    d->stopping = 1;
    admin_set_draining(d->admin);
    LOG_INFO(0, NULL, "signal %d: no new sessions; draining %d live sessions (deadline %u s)", signum,
             sessions_left(d), DRAIN_DEADLINE_MS / 1000u);
    for (int w = 0; w < d->n_workers; w++)
        worker_stop(d->workers[w]);
    d->drain_deadline = uv_now(d->loop) + DRAIN_DEADLINE_MS;
    uv_timer_start(&d->drain_timer, on_drain_poll, 0, 100);
}

static void raise_fd_limit(const config_t *cfg);

/* SIGUSR1: the transfer log was rotated (renamed): reopen it by its path. */
static void on_usr1(uv_signal_t *sig, int signum)
{
    (void)signum;
    daemon_t *d = sig->data;
    if (d->audit) {
        auditlog_reopen(d->audit);
        LOG_INFO(0, NULL, "transfer log %s reopened", auditlog_path(d->audit));
    }
}

/* Every listening socket, bound by the main thread while it still has its
 * privileges: one per worker and listener (a SO_REUSEPORT group per listener
 * when there are several workers), and the shared state of the listeners. */
static int setup_listeners(daemon_t *d, char *err, size_t errlen)
{
    const config_t *cfg = d->cfg;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    d->n_workers = cfg->workers ? (int)cfg->workers : (cpus > 0 ? (int)cpus : 1);
    if (d->n_workers > (int)CONFIG_WORKERS_MAX)
        d->n_workers = (int)CONFIG_WORKERS_MAX;
    d->n_listeners = cfg->n_listeners;
    d->admission = admission_new();
    d->pools = calloc(d->n_listeners, sizeof *d->pools);
    d->shared = calloc(d->n_listeners, sizeof *d->shared);
    d->fds = malloc(sizeof *d->fds * d->n_listeners * (size_t)d->n_workers);
    if (!d->admission || !d->pools || !d->shared || !d->fds) {
        snprintf(err, errlen, "out of memory");
        fprintf(stderr, "ftpsgate: %s\n", err);
        return FG_NOMEM;
    }
    int *col = malloc(sizeof *col * (size_t)d->n_workers);
    int rc = col ? FG_OK : FG_NOMEM;
    size_t bound = 0;
    for (size_t i = 0; rc == FG_OK && i < d->n_listeners; i++) {
        const config_listener_t *lc = &cfg->listeners[i];
        d->pools[i] = portpool_new(lc->passive.first, lc->passive.last);
        if (!d->pools[i] || (rc = listener_bind(lc, d->n_workers > 1, col, (size_t)d->n_workers, err, errlen)) != FG_OK) {
            rc = rc == FG_OK ? FG_NOMEM : rc;
            fprintf(stderr, "ftpsgate: %s\n", d->pools[i] ? err : "out of memory");
            break;
        }
        for (int w = 0; w < d->n_workers; w++)
            d->fds[(size_t)w * d->n_listeners + i] = col[w];
        bound = i + 1;
        d->shared[i] = (listener_shared_t){.session_ids = &d->session_ids, .admission = d->admission,
                                           .pool = d->pools[i], .audit = d->audit};
        char backend[400];
        if (lc->has_backend)
            describe_backend(&lc->backend, backend, sizeof backend);
        else
            snprintf(backend, sizeof backend, "no default backend");
        LOG_INFO(0, NULL, "listener %s: %s on %s:%u -> %s%s", lc->name,
                 lc->mode == LISTEN_IMPLICIT ? "implicit FTPS" : "explicit FTPS", lc->bind.host,
                 (unsigned)lc->bind.port, backend, lc->n_routes ? " and routes" : "");
    }
    free(col);
    if (rc != FG_OK) {
        for (size_t i = 0; i < bound; i++)
            for (int w = 0; w < d->n_workers; w++)
                close(d->fds[(size_t)w * d->n_listeners + i]);
        d->n_workers = 0;
    }
    return rc;
}

static int start_workers(daemon_t *d, char *err, size_t errlen)
{
    int n = d->n_workers;
    d->workers = calloc((size_t)n, sizeof *d->workers);
    d->n_workers = 0;
    if (!d->workers) {
        snprintf(err, errlen, "out of memory");
        return FG_NOMEM;
    }
    for (int w = 0; w < n; w++) {
        int rc = worker_start(w, d->gen, d->fds + (size_t)w * d->n_listeners, d->shared, &d->workers[w], err,
                              errlen);
        if (rc != FG_OK) {
            for (int rest = w + 1; rest < n; rest++) /* not handed to a worker: still ours */
                for (size_t i = 0; i < d->n_listeners; i++)
                    close(d->fds[(size_t)rest * d->n_listeners + i]);
            return rc;
        }
        d->n_workers = w + 1;
    }
    LOG_INFO(0, NULL, "%d worker loop%s", n, n == 1 ? "" : "s");
    return FG_OK;
}

/* The end, after a failed start or the last session: the workers' threads
 * joined, every handle of this loop closed and run to its close callback,
 * then the memory, then the log writer. */
static void release_all(daemon_t *d)
{
    for (int w = 0; w < d->n_workers; w++) {
        worker_stop(d->workers[w]);
        worker_join(d->workers[w]);
    }
    free(d->workers);
    auditlog_close(d->audit, LOG_FLUSH_WAIT_MS); /* no worker writes to it any more */
    d->audit = NULL;
    defer_teardown();
    uv_walk(d->loop, on_walk_close, NULL);
    uv_run(d->loop, UV_RUN_DEFAULT);
    for (size_t i = 0; d->pools && i < d->n_listeners; i++)
        portpool_free(d->pools[i]);
    free(d->pools);
    free(d->shared);
    free(d->fds);
    admission_free(d->admission);
    generation_unref(d->gen);
    uv_loop_close(d->loop);
    log_stop_async(LOG_FLUSH_WAIT_MS);
}

/* SIGHUP: re-read the config and the certificates. New sessions get them;
 * live sessions keep what they started with. Changes that need new sockets
 * (listeners added or removed, bind, mode, passive ports, admin) are refused
 * as a whole, with the reason logged, and the running config stays. */
static void on_hup(uv_signal_t *sig, int signum)
{
    (void)signum;
    daemon_t *d = sig->data;
    char err[512];
    config_t *cfg = NULL;
    if (config_load_file(d->config_path, &cfg, err, sizeof err) != FG_OK) {
        LOG_ERROR(0, NULL, "reload refused: %s", err);
        return;
    }
    generation_t *gen = generation_new(cfg, err, sizeof err);
    if (!gen) {
        LOG_ERROR(0, NULL, "reload refused: %s", err);
        return;
    }
    cfg = (config_t *)generation_config(gen);
    const char *problem = NULL;
    if (cfg->n_listeners != d->n_listeners)
        problem = "the number of listeners changed";
    for (size_t i = 0; !problem && i < cfg->n_listeners; i++)
        if (strcmp(cfg->listeners[i].name, d->cfg->listeners[i].name) != 0)
            problem = "listener names or order changed";
    if (!problem && (cfg->admin.enabled != d->cfg->admin.enabled ||
                     (cfg->admin.enabled && (cfg->admin.bind.port != d->cfg->admin.bind.port ||
                                             strcmp(cfg->admin.bind.host, d->cfg->admin.bind.host) != 0))))
        problem = "admin.bind changed";
    if (problem) {
        LOG_ERROR(0, NULL, "reload refused: %s; restart ftpsgate to apply it", problem);
        generation_unref(gen);
        return;
    }
    /* Check every listener before changing any, so a refusal changes nothing. */
    for (size_t i = 0; i < d->n_listeners; i++) {
        if (listener_can_reconfigure(&d->cfg->listeners[i], &cfg->listeners[i], err, sizeof err) != 0) {
            LOG_ERROR(0, NULL, "reload refused: %s", err);
            generation_unref(gen);
            return;
        }
    }
    if ((cfg->log.transfer_log == NULL) != (d->cfg->log.transfer_log == NULL) ||
        (cfg->log.transfer_log && strcmp(cfg->log.transfer_log, d->cfg->log.transfer_log) != 0))
        LOG_WARN(0, NULL, "log.transfer_log changed: applies at the next start (SIGUSR1 reopens the current path)");
    if (cfg->workers != d->cfg->workers)
        LOG_WARN(0, NULL, "workers changed: applies at the next start (%d loops run now)", d->n_workers);
    if (d->admin && admin_set_token(d->admin, cfg->admin.token) != FG_OK)
        LOG_WARN(0, NULL, "admin.token: out of memory; the previous token stays in force");
    for (int w = 0; w < d->n_workers; w++)
        worker_reload(d->workers[w], gen);
    generation_unref(d->gen);
    d->gen = gen;
    d->cfg = cfg;
    log_setup(cfg->log.level, cfg->log.format == LOGFMT_JSON);
    raise_fd_limit(cfg); /* max_sessions may have grown */
    check_certificates(gen);
    LOG_INFO(0, NULL, "configuration and certificates reloaded from %s; live sessions keep theirs",
             d->config_path);
}

/* A session holds up to six descriptors at once (control and data toward
 * both sides, a passive listener, an active-mode backend listener). Shells
 * often start daemons with a soft limit of 1024, which max_sessions' default
 * alone would exceed: raise the soft limit as far as the hard one allows
 * (any user may), and say so when that is still short. */
#define FDS_PER_SESSION 6
#define FDS_SPARE 64
#define FDS_UNLIMITED_SESSIONS 1048576

static void raise_fd_limit(const config_t *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t need = cfg->limits.max_sessions
                      ? (rlim_t)cfg->limits.max_sessions * FDS_PER_SESSION + FDS_SPARE
                      : FDS_UNLIMITED_SESSIONS;
    rlim_t target = need < rl.rlim_max ? need : rl.rlim_max;
    if (rl.rlim_cur < target) {
        rlim_t before = rl.rlim_cur;
        rl.rlim_cur = target;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
            LOG_INFO(0, NULL, "open file limit raised from %llu to %llu", (unsigned long long)before,
                     (unsigned long long)target);
        else
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (cfg->limits.max_sessions && rl.rlim_cur < need)
        LOG_WARN(0, NULL,
                 "limits.max_sessions %u needs up to %llu open files, the limit is %llu: sessions past "
                 "about %llu may fail (raise it: ulimit -n, LimitNOFILE=)",
                 cfg->limits.max_sessions, (unsigned long long)need, (unsigned long long)rl.rlim_cur,
                 (unsigned long long)(rl.rlim_cur > FDS_SPARE ? (rl.rlim_cur - FDS_SPARE) / FDS_PER_SESSION : 0));
}

int main(int argc, char **argv)
{
    const char *config_path = NULL;
    int check_only = 0, health_only = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "-c") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "ftpsgate: %s needs a file\n", argv[i]);
                return 2;
            }
            config_path = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            config_path = argv[i] + 9;
        } else if (strcmp(argv[i], "--check-config") == 0) {
            check_only = 1;
        } else if (strcmp(argv[i], "--healthcheck") == 0) {
            health_only = 1;
        } else if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0) {
            printf("ftpsgate %s (%s, libuv %s)\n", FTPSGATE_VERSION, OpenSSL_version(OPENSSL_VERSION),
                   uv_version_string());
            return 0;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "ftpsgate: unknown argument \"%s\"\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!config_path) {
        fprintf(stderr, "ftpsgate: --config FILE is required\n");
        usage(stderr);
        return 2;
    }

    daemon_t d;
    memset(&d, 0, sizeof d);
    d.config_path = config_path;
    char err[512];
    config_t *loaded = NULL;
    if (config_load_file(config_path, &loaded, err, sizeof err) != FG_OK) {
        fprintf(stderr, "ftpsgate: %s\n", err);
        return 1;
    }
    if (health_only) { /* the running proxy's listeners; certificates are not this check's business */
        int rc = healthcheck_run(loaded, HEALTHCHECK_TIMEOUT_MS, stdout);
        config_free(loaded);
        return rc == FG_OK ? 0 : 1;
    }
    log_setup(loaded->log.level, loaded->log.format == LOGFMT_JSON);
    d.gen = generation_new(loaded, err, sizeof err);
    if (!d.gen) {
        fprintf(stderr, "ftpsgate: %s\n", err);
        return 1;
    }
    d.cfg = generation_config(d.gen);
    if (check_only) {
        check_certificates(d.gen); /* warnings on stderr; the plan on stdout */
        printf("%s: configuration OK (%zu listener%s, %zu TLS identit%s)\n", config_path,
               d.cfg->n_listeners, d.cfg->n_listeners == 1 ? "" : "s", d.cfg->n_tls,
               d.cfg->n_tls == 1 ? "y" : "ies");
        print_passive_plan(d.cfg);
        generation_unref(d.gen);
        return 0;
    }

    for (size_t i = 0; i < d.cfg->n_listeners; i++) {
        const config_listener_t *lc = &d.cfg->listeners[i];
        /* Fail at start, not at the first client, when the capability is missing. */
        if ((config_listener_source_client(lc) || lc->transparent) && transparent_probe(err, sizeof err) != 0) {
            fprintf(stderr, "ftpsgate: listeners[%zu] (%s): %s\n", i, lc->name, err);
            generation_unref(d.gen);
            return 1;
        }
    }

    signal(SIGPIPE, SIG_IGN);
    /* From here the event loop runs: a log line must never wait for stderr. */
    if (log_start_async(LOG_BUFFER_BYTES) != 0) {
        fprintf(stderr, "ftpsgate: cannot start the log writer\n");
        generation_unref(d.gen);
        return 1;
    }
    raise_fd_limit(d.cfg);
    check_certificates(d.gen);
    d.loop = uv_default_loop();
    if (defer_setup(d.loop) != 0) {
        fprintf(stderr, "ftpsgate: cannot set up the event loop\n");
        generation_unref(d.gen);
        log_stop_async(LOG_FLUSH_WAIT_MS);
        return 1;
    }
    /* The transfer log opens before privileges go (a root-owned log directory). */
    if (d.cfg->log.transfer_log &&
        auditlog_open(d.cfg->log.transfer_log, 0, &d.audit, err, sizeof err) != FG_OK) {
        fprintf(stderr, "ftpsgate: %s\n", err);
        d.audit = NULL;
        release_all(&d);
        return 1;
    }
    /* The stop and reload signals wait (blocked) until their handlers are in
     * place: from here on a client or a scraper can reach the process, and a
     * SIGTERM that came before the handlers would kill it instead of draining.
     * Worker threads inherit the mask, so these signals reach the main thread. */
    sigset_t handled;
    sigemptyset(&handled);
    sigaddset(&handled, SIGTERM);
    sigaddset(&handled, SIGINT);
    sigaddset(&handled, SIGHUP);
    sigaddset(&handled, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &handled, NULL);
    int failed = setup_listeners(&d, err, sizeof err) != FG_OK;
    if (!failed && d.cfg->admin.enabled) {
        admin_handlers_t h = {render_metrics, render_sessions, &d};
        if (admin_start(d.loop, &d.cfg->admin.bind, &h, d.cfg->admin.token, &d.admin, err, sizeof err) != FG_OK) {
            fprintf(stderr, "ftpsgate: %s\n", err);
            d.admin = NULL;
            failed = 1;
        } else {
            LOG_INFO(0, NULL, "admin endpoint on %s:%u (/metrics, /healthz, /sessions, /status)%s",
                     d.cfg->admin.bind.host, (unsigned)d.cfg->admin.bind.port,
                     d.cfg->admin.token ? ", token required" : "");
        }
    }
    int needs_net_admin = 0;
    for (size_t i = 0; i < d.cfg->n_listeners; i++)
        needs_net_admin |= d.cfg->listeners[i].transparent || config_listener_source_client(&d.cfg->listeners[i]);
    if (!failed && drop_privileges(d.cfg->user, needs_net_admin) != 0)
        failed = 1;
    /* Sessions start only now, without the privileges used to bind. */
    if (!failed && start_workers(&d, err, sizeof err) != FG_OK) {
        fprintf(stderr, "ftpsgate: %s\n", err);
        failed = 1;
    }
    if (failed) {
        admin_stop(d.admin);
        release_all(&d);
        return 1;
    }

    uv_signal_init(d.loop, &d.sig_term);
    uv_signal_init(d.loop, &d.sig_int);
    uv_signal_init(d.loop, &d.sig_hup);
    uv_timer_init(d.loop, &d.drain_timer);
    d.sig_term.data = d.sig_int.data = d.sig_hup.data = d.drain_timer.data = &d;
    uv_signal_start(&d.sig_term, on_stop_signal, SIGTERM);
    uv_signal_start(&d.sig_int, on_stop_signal, SIGINT);
    uv_signal_start(&d.sig_hup, on_hup, SIGHUP);
    uv_signal_init(d.loop, &d.sig_usr1);
    d.sig_usr1.data = &d;
    uv_signal_start(&d.sig_usr1, on_usr1, SIGUSR1);
    pthread_sigmask(SIG_UNBLOCK, &handled, NULL);
    LOG_INFO(0, NULL, "ftpsgate %s ready", FTPSGATE_VERSION);

    uv_run(d.loop, UV_RUN_DEFAULT);

    LOG_INFO(0, NULL, "stopped");
    release_all(&d);
    return 0;
}
