#include "session.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datalink.h"
#include "feat.h"
#include "fgerr.h"
#include "ftp_addr.h"
#include "ftp_cmd.h"
#include "ftp_reply.h"
#include "linebuf.h"
#include "log.h"
#include "netaddr.h"
#include "policy.h"
#include "proxyproto.h"
#include "tls_engine.h"
#include "transparent.h"

#include <openssl/rand.h>

/* Unparsed client bytes: reading pauses above CLIENT_INPUT_PAUSE, so the
 * buffer stays below it plus one delivery (64 KiB clear, 16 KiB TLS). */
#define CLIENT_INPUT_PAUSE (8u * 1024u)
#define CLIENT_INPUT_MAX (CLIENT_INPUT_PAUSE + 80u * 1024u)
#define CLIENT_INPUT_START 2048u
#define BACKEND_LINE_MAX 8192u
#define BACKEND_ALT_MAX 7 /* other addresses of a backend name worth trying */
#define HELD_REPLY_MAX 2048u
#define CLOSE_GRACE_MS 3000u

typedef enum {
    WAIT_NONE = 0,  /* ready for the next client command */
    WAIT_GREETING,  /* backend connection and its 220 */
    WAIT_FORWARD,   /* reply to a forwarded command */
    WAIT_FEAT,      /* FEAT reply, merged */
    WAIT_DATA_SETUP,/* backend's reply to our PASV/EPSV/PORT/EPRT */
    WAIT_TRANSFER,  /* replies of a transfer command */
    WAIT_QUIT,      /* QUIT's reply, then close */
    WAIT_REIN,      /* the new backend connection's greeting answers REIN */
    WAIT_TLS_STOP,  /* CCC/REIN: the client's close_notify */
    WAIT_ABORT      /* ABOR during a transfer: the transfer's and ABOR's replies */
} wait_t;

typedef enum { DL_NONE = 0, DL_PENDING, DL_OK, DL_FAILED } dl_status_t;

struct session {
    session_t *next, *prev;
    listener_t *listener;
    const config_listener_t *cfg;
    const config_limits_t *limits;
    uv_loop_t *loop;
    unsigned long long id;
    char peer[72];
    struct sockaddr_storage client_addr, local_addr, backend_addr;
    /* The backend name's other addresses, tried in order when a connect fails
     * (a "localhost" backend listening on 127.0.0.1 only, ::1 resolved first). */
    struct sockaddr_storage backend_alt[BACKEND_ALT_MAX];
    unsigned n_backend_alt, next_backend_alt;
    tstream_t *client, *backend;
    linebuf_t *client_lb, *backend_lb;
    ftp_reply_state_t reply_state;
    char *cin;
    size_t cin_len, cin_pos, cin_cap;
    wait_t wait;
    policy_state_t pol;
    int logged_in;
    int last_reply_code;
    ftp_cmd_id_t data_cmd;       /* the client's PASV/EPSV/PORT/EPRT */
    dl_backend_mode_t data_backend_mode;
    uint16_t data_port;          /* announced passive port */
    int data_sent_epsv, backend_wants_epsv;
    int feat_multiline;
    datalink_t *dl;
    char dl_prot;
    dl_status_t dl_status;
    int dl_fail_code;
    char dl_fail_text[128];
    int xfer_prelim;
    int abort_finals;       /* final replies still owed after ABOR */
    char *deferred;         /* a command that arrived during a transfer, run after it */
    size_t deferred_len;
    int held_final;
    size_t held_len;
    char held[HELD_REPLY_MAX];
    uv_timer_t timer;
    uv_timer_t connect_timer; /* one connect attempt to a backend address */
    uv_getaddrinfo_t resolver;
    unsigned handles;
    unsigned closing : 1, client_paused : 1, backend_paused : 1, resolving : 1, rein_implicit : 1;
    char user[64];
    struct sockaddr_storage balancer_addr;
    struct sockaddr_storage orig_dst;      /* interception: where the client meant to go */
    int intercepted; /* the PROXY protocol sender, when there is one */
    unsigned char *pp_buf;     /* a PROXY header being read (NULL once done or when not used) */
    size_t pp_len;
    generation_t *gen;         /* the configuration this session started with (kept on reload) */
    SSL_CTX *tls_ctx;          /* its listener's default identity in that configuration */
    SSL_SESSION *ctl_session;  /* the control TLS session data connections resume; forgotten at the end */
    const tls_sni_t *sni;
    unsigned char tls_token[TLS_ENGINE_TOKEN_LEN]; /* ties data TLS sessions to this control connection */
};

static void session_close(session_t *s, int graceful, const char *why);
static void process_input(session_t *s);
static void connect_backend(session_t *s);
static void dial_backend(session_t *s);

/* ---- output -------------------------------------------------------------- */

static int start_client_tls(session_t *s)
{
    if (tstream_start_tls(s->client, s->tls_ctx) != FG_OK) {
        session_close(s, 0, "cannot start TLS");
        return FG_TLS;
    }
    tls_engine_set_token(tstream_engine(s->client), s->tls_token, 1);
    tls_engine_set_sni(tstream_engine(s->client), s->sni);
    return FG_OK;
}

static void client_write(session_t *s, const char *data, size_t len)
{
    if (s->client && !tstream_closing(s->client))
        tstream_write(s->client, data, len);
}

static void client_line(session_t *s, const char *line, size_t len)
{
    char buf[BACKEND_LINE_MAX + 2];
    if (len > BACKEND_LINE_MAX)
        len = BACKEND_LINE_MAX;
    memcpy(buf, line, len);
    buf[len] = '\r';
    buf[len + 1] = '\n';
    client_write(s, buf, len + 2);
}

static void reply(session_t *s, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void reply(session_t *s, int code, const char *fmt, ...)
{
    char buf[512];
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
    client_write(s, buf, len);
}

static void backend_write_line(session_t *s, const char *line, size_t len)
{
    /* The line reader turned the client's IAC IAC into one 0xFF byte; toward
     * the backend it is doubled again (RFC 854), or the backend would read a
     * Telnet command. Lines are capped, so the worst case fits. */
    char buf[2 * 65536 + 2];
    size_t n = 0;
    if (!s->backend || len > 65536)
        return;
    for (size_t i = 0; i < len; i++) {
        buf[n++] = line[i];
        if ((unsigned char)line[i] == 0xFF)
            buf[n++] = line[i];
    }
    buf[n++] = '\r';
    buf[n++] = '\n';
    tstream_write(s->backend, buf, n);
}

/* Control connections sit idle for as long as a transfer runs: keepalive
 * probes keep NAT and firewall state alive (or the final 226 is lost) and
 * find peers that vanished. */
static void set_keepalive(session_t *s, tstream_t *t)
{
    if (s->limits->tcp_keepalive_s > 0)
        uv_tcp_keepalive(tstream_tcp(t), 1, s->limits->tcp_keepalive_s);
}

/* ---- timers and lifetime -------------------------------------------------- */

static void on_timer(uv_timer_t *t);

/* Before login the deadline runs from connect (or REIN) and nothing the
 * client sends extends it; after login every command restarts the idle timer. */
static void start_login_timer(session_t *s)
{
    if (!s->closing)
        uv_timer_start(&s->timer, on_timer, (uint64_t)s->limits->login_timeout_s * 1000u, 0);
}

static void restart_timer(session_t *s)
{
    if (s->closing || !s->logged_in)
        return;
    uv_timer_start(&s->timer, on_timer, (uint64_t)s->limits->idle_timeout_s * 1000u, 0);
}

static void on_timer(uv_timer_t *t)
{
    session_t *s = t->data;
    if (s->closing) {
        /* The grace period for a graceful close is over. */
        if (s->client)
            tstream_close(s->client, 0);
        if (s->backend)
            tstream_close(s->backend, 0);
        return;
    }
    if (s->wait == WAIT_TRANSFER && s->logged_in) {
        restart_timer(s); /* a transfer in progress is not idleness */
        return;
    }
    LOG_INFO(s->id, s->peer, "%s timeout", s->logged_in ? "idle" : "login");
    reply(s, 421, "Timeout; closing control connection");
    session_close(s, 1, "timeout");
}

static void on_timer_closed(uv_handle_t *h)
{
    session_t *s = h->data;
    tls_session_forget(s->tls_ctx, s->ctl_session);
    listener_session_gone(s->listener, s);
    linebuf_free(s->client_lb);
    linebuf_free(s->backend_lb);
    free(s->cin);
    free(s->deferred);
    free(s->pp_buf);
    generation_unref(s->gen);
    free(s);
}

static void session_release_handle(session_t *s)
{
    s->handles--;
    if (s->handles == 0 && s->closing)
        uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}

static void on_connect_timer_closed(uv_handle_t *h)
{
    session_release_handle(h->data);
}

static void session_close(session_t *s, int graceful, const char *why)
{
    if (s->closing)
        return;
    s->closing = 1;
    LOG_INFO(s->id, s->peer, "session end: %s", why);
    if (s->dl) {
        datalink_detach(s->dl);
        s->dl = NULL;
    }
    if (s->resolving)
        uv_cancel((uv_req_t *)&s->resolver);
    uv_close((uv_handle_t *)&s->connect_timer, on_connect_timer_closed);
    if (s->backend)
        tstream_close(s->backend, 0);
    if (s->client) {
        if (graceful) {
            /* Flush what we said (e.g. 421), then close_notify and FIN. */
            tstream_shutdown(s->client);
            uv_timer_start(&s->timer, on_timer, CLOSE_GRACE_MS, 0);
        } else {
            tstream_close(s->client, 0);
        }
    }
    if (s->handles == 0)
        uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}

void session_abort(session_t *s, const char *why)
{
    session_close(s, 0, why);
}

/* ---- data link ------------------------------------------------------------- */

static void end_transfer(session_t *s)
{
    /* The data connection may have spent the client's TLS 1.3 ticket (curl
     * uses each once): a fresh one goes out with the next control reply,
     * before the client can open its next data connection. */
    if (s->dl && s->dl_prot == 'P' && s->client && tstream_engine(s->client))
        tls_engine_issue_ticket(tstream_engine(s->client));
    if (s->dl) {
        datalink_detach(s->dl);
        s->dl = NULL;
    }
    s->dl_status = DL_NONE;
    s->xfer_prelim = 0;
    s->held_final = 0;
    s->held_len = 0;
    s->wait = WAIT_NONE;
    restart_timer(s);
}

static void try_release_held(session_t *s)
{
    if (s->wait != WAIT_TRANSFER || !s->held_final || s->dl_status == DL_PENDING)
        return;
    if (s->dl_status == DL_FAILED) {
        /* The backend's own verdict is replaced: the client did not get the bytes. */
        reply(s, s->dl_fail_code, "%s", s->dl_fail_text);
    } else {
        client_write(s, s->held, s->held_len);
    }
    end_transfer(s);
    process_input(s);
}

static void on_datalink_done(void *owner, int code, const char *text)
{
    session_t *s = owner;
    if (code == 0) {
        s->dl_status = DL_OK;
    } else {
        s->dl_status = DL_FAILED;
        s->dl_fail_code = code;
        snprintf(s->dl_fail_text, sizeof s->dl_fail_text, "%s", text);
    }
    try_release_held(s);
}

static void hold_reply_line(session_t *s, const char *line, size_t len, int last)
{
    if (s->held_len + len + 2 > sizeof s->held) {
        if (!last)
            return; /* middle lines of an oversized final reply are dropped */
        s->held_len = 0;
        if (len + 2 > sizeof s->held)
            len = sizeof s->held - 2;
    }
    memcpy(s->held + s->held_len, line, len);
    s->held_len += len;
    s->held[s->held_len++] = '\r';
    s->held[s->held_len++] = '\n';
}

static const struct sockaddr *announce_for(session_t *s, struct sockaddr_storage *tmp)
{
    const config_listener_t *c = s->cfg;
    for (size_t i = 0; i < c->passive.n_announce; i++) {
        const config_announce_t *a = &c->passive.announce[i];
        if (a->match_all || config_cidr_match(&a->clients, (const struct sockaddr *)&s->client_addr)) {
            if (netaddr_parse_ip(a->address, 0, tmp) == FG_OK)
                return (const struct sockaddr *)tmp;
        }
    }
    /* Intercepted clients believe they talk to the server: announce its address. */
    if (s->intercepted)
        return (const struct sockaddr *)&s->orig_dst;
    return (const struct sockaddr *)&s->local_addr;
}

/* The reply the client gets once the data channel is prepared. */
static void reply_data_ready(session_t *s)
{
    char line[128];
    int n = -1;
    switch (s->data_cmd) {
    case FTP_CMD_PORT:
        reply(s, 200, "PORT command successful");
        return;
    case FTP_CMD_EPRT:
        reply(s, 200, "EPRT command successful");
        return;
    case FTP_CMD_EPSV:
        n = ftp_addr_format_229(line, sizeof line, s->data_port);
        break;
    default: {
        struct sockaddr_storage tmp;
        struct in_addr ip4;
        if (!netaddr_ipv4(announce_for(s, &tmp), &ip4)) {
            /* RFC 2428 §4: PASV cannot name an IPv6 address. */
            end_transfer(s);
            reply(s, 425, "PASV needs an IPv4 address; use EPSV");
            return;
        }
        n = ftp_addr_format_227(line, sizeof line, ip4, s->data_port);
        break;
    }
    }
    if (n > 0)
        client_write(s, line, (size_t)n);
}

/* Validates PORT/EPRT (RFC 2577 §3, anti-bounce). 0 and *target, or -1 after
 * a refusal was sent. */
static int check_active_target(session_t *s, const ftp_cmd_t *cmd, struct sockaddr_storage *target)
{
    int rc;
    memset(target, 0, sizeof *target);
    if (!cmd->arg) {
        reply(s, 501, "Syntax error in parameters");
        return -1;
    }
    if (cmd->id == FTP_CMD_PORT) {
        struct sockaddr_in *sin = (struct sockaddr_in *)target;
        uint16_t port;
        rc = ftp_addr_parse_port(cmd->arg, cmd->arg_len, &sin->sin_addr, &port);
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
    } else {
        rc = ftp_addr_parse_eprt(cmd->arg, cmd->arg_len, target);
        if (rc == FG_RANGE && cmd->arg_len > 2 && cmd->arg[1] != '1' && cmd->arg[1] != '2') {
            reply(s, 522, "Network protocol not supported, use (1,2)");
            return -1;
        }
    }
    if (rc != FG_OK) {
        reply(s, 501, "Syntax error in parameters");
        return -1;
    }
    /* SECURITY: FTP bounce (RFC 2577 §3): the data connection may only go back
     * to the client itself, never to a third host named in PORT/EPRT. */
    /* An unspecified address (lftp sends "EPRT |2|::|port|") means the
     * client itself: the connection goes to its control address anyway. */
    struct sockaddr_storage any;
    memset(&any, 0, sizeof any);
    any.ss_family = target->ss_family;
    int unspecified = netaddr_same_ip((const struct sockaddr *)target, (const struct sockaddr *)&any);
    if (!unspecified &&
        !netaddr_same_ip((const struct sockaddr *)target, (const struct sockaddr *)&s->client_addr)) {
        char ip[64];
        LOG_WARN(s->id, s->peer, "SECURITY: refused %s to %s (not the client's address)", cmd->verb,
                 netaddr_format_ip((const struct sockaddr *)target, ip, sizeof ip));
        listener_metrics(s->listener)->policy_refusals++;
        reply(s, 500, "Illegal %s command: the address must be your own", cmd->verb);
        return -1;
    }
    /* SECURITY: privileged ports are services, not FTP clients (RFC 2577 §3). */
    if (netaddr_port((const struct sockaddr *)target) < 1024 && !s->cfg->active.allow_low_ports) {
        LOG_WARN(s->id, s->peer, "SECURITY: refused %s to privileged port %u", cmd->verb,
                 (unsigned)netaddr_port((const struct sockaddr *)target));
        listener_metrics(s->listener)->policy_refusals++;
        reply(s, 500, "Illegal %s command: port below 1024", cmd->verb);
        return -1;
    }
    /* The client's address is the control peer's; keep its family (a v4-mapped
     * control peer gets a v4-mapped data target). */
    uint16_t port = netaddr_port((const struct sockaddr *)target);
    memcpy(target, &s->client_addr, sizeof *target);
    netaddr_set_port((struct sockaddr *)target, port);
    return 0;
}

static dl_backend_mode_t backend_mode_for(const session_t *s, ftp_cmd_id_t client_cmd)
{
    switch (s->cfg->backend.data_mode) {
    case DATA_MODE_ACTIVE:
        return DL_BACKEND_LISTEN;
    case DATA_MODE_CLIENT:
        return client_cmd == FTP_CMD_PORT || client_cmd == FTP_CMD_EPRT ? DL_BACKEND_LISTEN
                                                                        : DL_BACKEND_CONNECT;
    default:
        return DL_BACKEND_CONNECT;
    }
}

/* Asks the backend for its side of the data channel. */
static void send_backend_data_command(session_t *s)
{
    char line[128];
    int n;
    if (s->data_backend_mode == DL_BACKEND_LISTEN) {
        const struct sockaddr *la = datalink_backend_listen_addr(s->dl);
        struct in_addr ip4;
        if (netaddr_ipv4(la, &ip4) && s->backend_addr.ss_family == AF_INET)
            n = ftp_addr_format_port(line, sizeof line, ip4, netaddr_port(la));
        else
            n = ftp_addr_format_eprt(line, sizeof line, la);
    } else {
        /* PASV first toward an IPv4 server (every legacy server has it), EPSV
         * for IPv6 or once PASV was refused; learnt once per session. */
        int epsv = s->backend_addr.ss_family == AF_INET6 || s->backend_wants_epsv;
        n = snprintf(line, sizeof line, "%s\r\n", epsv ? "EPSV" : "PASV");
        s->data_sent_epsv = epsv;
    }
    if (n > 0 && s->backend)
        tstream_write(s->backend, line, (size_t)n);
    s->wait = WAIT_DATA_SETUP;
}

/* PASV, EPSV, PORT, EPRT from the client: prepare both sides of a data link. */
static void start_data_setup(session_t *s, const ftp_cmd_t *cmd)
{
    struct sockaddr_storage target;
    int active = cmd->id == FTP_CMD_PORT || cmd->id == FTP_CMD_EPRT;
    if (cmd->id == FTP_CMD_EPSV && cmd->arg) {
        /* RFC 2428 §3: EPSV <net-prt> asks for a given protocol family. */
        struct in_addr v4;
        int local_v4 = netaddr_ipv4((const struct sockaddr *)&s->local_addr, &v4);
        if (cmd->arg_len == 1 && cmd->arg[0] == '1') {
            if (!local_v4) {
                reply(s, 522, "Network protocol not supported, use (2)");
                return;
            }
        } else if (cmd->arg_len == 1 && cmd->arg[0] == '2') {
            if (local_v4) {
                reply(s, 522, "Network protocol not supported, use (1)");
                return;
            }
        } else {
            reply(s, 501, "Syntax: EPSV [1|2|ALL]");
            return;
        }
    }
    if (active && !s->cfg->active.enabled) {
        reply(s, 502, "Active mode is disabled; use PASV or EPSV");
        return;
    }
    if (active && check_active_target(s, cmd, &target) != 0)
        return;
    end_transfer(s); /* a new PASV/PORT replaces the previous data channel */

    struct sockaddr_storage backend_local, source;
    int blen = sizeof backend_local;
    memset(&backend_local, 0, sizeof backend_local);
    if (s->backend)
        uv_tcp_getsockname(tstream_tcp(s->backend), (struct sockaddr *)&backend_local, &blen);
    netaddr_set_port((struct sockaddr *)&backend_local, 0);
    /* TPROXY interception: data sockets use the server's address, as the
     * client expects; otherwise ours. */
    int tproxy = s->intercepted && s->cfg->transparent;
    const struct sockaddr *own = tproxy ? (const struct sockaddr *)&s->orig_dst
                                        : (const struct sockaddr *)&s->local_addr;
    memcpy(&source, own, netaddr_len(own));
    netaddr_set_port((struct sockaddr *)&source, (uint16_t)s->cfg->active.source_port);

    s->data_cmd = cmd->id;
    s->data_backend_mode = backend_mode_for(s, cmd->id);
    datalink_opts_t o = {
        .client_mode = active ? DL_CLIENT_ACTIVE : DL_CLIENT_PASSIVE,
        .listen_addr = own,
        .transparent = tproxy,
        .backend_source = s->cfg->backend.source_client ? (const struct sockaddr *)&s->client_addr : NULL,
        .pool = listener_pool(s->listener),
        .client_addr = s->cfg->proxy_protocol.data_peer_balancer ? (const struct sockaddr *)&s->balancer_addr
                                                                 : (const struct sockaddr *)&s->client_addr,
        .check_peer_ip = s->cfg->passive.check_peer_ip,
        .client_target = active ? (const struct sockaddr *)&target : NULL,
        .active_source = s->cfg->active.source_port || tproxy ? (const struct sockaddr *)&source : NULL,
        .backend_mode = s->data_backend_mode,
        .backend_addr = (const struct sockaddr *)&s->backend_addr,
        .backend_local = (const struct sockaddr *)&backend_local,
        .tls = s->pol.prot == 'P' ? s->tls_ctx : NULL,
        .sni = s->sni,
        .tls_token = s->tls_token,
        .require_session_reuse = s->cfg->policy.require_session_reuse,
        .accept_upload_without_close_notify = !s->cfg->policy.upload_requires_close_notify,
        .connect_timeout_ms = s->limits->data_connect_timeout_s * 1000u,
        .stall_timeout_s = s->limits->transfer_stall_timeout_s,
        .session_id = s->id,
        .peer = s->peer,
        .metrics = listener_metrics(s->listener),
    };
    int rc = datalink_new(s->loop, &o, on_datalink_done, s, &s->dl);
    if (rc != FG_OK) {
        s->dl = NULL;
        if (rc == FG_RANGE)
            listener_metrics(s->listener)->passive_ports_exhausted++;
        LOG_WARN(s->id, s->peer, "cannot prepare a data channel (%s)", fg_strerror(rc));
        if (rc == FG_RANGE)
            reply(s, 425, "Cannot open data connection: no free port, try again later");
        else
            reply(s, 425, "Cannot open data connection");
        return;
    }
    s->dl_prot = s->pol.prot;
    s->dl_status = DL_PENDING;
    s->data_port = active ? 0 : datalink_client_port(s->dl);
    if (!active && s->cfg->passive.announce_first) /* NAT / Docker port mapping */
        s->data_port = (uint16_t)(s->cfg->passive.announce_first + (s->data_port - s->cfg->passive.first));
    send_backend_data_command(s);
}

/* The backend's answer to our PASV/EPSV/PORT/EPRT. */
static void data_setup_reply(session_t *s, const ftp_reply_line_t *r, const char *line, size_t len)
{
    if (!r->last)
        return;
    s->wait = WAIT_NONE;
    if (!s->dl) {
        reply(s, 425, "Cannot open data connection");
        return;
    }
    if (s->data_backend_mode == DL_BACKEND_LISTEN) {
        if (r->code / 100 != 2) {
            client_line(s, line, len);
            end_transfer(s);
            return;
        }
        reply_data_ready(s);
        return;
    }
    if ((r->code == 500 || r->code == 502) && !s->data_sent_epsv && !s->backend_wants_epsv) {
        s->backend_wants_epsv = 1; /* no PASV here: ask with EPSV from now on */
        send_backend_data_command(s);
        return;
    }
    uint16_t port = 0;
    struct in_addr ignored;
    int rc = FG_SYNTAX;
    if (r->code == 227)
        rc = ftp_addr_parse_227(r->text, r->text_len, &ignored, &port);
    else if (r->code == 229)
        rc = ftp_addr_parse_229(r->text, r->text_len, &port);
    else {
        client_line(s, line, len); /* e.g. 530 not logged in: the client sees why */
        end_transfer(s);
        return;
    }
    if (rc != FG_OK) {
        LOG_WARN(s->id, s->peer, "backend sent an unusable passive reply (%d)", r->code);
        end_transfer(s);
        reply(s, 425, "Cannot open data connection: bad passive reply from server");
        return;
    }
    /* The IP in a 227 is ignored (RFC 2577 §3: a server-chosen address is a
     * bounce vector); the data port is on the backend control peer. */
    datalink_set_backend_port(s->dl, port);
    LOG_DEBUG(s->id, s->peer, "data channel: client %s port %u, backend port %u",
              s->data_cmd == FTP_CMD_PORT || s->data_cmd == FTP_CMD_EPRT ? "active" : "passive",
              (unsigned)s->data_port, (unsigned)port);
    reply_data_ready(s);
}

static void start_transfer(session_t *s, const ftp_cmd_t *cmd, const char *line, size_t len)
{
    if (!s->dl) {
        reply(s, 425, "Use PASV or EPSV first");
        return;
    }
    if (s->dl_status == DL_FAILED) {
        reply(s, s->dl_fail_code, "%s", s->dl_fail_text);
        end_transfer(s);
        return;
    }
    if (s->pol.prot != s->dl_prot) {
        reply(s, 425, "Protection level changed since PASV; send PASV or EPSV again");
        end_transfer(s);
        return;
    }
    backend_write_line(s, line, len);
    s->wait = WAIT_TRANSFER;
    s->xfer_prelim = 0;
    s->held_final = 0;
    s->held_len = 0;
    datalink_set_direction(s->dl, ftp_cmd_is_upload(cmd->id));
}

/* ---- TLS teardown (CCC, REIN) and REIN ------------------------------------------ */

static void on_client_tls_stopped(tstream_t *t)
{
    session_t *s = tstream_userdata(t);
    if (s->rein_implicit) {
        /* MS-FTPS: after REIN an implicit session starts over with a new
         * handshake on the same TCP connection. */
        s->rein_implicit = 0;
        if (start_client_tls(s) != FG_OK)
            return;
    } else {
        s->pol.tls_active = 0;
    }
    linebuf_reset(s->client_lb);
    s->wait = WAIT_NONE;
    process_input(s);
}

static void stop_client_tls(session_t *s, int restart)
{
    s->rein_implicit = restart;
    if (tstream_stop_tls(s->client, on_client_tls_stopped) != FG_OK) {
        session_close(s, 0, "cannot end TLS on the control connection");
        return;
    }
    s->wait = WAIT_TLS_STOP;
}

static void retired_on_close(tstream_t *t)
{
    session_release_handle(tstream_userdata(t));
}

static const tstream_cbs_t retired_cbs = {.on_close = retired_on_close};

/* REIN (RFC 959 §4.1.1, RFC 2228 §5.3.3): the session returns to its state at
 * TCP connect. Backends often lack REIN, so the proxy reconnects to the
 * backend instead of forwarding it; the new greeting answers the client. */
static void reinitialize(session_t *s)
{
    end_transfer(s);
    if (s->backend) {
        tstream_t *old = s->backend;
        s->backend = NULL;
        s->backend_paused = 0;
        tstream_set_userdata(old, &retired_cbs, s);
        tstream_close(old, 0);
    }
    s->logged_in = 0;
    s->user[0] = '\0';
    linebuf_set_cap(s->client_lb, s->limits->max_line_prelogin);
    s->pol.epsv_all = 0;
    if (s->pol.implicit_mode) {
        s->pol.pbsz_done = 1;
        s->pol.prot = s->cfg->policy.data_protection == PROTECT_CLEAR ? 'C' : 'P';
    } else {
        s->pol.pbsz_done = 0;
        s->pol.prot = 'C';
    }
    LOG_INFO(s->id, s->peer, "REIN: session reinitialized");
    start_login_timer(s); /* a fresh login deadline */
    s->wait = WAIT_REIN;
    connect_backend(s);
}

/* ---- commands during a transfer ---------------------------------------------- */

/* The Telnet "Synch" of RFC 959 §4.1.3: IAC IP, then IAC DM sent as TCP urgent
 * data, so a backend busy with the transfer notices the ABOR. */
static void send_abort_to_backend(session_t *s)
{
    static const char urgent[] = {(char)0xFF, (char)0xF4, (char)0xFF};
    static const char rest[] = {(char)0xF2, 'A', 'B', 'O', 'R', '\r', '\n'};
    uv_os_fd_t fd;
    if (!s->backend)
        return;
    if (tstream_queued(s->backend) == 0 && uv_fileno((uv_handle_t *)tstream_tcp(s->backend), &fd) == 0 &&
        send(fd, urgent, sizeof urgent, MSG_OOB | MSG_NOSIGNAL) == (ssize_t)sizeof urgent) {
        tstream_write(s->backend, rest, sizeof rest);
        return;
    }
    static const char plain[] = "ABOR\r\n";
    tstream_write(s->backend, plain, sizeof plain - 1);
}

static void abort_transfer(session_t *s)
{
    LOG_INFO(s->id, s->peer, "ABOR during a transfer");
    if (s->dl) {
        datalink_detach(s->dl);
        s->dl = NULL;
    }
    s->dl_status = DL_NONE;
    send_abort_to_backend(s);
    if (s->held_final) {
        /* The backend finished but the client did not get every byte. */
        reply(s, 426, "Connection closed; transfer aborted");
        s->abort_finals = 1;
    } else {
        s->abort_finals = 2; /* the transfer's own reply, then ABOR's */
    }
    s->held_final = 0;
    s->held_len = 0;
    s->xfer_prelim = 0;
    s->wait = WAIT_ABORT;
}

/* Only ABOR, STAT and NOOP are taken while a transfer runs (RFC 959 §4.1.3;
 * FileZilla and WinSCP send NOOP keep-alives); anything else waits. */
static int handle_during_transfer(session_t *s, const char *line, size_t len)
{
    ftp_cmd_t cmd;
    if (ftp_cmd_parse(line, len, &cmd) != FG_OK)
        return 0;
    switch (cmd.id) {
    case FTP_CMD_NOOP:
        reply(s, 200, "NOOP ok");
        return 1;
    case FTP_CMD_STAT: {
        char buf[256];
        uint64_t to_client = 0, to_backend = 0;
        if (s->dl)
            datalink_progress(s->dl, &to_client, &to_backend);
        int n = snprintf(buf, sizeof buf,
                         "213-Status of the transfer in progress:\r\n %llu bytes to the client, %llu "
                         "bytes to the server\r\n213 End of status\r\n",
                         (unsigned long long)to_client, (unsigned long long)to_backend);
        client_write(s, buf, (size_t)n);
        return 1;
    }
    case FTP_CMD_ABOR:
        abort_transfer(s);
        return 1;
    default:
        return 0;
    }
}

/* ---- client commands -------------------------------------------------------- */

static void send_own_features(session_t *s)
{
    feat_policy_t fp = {
        .tls_available = 1,
        .auth_allowed = s->cfg->mode == LISTEN_EXPLICIT && !s->pol.tls_active,
        .ccc_allowed = s->cfg->policy.ccc_allowed,
        .eprt_allowed = s->cfg->active.enabled,
    };
    char buf[512];
    int n = feat_own_lines(&fp, buf, sizeof buf);
    if (n > 0)
        client_write(s, buf, (size_t)n);
}

static void handle_command(session_t *s, const char *line, size_t len)
{
    ftp_cmd_t cmd;
    if (ftp_cmd_parse(line, len, &cmd) != FG_OK) {
        reply(s, 500, "Syntax error, command unrecognized");
        return;
    }
    if (log_enabled(LOG_LEVEL_DEBUG)) {
        char shown[160];
        ftp_cmd_redact(line, len, shown, sizeof shown); /* SECURITY: never log PASS */
        LOG_DEBUG(s->id, s->peer, "client: %s", shown);
    }
    /* SECURITY: commands (NOOP...) before login do not extend the login
     * deadline, so nobody idles unauthenticated (start_login_timer). */
    restart_timer(s);
    if (cmd.id == FTP_CMD_USER && cmd.arg) {
        size_t n = cmd.arg_len < sizeof s->user - 1 ? cmd.arg_len : sizeof s->user - 1;
        log_escape(cmd.arg, n, s->user, sizeof s->user);
    }
    policy_decision_t d;
    policy_decide(&s->pol, &cmd, &d);
    switch (d.action) {
    case POLICY_REPLY:
        if (d.code == 534 || d.code == 521) {
            listener_metrics(s->listener)->policy_refusals++;
            LOG_INFO(s->id, s->peer, "policy refused %s (%d)", cmd.verb, d.code);
        }
        reply(s, d.code, "%s", d.text);
        return;
    case POLICY_AUTH: {
        reply(s, 234, "Proceed with negotiation.");
        if (start_client_tls(s) != FG_OK)
            return;
        s->pol.tls_active = 1;
        /* SECURITY: plaintext pipelined after AUTH (command injection,
         * CVE-2011-0411 class) is discarded, never executed. */
        size_t dropped = s->cin_len - s->cin_pos + linebuf_partial(s->client_lb);
        if (dropped > 0) {
            listener_metrics(s->listener)->pipelined_after_auth++;
            LOG_WARN(s->id, s->peer, "SECURITY: discarded %zu plaintext bytes sent after AUTH", dropped);
        }
        s->cin_pos = s->cin_len;
        linebuf_reset(s->client_lb);
        return;
    }
    case POLICY_PBSZ:
        s->pol.pbsz_done = 1;
        reply(s, 200, "PBSZ=0");
        return;
    case POLICY_PROT:
        s->pol.prot = d.prot;
        reply(s, 200, "Protection level set to %s", d.prot == 'P' ? "Private" : "Clear");
        return;
    case POLICY_EPSV_ALL:
        s->pol.epsv_all = 1;
        reply(s, 200, "EPSV ALL ok");
        return;
    case POLICY_PASSIVE:
    case POLICY_ACTIVE:
        start_data_setup(s, &cmd);
        return;
    case POLICY_FEAT:
        backend_write_line(s, line, len);
        s->feat_multiline = 0;
        s->wait = WAIT_FEAT;
        return;
    case POLICY_TRANSFER:
        start_transfer(s, &cmd, line, len);
        return;
    case POLICY_QUIT:
        backend_write_line(s, line, len);
        s->wait = WAIT_QUIT;
        return;
    case POLICY_CCC:
        /* RFC 2228 §5.3.3 / RFC 4217 §6: reply under TLS, then close_notify both
         * ways; the control connection goes on in clear, data channels keep PROT. */
        reply(s, 200, "CCC command successful; control connection continues in clear");
        LOG_INFO(s->id, s->peer, "CCC: control connection returns to clear");
        stop_client_tls(s, 0);
        return;
    case POLICY_REIN:
        reinitialize(s);
        return;
    case POLICY_FORWARD:
        backend_write_line(s, line, len);
        s->wait = WAIT_FORWARD;
        return;
    }
}

static int can_take_input(const session_t *s)
{
    if (s->closing)
        return 0;
    /* SECURITY: a client that sends commands but never reads the replies
     * (PBSZ, PROT, NOOP... answered here) would grow our queue without end:
     * stop taking commands until it reads (client_on_drain resumes). */
    if (s->client && tstream_queued(s->client) > TSTREAM_HIGH_MARK)
        return 0;
    return s->wait == WAIT_NONE || (s->wait == WAIT_TRANSFER && !s->deferred);
}

static void process_input(session_t *s)
{
    if (s->deferred && s->wait == WAIT_NONE && !s->closing) {
        char *line = s->deferred;
        s->deferred = NULL;
        handle_command(s, line, s->deferred_len);
        free(line);
    }
    while (can_take_input(s) && s->cin_pos < s->cin_len) {
        size_t used = 0, llen = 0;
        const char *line = NULL;
        int rc = linebuf_take(s->client_lb, s->cin + s->cin_pos, s->cin_len - s->cin_pos, &used,
                              &line, &llen);
        s->cin_pos += used;
        if (rc == FG_NEED_MORE)
            break;
        if (rc == FG_TOO_LONG) {
            LOG_INFO(s->id, s->peer, "command line over the %u byte cap discarded",
                     s->logged_in ? s->limits->max_line : s->limits->max_line_prelogin);
            listener_metrics(s->listener)->lines_too_long++;
            reply(s, 500, "Command line too long");
            continue;
        }
        if (rc == FG_SYNTAX) {
            reply(s, 500, "Invalid character in command line");
            continue;
        }
        if (s->wait == WAIT_TRANSFER) {
            if (handle_during_transfer(s, line, llen))
                continue;
            s->deferred = malloc(llen + 1);
            if (!s->deferred) {
                session_close(s, 0, "out of memory");
                return;
            }
            memcpy(s->deferred, line, llen);
            s->deferred_len = llen;
            break;
        }
        handle_command(s, line, llen);
    }
    if (s->cin_pos > 0) {
        memmove(s->cin, s->cin + s->cin_pos, s->cin_len - s->cin_pos);
        s->cin_len -= s->cin_pos;
        s->cin_pos = 0;
    }
    if (s->client_paused && s->cin_len < CLIENT_INPUT_PAUSE / 2 && s->client && !s->closing) {
        s->client_paused = 0;
        tstream_resume(s->client);
    }
}

/* ---- backend replies ------------------------------------------------------- */

static void feat_reply(session_t *s, const ftp_reply_line_t *r, const char *line, size_t len)
{
    if (r->first && !r->last && r->code == 211) {
        s->feat_multiline = 1;
        client_line(s, line, len);
        return;
    }
    if (!r->last) {
        if (s->feat_multiline && feat_keep_line(line, len))
            client_line(s, line, len);
        return;
    }
    if (s->feat_multiline) {
        send_own_features(s);
        client_line(s, line, len);
    } else {
        /* The backend has no FEAT (or nothing to list): ours alone. */
        static const char head[] = "211-Features:\r\n", tail[] = "211 End\r\n";
        client_write(s, head, sizeof head - 1);
        send_own_features(s);
        client_write(s, tail, sizeof tail - 1);
    }
    s->wait = WAIT_NONE;
}

static void transfer_reply(session_t *s, const ftp_reply_line_t *r, const char *line, size_t len)
{
    if (r->code < 200) {
        client_line(s, line, len);
        if (r->last)
            s->xfer_prelim = 1;
        return;
    }
    if (!s->xfer_prelim) {
        /* No data connection was used (e.g. 550): nothing to wait for. */
        client_line(s, line, len);
        if (r->last)
            end_transfer(s);
        return;
    }
    /* DESIGN §2: the final reply waits until every byte was delivered. */
    hold_reply_line(s, line, len, r->last);
    if (r->last) {
        s->held_final = 1;
        try_release_held(s);
    }
}

static void on_backend_line(session_t *s, const char *line, size_t len)
{
    ftp_reply_line_t r;
    if (ftp_reply_feed(&s->reply_state, line, len, &r) != FG_OK) {
        char shown[96];
        log_escape(line, len, shown, sizeof shown);
        LOG_WARN(s->id, s->peer, "backend protocol error: \"%s\"", shown);
        reply(s, 421, "Service not available: bad reply from server");
        session_close(s, 1, "backend protocol error");
        return;
    }
    if (r.last)
        s->last_reply_code = r.code;
    switch (s->wait) {
    case WAIT_FEAT:
        feat_reply(s, &r, line, len);
        break;
    case WAIT_DATA_SETUP:
        data_setup_reply(s, &r, line, len);
        break;
    case WAIT_TRANSFER:
        transfer_reply(s, &r, line, len);
        break;
    case WAIT_ABORT:
        client_line(s, line, len);
        if (r.last && r.code >= 200 && --s->abort_finals <= 0)
            end_transfer(s);
        break;
    case WAIT_REIN:
        client_line(s, line, len);
        if (r.last && r.code >= 200) {
            if (r.code != 220) {
                session_close(s, 1, "backend refused the session after REIN");
                return;
            }
            if (s->pol.tls_active)
                stop_client_tls(s, s->pol.implicit_mode);
            else
                s->wait = WAIT_NONE;
        }
        break;
    default:
        client_line(s, line, len);
        if (r.last && r.code >= 200) {
            if (r.code == 230 && !s->logged_in) {
                s->logged_in = 1;
                linebuf_set_cap(s->client_lb, s->limits->max_line);
                LOG_INFO(s->id, s->peer, "login user=\"%s\"", s->user);
                restart_timer(s);
            }
            if (s->wait == WAIT_QUIT) {
                session_close(s, 1, "QUIT");
                return;
            }
            if (s->wait == WAIT_GREETING && r.code != 220) {
                session_close(s, 1, "backend refused the session");
                return;
            }
            s->wait = WAIT_NONE;
        }
        break;
    }
    if (!s->closing && (s->wait == WAIT_NONE || s->wait == WAIT_TRANSFER))
        process_input(s);
}

/* ---- client stream ---------------------------------------------------------- */

/* The PROXY header (haproxy's proxy-protocol.txt) comes before anything
 * else, TLS included: it names the real client for logs, limits, the data
 * peer check and the announce map. */
static void read_proxy_header(session_t *s, const char *buf, size_t len)
{
    size_t room = PROXYPROTO_MAX - s->pp_len, take = len < room ? len : room;
    memcpy(s->pp_buf + s->pp_len, buf, take);
    s->pp_len += take;
    proxyproto_t pp;
    int rc = proxyproto_parse(s->pp_buf, s->pp_len, &pp);
    if (rc == FG_NEED_MORE && take == len)
        return;
    if (rc != FG_OK) {
        /* SECURITY: a listener that expects PROXY headers takes nothing else. */
        LOG_WARN(s->id, s->peer, "SECURITY: missing or malformed PROXY protocol header (%s); closed",
                 fg_strerror(rc == FG_NEED_MORE ? FG_TOO_LONG : rc));
        session_close(s, 0, "bad PROXY header");
        return;
    }
    char balancer[72];
    snprintf(balancer, sizeof balancer, "%s", s->peer);
    if (!pp.local) {
        memcpy(&s->client_addr, &pp.src, sizeof s->client_addr);
        netaddr_format((const struct sockaddr *)&s->client_addr, s->peer, sizeof s->peer);
    }
    LOG_INFO(s->id, s->peer, "PROXY v%d header from %s: client %s", pp.version, balancer,
             pp.local ? "(local: the balancer itself)" : s->peer);
    /* The header ends mid-buffer: what follows (and what the cap cut off) is the client's stream. */
    size_t rest_len = s->pp_len - pp.header_len + (len - take);
    unsigned char *rest = malloc(rest_len ? rest_len : 1);
    if (!rest) {
        session_close(s, 0, "out of memory");
        return;
    }
    memcpy(rest, s->pp_buf + pp.header_len, s->pp_len - pp.header_len);
    memcpy(rest + (s->pp_len - pp.header_len), buf + take, len - take);
    free(s->pp_buf);
    s->pp_buf = NULL;
    if (s->limits->max_sessions_per_ip &&
        listener_sessions_from(s->listener, (const struct sockaddr *)&s->client_addr) >
            s->limits->max_sessions_per_ip) {
        LOG_WARN(s->id, s->peer, "connection refused: too many sessions from this address");
        listener_metrics(s->listener)->sessions_refused++;
        free(rest);
        if (s->cfg->mode == LISTEN_EXPLICIT)
            reply(s, 421, "Service not available: too many sessions from this address");
        session_close(s, 1, "per-IP limit");
        return;
    }
    if (s->cfg->mode == LISTEN_IMPLICIT && start_client_tls(s) != FG_OK) {
        free(rest);
        return;
    }
    connect_backend(s);
    tstream_inject(s->client, rest, rest_len);
    free(rest);
}

static void client_on_data(tstream_t *t, const char *buf, size_t len)
{
    session_t *s = tstream_userdata(t);
    if (s->closing)
        return;
    if (s->pp_buf) {
        read_proxy_header(s, buf, len);
        return;
    }
    if (s->cin_len + len > CLIENT_INPUT_MAX) {
        session_close(s, 0, "client input overflow");
        return;
    }
    if (s->cin_len + len > s->cin_cap) {
        /* Grows only for a client that pipelines or sends big TLS records;
         * an idle session keeps the small buffer. */
        size_t cap = s->cin_len + len;
        char *p = realloc(s->cin, cap);
        if (!p) {
            session_close(s, 0, "out of memory");
            return;
        }
        s->cin = p;
        s->cin_cap = cap;
    }
    memcpy(s->cin + s->cin_len, buf, len);
    s->cin_len += len;
    if (s->cin_len > CLIENT_INPUT_PAUSE && !s->client_paused) {
        s->client_paused = 1;
        tstream_pause(t);
    }
    process_input(s);
}

static void client_on_handshake(tstream_t *t)
{
    session_t *s = tstream_userdata(t);
    LOG_INFO(s->id, s->peer, "control TLS established (%s)", tstream_tls_desc(t));
    /* A new handshake (after REIN) replaces the session data connections resume. */
    tls_session_forget(s->tls_ctx, s->ctl_session);
    s->ctl_session = tls_engine_get1_session(tstream_engine(t));
}

static void client_on_end(tstream_t *t, tstream_end_t how, const char *reason)
{
    session_t *s = tstream_userdata(t);
    if (s->closing) {
        tstream_close(t, 0);
        return;
    }
    if (how == TSTREAM_END_TLS_FAILED) {
        listener_metrics(s->listener)->control_tls_failures++;
        LOG_WARN(s->id, s->peer, "control TLS failed: %s", reason);
    }
    session_close(s, 0, how == TSTREAM_END_CLEAN ? "client closed" : reason);
}

static void client_on_drain(tstream_t *t)
{
    session_t *s = tstream_userdata(t);
    if (s->backend_paused && s->backend) {
        s->backend_paused = 0;
        tstream_resume(s->backend);
    }
    process_input(s); /* commands held while the client did not read */
}

static void client_on_shutdown(tstream_t *t, int status)
{
    (void)status;
    session_t *s = tstream_userdata(t);
    if (s->closing)
        tstream_close(t, 0);
}

static void client_on_close(tstream_t *t)
{
    session_t *s = tstream_userdata(t);
    s->client = NULL;
    if (!s->closing)
        session_close(s, 0, "client connection closed");
    session_release_handle(s);
}

static const tstream_cbs_t client_cbs = {
    .on_handshake = client_on_handshake,
    .on_data = client_on_data,
    .on_end = client_on_end,
    .on_drain = client_on_drain,
    .on_shutdown = client_on_shutdown,
    .on_close = client_on_close,
};

/* ---- backend stream ----------------------------------------------------------- */

/* A connect attempt to s->backend_addr failed (status) or timed out: the
 * name's next address, else 421. */
static void backend_connect_failed(session_t *s, tstream_t *t, int status)
{
    char addr[72];
    netaddr_format((const struct sockaddr *)&s->backend_addr, addr, sizeof addr);
    if (s->next_backend_alt < s->n_backend_alt && !s->closing) {
        LOG_WARN(s->id, s->peer, "backend %s unreachable: %s; trying the next address", addr,
                 uv_strerror(status));
        memcpy(&s->backend_addr, &s->backend_alt[s->next_backend_alt++], sizeof s->backend_addr);
        s->handles++; /* the next stream's; the failed one releases its own on close */
        tstream_close(t, 1);
        dial_backend(s);
        return;
    }
    LOG_ERROR(s->id, s->peer, "backend %s unreachable: %s", addr, uv_strerror(status));
    listener_metrics(s->listener)->backend_connect_failures++;
    reply(s, 421, "Service not available: cannot reach the FTP server");
    session_close(s, 1, "backend unreachable");
}

static void on_connect_timeout(uv_timer_t *timer)
{
    session_t *s = timer->data;
    if (s->backend && !s->closing)
        backend_connect_failed(s, s->backend, UV_ETIMEDOUT);
}

static void backend_on_connect(tstream_t *t, int status)
{
    session_t *s = tstream_userdata(t);
    uv_timer_stop(&s->connect_timer);
    if (status < 0) {
        backend_connect_failed(s, t, status);
        return;
    }
    uv_tcp_nodelay(tstream_tcp(t), 1);
    set_keepalive(s, t);
    tstream_start_read(t);
}

static void backend_on_data(tstream_t *t, const char *buf, size_t len)
{
    session_t *s = tstream_userdata(t);
    while (len > 0 && !s->closing) {
        size_t used = 0, llen = 0;
        const char *line = NULL;
        int rc = linebuf_take(s->backend_lb, buf, len, &used, &line, &llen);
        buf += used;
        len -= used;
        if (rc == FG_NEED_MORE)
            break;
        if (rc != FG_OK) {
            LOG_WARN(s->id, s->peer, "backend sent a %s reply line",
                     rc == FG_TOO_LONG ? "too long" : "malformed");
            reply(s, 421, "Service not available: bad reply from server");
            session_close(s, 1, "backend protocol error");
            return;
        }
        on_backend_line(s, line, llen);
    }
    if (!s->closing && s->client && tstream_queued(s->client) > TSTREAM_HIGH_MARK) {
        s->backend_paused = 1;
        tstream_pause(t);
    }
}

static void backend_on_end(tstream_t *t, tstream_end_t how, const char *reason)
{
    (void)how;
    session_t *s = tstream_userdata(t);
    if (s->closing)
        return;
    if (s->wait != WAIT_QUIT && s->last_reply_code != 421) {
        LOG_WARN(s->id, s->peer, "backend closed the control connection: %s", reason);
        reply(s, 421, "Service not available, remote server has closed connection");
    }
    session_close(s, 1, "backend closed");
}

static void backend_on_drain(tstream_t *t)
{
    (void)t;
}

static void backend_on_close(tstream_t *t)
{
    session_t *s = tstream_userdata(t);
    if (s->backend == t) /* not a failed connect already replaced by the next address */
        s->backend = NULL;
    session_release_handle(s);
}

static const tstream_cbs_t backend_cbs = {
    .on_connect = backend_on_connect,
    .on_data = backend_on_data,
    .on_end = backend_on_end,
    .on_drain = backend_on_drain,
    .on_close = backend_on_close,
};

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    session_t *s = req->data;
    s->resolving = 0;
    if (s->closing) {
        uv_freeaddrinfo(res);
        session_release_handle(s);
        return;
    }
    if (status < 0 || !res) {
        LOG_ERROR(s->id, s->peer, "cannot resolve backend %s: %s", s->cfg->backend.address.host,
                  uv_strerror(status));
        reply(s, 421, "Service not available: cannot reach the FTP server");
        uv_freeaddrinfo(res);
        session_close(s, 1, "backend unresolvable");
        session_release_handle(s);
        return;
    }
    memcpy(&s->backend_addr, res->ai_addr, res->ai_addrlen);
    netaddr_set_port((struct sockaddr *)&s->backend_addr, s->cfg->backend.address.port);
    for (const struct addrinfo *ai = res->ai_next; ai && s->n_backend_alt < BACKEND_ALT_MAX; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof s->backend_alt[0] ||
            netaddr_same_ip(ai->ai_addr, (const struct sockaddr *)&s->backend_addr))
            continue;
        struct sockaddr_storage *alt = &s->backend_alt[s->n_backend_alt++];
        memcpy(alt, ai->ai_addr, ai->ai_addrlen);
        netaddr_set_port((struct sockaddr *)alt, s->cfg->backend.address.port);
    }
    uv_freeaddrinfo(res);
    dial_backend(s);
}

/* Connects the backend control connection to s->backend_addr; owns the
 * handle count taken by connect_backend. */
static void dial_backend(session_t *s)
{
    s->backend = tstream_new(s->loop, &backend_cbs, s);
    if (!s->backend) {
        session_close(s, 0, "out of memory");
        session_release_handle(s);
        return;
    }
    if (s->cfg->backend.source_client) {
        /* Source-IP transparency: the legacy server sees the client's address. */
        struct sockaddr_storage src;
        memcpy(&src, &s->client_addr, sizeof src);
        netaddr_set_port((struct sockaddr *)&src, 0);
        if (src.ss_family != s->backend_addr.ss_family ||
            transparent_bind(tstream_tcp(s->backend), (const struct sockaddr *)&src, 1) != 0) {
            LOG_ERROR(s->id, s->peer, "cannot connect to the backend from the client's address");
            reply(s, 421, "Service not available: cannot reach the FTP server");
            session_close(s, 1, "backend source address");
            return;
        }
    }
    char addr[72];
    LOG_INFO(s->id, s->peer, "backend %s%s",
             netaddr_format((const struct sockaddr *)&s->backend_addr, addr, sizeof addr),
             s->cfg->backend.source_client ? " (from the client's address)" : "");
    if (tstream_connect(s->backend, (const struct sockaddr *)&s->backend_addr) != FG_OK) {
        reply(s, 421, "Service not available: cannot reach the FTP server");
        session_close(s, 1, "backend connect failed");
        return;
    }
    /* A silently dropped SYN would otherwise hold the session until the
     * kernel gives up (minutes), never trying the name's next address. */
    uv_timer_start(&s->connect_timer, on_connect_timeout,
                   (uint64_t)s->limits->backend_connect_timeout_s * 1000u, 0);
}

/* Interception (backend "original-destination"): the backend is where the
 * client meant to go, read from the diverted connection. 0, or -1 after the
 * session was refused. */
static int resolve_intercepted(session_t *s)
{
    int redirected = 0;
    char dst[72];
    if (transparent_original_dst(tstream_tcp(s->client), &s->orig_dst, &redirected) != 0) {
        session_close(s, 0, "cannot read the original destination");
        return -1;
    }
    netaddr_format((const struct sockaddr *)&s->orig_dst, dst, sizeof dst);
    const config_listener_t *c = s->cfg;
    const config_t *all = generation_config(s->gen);
    const char *why = NULL;
    struct in_addr v4;
    int allowed = config_cidr_any(c->backend.allow, c->backend.n_allow, (const struct sockaddr *)&s->orig_dst);
    /* SECURITY: never a relay to arbitrary hosts, to ourselves or to loopback. */
    if (netaddr_ipv4((const struct sockaddr *)&s->orig_dst, &v4) ? (ntohl(v4.s_addr) >> 24) == 127
        : IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&s->orig_dst)->sin6_addr))
        why = "loopback destination";
    else if (netaddr_same_ip((const struct sockaddr *)&s->orig_dst, (const struct sockaddr *)&s->local_addr) &&
             netaddr_port((const struct sockaddr *)&s->orig_dst) == c->bind.port)
        why = "not diverted (the client dialled ftpsgate itself)";
    else if (all->admin.enabled && netaddr_port((const struct sockaddr *)&s->orig_dst) == all->admin.bind.port)
        why = "the admin port";
    else if (!allowed)
        why = "outside backend.allow";
    if (why) {
        LOG_WARN(s->id, s->peer, "SECURITY: intercepted connection to %s refused: %s", dst, why);
        listener_metrics(s->listener)->policy_refusals++;
        session_close(s, 0, "destination not allowed");
        return -1;
    }
    s->intercepted = 1;
    memcpy(&s->backend_addr, &s->orig_dst, sizeof s->backend_addr);
    if (c->backend.port)
        netaddr_set_port((struct sockaddr *)&s->backend_addr, c->backend.port);
    LOG_INFO(s->id, s->peer, "intercepted: original destination %s (%s)", dst,
             redirected ? "REDIRECT/DNAT" : "TPROXY");
    return 0;
}

/* Resolves (without blocking the loop) and connects the backend control
 * connection; the greeting that follows is awaited in s->wait. */
static void connect_backend(session_t *s)
{
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)s->cfg->backend.address.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    s->resolver.data = s;
    s->resolving = 1;
    s->handles++; /* the resolver, which becomes the backend stream */
    s->n_backend_alt = s->next_backend_alt = 0;
    ftp_reply_init(&s->reply_state);
    linebuf_reset(s->backend_lb);
    s->last_reply_code = 0;
    if (s->cfg->backend.intercept) {
        s->resolving = 0;
        if (s->intercepted || resolve_intercepted(s) == 0)
            dial_backend(s);
        else
            session_release_handle(s);
        return;
    }
    if (uv_getaddrinfo(s->loop, &s->resolver, on_resolved, s->cfg->backend.address.host, port,
                       &hints) != 0) {
        s->resolving = 0;
        reply(s, 421, "Service not available: cannot reach the FTP server");
        session_close(s, 1, "backend unresolvable");
        session_release_handle(s);
    }
}

/* ---- start ---------------------------------------------------------------------- */

session_t *session_start(listener_t *l, uv_loop_t *loop, tstream_t *client, unsigned long long id)
{
    session_t *s = calloc(1, sizeof *s);
    const config_listener_t *cfg = listener_config(l);
    const config_limits_t *lim = listener_limits(l);
    if (s) {
        s->client_lb = linebuf_new(lim->max_line, 1);
        s->backend_lb = linebuf_new(BACKEND_LINE_MAX, 0);
        s->cin_cap = CLIENT_INPUT_START;
        s->cin = malloc(s->cin_cap);
    }
    if (!s || !s->client_lb || !s->backend_lb || !s->cin) {
        if (s) {
            linebuf_free(s->client_lb);
            linebuf_free(s->backend_lb);
            free(s->cin);
            free(s);
        }
        tstream_close(client, 1);
        return NULL;
    }
    linebuf_set_cap(s->client_lb, lim->max_line_prelogin);
    ftp_reply_init(&s->reply_state);
    if (RAND_bytes(s->tls_token, sizeof s->tls_token) != 1) {
        linebuf_free(s->client_lb);
        linebuf_free(s->backend_lb);
        free(s->cin);
        free(s);
        tstream_close(client, 1);
        return NULL;
    }
    s->listener = l;
    s->gen = listener_generation(l);
    generation_ref(s->gen);
    s->tls_ctx = listener_tls(l);
    s->sni = listener_sni(l);
    s->cfg = cfg;
    s->limits = lim;
    s->loop = loop;
    s->id = id;
    s->client = client;
    s->handles = 2; /* the client stream and connect_timer; connect_backend adds the backend */
    tstream_set_userdata(client, &client_cbs, s);
    tstream_set_connected(client);
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    uv_timer_init(loop, &s->connect_timer);
    s->connect_timer.data = s;

    int alen = sizeof s->client_addr;
    uv_tcp_getpeername(tstream_tcp(client), (struct sockaddr *)&s->client_addr, &alen);
    alen = sizeof s->local_addr;
    uv_tcp_getsockname(tstream_tcp(client), (struct sockaddr *)&s->local_addr, &alen);
    netaddr_format((const struct sockaddr *)&s->client_addr, s->peer, sizeof s->peer);
    uv_tcp_nodelay(tstream_tcp(client), 1);
    set_keepalive(s, client);

    s->pol.login_requires_tls = cfg->policy.login_requires_tls;
    s->pol.protection = cfg->policy.data_protection;
    s->pol.listing_protection = cfg->policy.listing_protection;
    s->pol.ccc_allowed = cfg->policy.ccc_allowed;
    s->pol.prot = 'C';
    s->wait = WAIT_GREETING;
    LOG_INFO(id, s->peer, "session start listener=%s mode=%s", cfg->name,
             cfg->mode == LISTEN_IMPLICIT ? "implicit" : "explicit");
    memcpy(&s->balancer_addr, &s->client_addr, sizeof s->balancer_addr);
    if (cfg->proxy_protocol.enabled) {
        s->pp_buf = malloc(PROXYPROTO_MAX);
        if (!s->pp_buf) {
            session_close(s, 0, "out of memory");
            return s;
        }
    }
    if (cfg->mode == LISTEN_IMPLICIT) {
        /* MS-FTPS §3.2.5: TLS from the first byte (after a PROXY header, if
         * any); the greeting is held by the stream until the handshake completes. */
        s->pol.implicit_mode = 1;
        s->pol.tls_active = 1;
        s->pol.pbsz_done = 1;
        s->pol.prot = cfg->policy.data_protection == PROTECT_CLEAR ? 'C' : 'P';
        if (!s->pp_buf && start_client_tls(s) != FG_OK)
            return s;
    }
    tstream_start_read(client);
    start_login_timer(s);

    /* Behind a balancer the backend is dialled once the real client is known. */
    if (!s->pp_buf)
        connect_backend(s);
    return s;
}

session_t *session_next(const session_t *s)
{
    return s->next;
}

void session_link(session_t *s, session_t **head)
{
    s->prev = NULL;
    s->next = *head;
    if (*head)
        (*head)->prev = s;
    *head = s;
}

void session_unlink(session_t *s, session_t **head)
{
    if (s->prev)
        s->prev->next = s->next;
    else if (*head == s)
        *head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->next = s->prev = NULL;
}

const struct sockaddr *session_client_addr(const session_t *s)
{
    return (const struct sockaddr *)&s->client_addr;
}
