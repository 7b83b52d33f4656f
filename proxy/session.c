#include "session.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auditlog.h"
#include "client.h"
#include "clientaddr.h"
#include "controltls.h"
#include "dataplan.h"
#include "fgerr.h"
#include "ftp_cmd.h"
#include "intake.h"
#include "log.h"
#include "netaddr.h"
#include "policy.h"
#include "relay.h"
#include "routing.h"
#include "upstream.h"

/* Lifetime and completion rules.
 *
 * A session owns its client connection (client.h), the backend half of its
 * command exchange (relay.h, with the backend control connection: upstream.h;
 * a retired one after REIN until it is closed), its routing (routing.h), its
 * data plan (dataplan.h, which owns the data links) and a timer. The counter
 * `children` holds one for the client and one for every open upstream; each
 * of their close callbacks takes its own off (asserted). Once it is zero on
 * a closing session the timer is closed, and the session's memory goes in
 * the timer's close callback. Nothing is freed anywhere else.
 *
 * As in libuv, none of those modules calls the session back from inside a
 * call the session made: failures found while starting work are reported
 * from the loop (defer.h). So a callback of the session may close or
 * replace the object whose callback it is: that object only marks itself
 * closing, and its memory outlives the stack. */

#define CLOSE_GRACE_MS 3000u
#define DEFERRED_MAX (16u * 1024u) /* commands that arrived during a transfer */

struct session {
    session_t *next, *prev;
    session_env_t env;
    generation_t *gen; /* the configuration this session started with (kept on reload) */
    const config_listener_t *cfg;
    const config_limits_t *limits;
    uv_loop_t *loop;
    unsigned long long id;
    uint64_t started_ms; /* uv_now at accept, for the live view */
    clientaddr_t who; /* where the client is; who.peer names it in the log */
    client_t *client;
    relay_t *relay;   /* what the backend is sent and what it answers (relay_waiting) */
    routing_t *route; /* which backend, the names the client gave, the command held for the greeting */
    dataplan_t *plan;
    policy_state_t pol;
    int logged_in;
    int tls_stopping; /* CCC/REIN: the client's close_notify is awaited */
    int replaying;    /* handle_command runs the held command again */
    intake_t intake;  /* which client command is taken when */
    uv_timer_t timer;
    unsigned children;
    unsigned closing : 1, ip_counted : 1;
    controltls_t tls; /* the control connection's TLS: identity, token, policy "client" */
};

static void session_close(session_t *s, int graceful, const char *why);
static void process_input(void *owner);
static void handle_command(session_t *s, const char *line, size_t len);

/* ---- lifetime ------------------------------------------------------------------- */

static void on_timer(uv_timer_t *t);

static void on_timer_closed(uv_handle_t *h)
{
    session_t *s = h->data;
    controltls_logout(&s->tls);
    s->env.gone(s->env.ctx, s, s->ip_counted ? (const struct sockaddr *)&s->who.client : NULL);
    relay_free(s->relay);
    dataplan_free(s->plan);
    routing_free(s->route);
    intake_clear(&s->intake);
    generation_unref(s->gen);
    free(s);
}

static void session_child_gone(session_t *s)
{
    assert(s->children > 0);
    if (--s->children == 0 && s->closing)
        uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}

static void session_close(session_t *s, int graceful, const char *why)
{
    if (s->closing)
        return;
    s->closing = 1;
    LOG_INFO(s->id, s->who.peer, "session end: %s", why);
    if (s->plan)
        dataplan_discard(s->plan);
    if (s->relay)
        relay_close(s->relay);
    if (s->client) {
        if (graceful) {
            /* Flush what we said (e.g. 421), then close_notify and FIN. */
            client_shutdown(s->client);
            uv_timer_start(&s->timer, on_timer, CLOSE_GRACE_MS, 0);
        } else {
            client_close(s->client);
        }
    }
    if (s->children == 0)
        uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}

void session_abort(session_t *s, const char *why)
{
    session_close(s, 0, why);
}

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
        if (s->client) /* the grace period for a graceful close is over */
            client_close(s->client);
        return;
    }
    if (s->logged_in && dataplan_in_transfer(s->plan)) {
        restart_timer(s); /* a transfer in progress is not idleness */
        return;
    }
    LOG_INFO(s->id, s->who.peer, "%s timeout", s->logged_in ? "idle" : "login");
    client_reply(s->client, 421, "Timeout; closing control connection");
    session_close(s, 1, "timeout");
}

/* The state at TCP connect, at start and after REIN (RFC 959 §4.1.1). */
static void session_reset(session_t *s)
{
    struct in_addr v4;
    policy_init(&s->pol, s->cfg, (const struct sockaddr *)&s->who.client,
                netaddr_ipv4((const struct sockaddr *)&s->who.local, &v4));
    s->logged_in = 0;
    routing_reset(s->route);
    controltls_logout(&s->tls);
    intake_clear(&s->intake);
    intake_set_cap(&s->intake, s->limits->max_line_prelogin);
    s->tls_stopping = 0;
    start_login_timer(s);
}

/* ---- the backend half (relay.h) ----------------------------------------------------- */

static void on_relay_ready(void *owner, const char *line, size_t len)
{
    session_t *s = owner;
    if (line) {
        s->replaying = 1; /* logged when it arrived */
        handle_command(s, line, len);
        s->replaying = 0;
    }
    process_input(s);
}

static void on_relay_login(void *owner)
{
    session_t *s = owner;
    if (s->logged_in)
        return;
    s->logged_in = 1;
    intake_set_cap(&s->intake, s->limits->max_line);
    LOG_INFO(s->id, s->who.peer, "login user=\"%s\"", routing_user_shown(s->route));
    controltls_login(&s->tls);
    restart_timer(s);
}

static void on_relay_replied(void *owner, int data_idle)
{
    session_t *s = owner;
    if (s->closing)
        return;
    if (data_idle)
        restart_timer(s);
    relay_wait_t w = relay_waiting(s->relay);
    if (!s->tls_stopping && (w == RELAY_IDLE || w == RELAY_DATA))
        process_input(s);
}

static void on_relay_end(void *owner, const char *reason)
{
    session_close(owner, 1, reason);
}

static void on_relay_closed(void *owner)
{
    session_child_gone(owner);
}

static const relay_cbs_t relay_cbs = {
    .on_ready = on_relay_ready,
    .on_login = on_relay_login,
    .on_replied = on_relay_replied,
    .on_end = on_relay_end,
    .on_closed = on_relay_closed,
};

/* What relay_forward and friends did: a new upstream is one more child. */
static void relayed(session_t *s, int rc)
{
    if (rc == RELAY_DIALLED) {
        s->children++;
    } else if (rc == FG_NOMEM) {
        session_close(s, 0, "out of memory");
    } else if (rc < 0) {
        client_reply(s->client, 421, "Service not available: cannot reach the FTP server");
        session_close(s, 1, "backend write failed");
    }
}

static void forward(session_t *s, const char *line, size_t len, relay_wait_t wait)
{
    relayed(s, relay_forward(s->relay, line, len, wait));
}

/* Whose transfers the audit log records. */
static auditlog_who_t audit_who(const session_t *s)
{
    size_t user_len = 0;
    const char *user = routing_sent_user(s->route, &user_len);
    return (auditlog_who_t){
        .session = s->id,
        .listener = s->cfg->name,
        .client = s->who.peer,
        .user = s->logged_in ? user : NULL,
        .user_len = user_len,
        .backend = relay_peer(s->relay),
    };
}

/* A transfer ended (dataplan.h): its record in the audit log. */
static void on_plan_transfer(void *owner, const dataplan_transfer_t *t)
{
    session_t *s = owner;
    auditlog_who_t who = audit_who(s);
    auditlog_transfer(s->env.audit, &who, t);
}

/* The data plan released a held transfer reply (from the loop). */
static void on_plan_idle(void *owner)
{
    session_t *s = owner;
    if (!relay_data_released(s->relay))
        return;
    restart_timer(s);
    process_input(s);
}

/* ---- client commands -------------------------------------------------------------- */

static int tls_started(session_t *s, int rc)
{
    if (rc != FG_OK)
        session_close(s, 0, "cannot start TLS");
    return rc;
}

static void on_client_tls_stopped(void *owner, int restarted)
{
    session_t *s = owner;
    s->pol.tls_active = restarted; /* CCC, explicit REIN: clear from now on */
    s->tls_stopping = 0;
    relay_resume(s->relay);
    process_input(s);
}

/* CCC and REIN: close_notify toward the client. Until the client answers,
 * backend replies wait unread (an unsolicited one must not be written into a
 * closing TLS stream, nor move the session on). */
static void stop_client_tls(session_t *s, int restart)
{
    if (client_stop_tls(s->client, restart) != FG_OK) {
        session_close(s, 0, "cannot end TLS on the control connection");
        return;
    }
    relay_pause(s->relay);
    s->tls_stopping = 1;
}

/* REIN (RFC 959 §4.1.1, RFC 2228 §5.3.3): the session returns to its state at
 * TCP connect. Backends often lack REIN: the backend connection is closed
 * instead of asked, and a new one opens when a command needs it. */
static void reinitialize(session_t *s)
{
    dataplan_discard(s->plan);
    relay_reset(s->relay);
    int tls = s->pol.tls_active;
    session_reset(s);
    LOG_INFO(s->id, s->who.peer, "REIN: session reinitialized");
    client_reply(s->client, 220, "%s", s->cfg->greeting);
    if (tls)
        stop_client_tls(s, s->pol.implicit_mode);
}

/* HOST on a listener with routes (RFC 7151): answered here, it may pick the route. */
static void on_host(session_t *s, const ftp_cmd_t *cmd)
{
    const char *text;
    int code = routing_host(s->route, cmd->arg, cmd->arg ? cmd->arg_len : 0, &text);
    client_reply(s->client, code, "%s", text);
}

/* USER: its name for the log and policy "client", the last datum routing
 * needs; the backend is dialled now if it is not yet. */
static void on_user(session_t *s, const ftp_cmd_t *cmd, const char *line, size_t len)
{
    routing_user(s->route, cmd->arg, cmd->arg ? cmd->arg_len : 0);
    relayed(s, relay_user(s->relay, line, len));
}

static void handle_command(session_t *s, const char *line, size_t len)
{
    ftp_cmd_t cmd;
    if (ftp_cmd_parse(line, len, &cmd) != FG_OK) {
        client_reply(s->client, 500, "Syntax error, command unrecognized");
        return;
    }
    if (log_enabled(LOG_LEVEL_DEBUG) && !s->replaying) {
        char shown[160];
        ftp_cmd_redact(line, len, shown, sizeof shown); /* SECURITY: never log PASS */
        LOG_DEBUG(s->id, s->who.peer, "client: %s", shown);
    }
    /* SECURITY: commands (NOOP...) before login do not extend the login
     * deadline, so nobody idles unauthenticated (start_login_timer). */
    restart_timer(s);
    s->pol.data_prot = dataplan_prot(s->plan);
    policy_decision_t d;
    policy_decide(&s->pol, &cmd, &d);
    switch (d.action) {
    case POLICY_REPLY:
        if (d.refusal) {
            char ip[64] = "";
            METRIC_INC(s->env.metrics, policy_refusals);
            if (d.target.ss_family)
                netaddr_format_ip((const struct sockaddr *)&d.target, ip, sizeof ip);
            LOG_WARN(s->id, s->who.peer, "SECURITY: refused %s%s%s (%d %s)", cmd.verb, ip[0] ? " to " : "", ip,
                     d.code, d.text);
        }
        if (d.drop_data)
            dataplan_discard(s->plan);
        client_reply(s->client, d.code, "%s", d.text);
        auditlog_who_t who = audit_who(s);
        auditlog_refused(s->env.audit, &who, &cmd, d.code, uv_now(s->loop));
        return;
    case POLICY_AUTH:
        /* SECURITY: what was pipelined after it is discarded (controltls.h),
         * also the commands held behind a transfer that came with it. */
        if (tls_started(s, controltls_auth(&s->tls, intake_clear(&s->intake))) == FG_OK)
            s->pol.tls_active = 1;
        return;
    case POLICY_PBSZ:
        s->pol.pbsz_done = 1;
        client_reply(s->client, 200, "PBSZ=0");
        return;
    case POLICY_PROT:
        s->pol.prot = d.prot;
        client_reply(s->client, 200, "Protection level set to %s", d.prot == 'P' ? "Private" : "Clear");
        return;
    case POLICY_EPSV_ALL:
        s->pol.epsv_all = 1;
        client_reply(s->client, 200, "EPSV ALL ok");
        return;
    case POLICY_PASSIVE:
    case POLICY_ACTIVE:
        relayed(s, relay_data_setup(s->relay, line, len, cmd.id,
                                    d.action == POLICY_ACTIVE ? (const struct sockaddr *)&d.target : NULL,
                                    s->pol.prot));
        return;
    case POLICY_FEAT:
        relayed(s, relay_feat(s->relay, line, len));
        return;
    case POLICY_TRANSFER:
        relayed(s, relay_transfer(s->relay, line, len, &cmd));
        return;
    case POLICY_QUIT:
        if (!relay_connected(s->relay)) { /* nothing to log out of */
            client_reply(s->client, 221, "Goodbye; no server session was opened.");
            session_close(s, 1, "QUIT");
            return;
        }
        forward(s, line, len, RELAY_QUIT);
        return;
    case POLICY_CCC:
        /* RFC 2228 §5.3.3 / RFC 4217 §6: reply under TLS, then close_notify both
         * ways; the control connection goes on in clear, data channels keep PROT. */
        client_reply(s->client, 200, "CCC command successful; control connection continues in clear");
        LOG_INFO(s->id, s->who.peer, "CCC: control connection returns to clear");
        stop_client_tls(s, 0);
        return;
    case POLICY_REIN:
        reinitialize(s);
        return;
    case POLICY_FORWARD:
        if (cmd.id == FTP_CMD_HOST && s->cfg->n_routes) {
            on_host(s, &cmd);
            return;
        }
        if (cmd.id == FTP_CMD_USER) {
            on_user(s, &cmd, line, len);
            return;
        }
        forward(s, line, len, RELAY_REPLY);
        return;
    }
}

/* The intake's view of the session (intake.h). */
static intake_mode_t intake_mode(void *owner)
{
    const session_t *s = owner;
    if (s->closing || !s->client)
        return INTAKE_NONE;
    /* SECURITY: a client that sends commands but never reads the replies
     * (PBSZ, PROT, NOOP... answered here) would grow our queue without end:
     * stop taking commands until it reads (on_client_drain resumes). */
    if (client_queued(s->client) > TSTREAM_HIGH_MARK || s->tls_stopping)
        return INTAKE_NONE;
    relay_wait_t w = relay_waiting(s->relay);
    if (w == RELAY_IDLE)
        return INTAKE_ONE;
    return w == RELAY_DATA && dataplan_in_transfer(s->plan) ? INTAKE_TRANSFER : INTAKE_NONE;
}

/* During a transfer (RFC 959 §4.1.3; FileZilla and WinSCP send NOOP keep-alives). */
static int intake_urgent(void *owner, const ftp_cmd_t *cmd)
{
    session_t *s = owner;
    switch (cmd->id) {
    case FTP_CMD_NOOP:
        client_reply(s->client, 200, "NOOP ok");
        return 1;
    case FTP_CMD_STAT:
        dataplan_stat(s->plan);
        return 1;
    case FTP_CMD_ABOR:
        return relay_abort(s->relay) == FG_OK; /* already aborting: it waits its turn */
    default:
        return 0;
    }
}

static void intake_command(void *owner, const char *line, size_t len)
{
    handle_command(owner, line, len);
}

static void intake_failed(void *owner)
{
    session_close(owner, 0, "out of memory");
}

static const intake_cbs_t intake_cbs = {
    .mode = intake_mode,
    .command = intake_command,
    .urgent = intake_urgent,
    .failed = intake_failed,
};

static void process_input(void *owner)
{
    intake_run(&((session_t *)owner)->intake);
}

/* ---- client connection ------------------------------------------------------------- */

/* Behind a balancer the per-IP limit is checked once the PROXY header named
 * the real client (the listener checks it at accept otherwise). */
static int over_ip_limit(session_t *s)
{
    const char *why = s->env.admit_client(s->env.ctx, (const struct sockaddr *)&s->who.client);
    if (!why) {
        s->ip_counted = 1;
        return 0;
    }
    LOG_WARN(s->id, s->who.peer, "connection refused: %s", why);
    METRIC_INC(s->env.metrics, sessions_refused);
    if (s->cfg->mode == LISTEN_EXPLICIT)
        client_reply(s->client, 421, "Service not available: %s", why);
    session_close(s, 1, "per-IP limit");
    return 1;
}

/* The session greets for itself (the backend is dialled later): at once on
 * explicit listeners, after the handshake on implicit ones (the stream
 * holds what is written until then). */
static void greet(session_t *s)
{
    if (s->cfg->mode == LISTEN_IMPLICIT && tls_started(s, controltls_start(&s->tls)) != FG_OK)
        return;
    client_reply(s->client, 220, "%s", s->cfg->greeting);
}

static int on_client_proxy_header(void *owner, int status, const proxyproto_t *pp)
{
    session_t *s = owner;
    if (clientaddr_proxy(&s->who, status, pp, s->id) != FG_OK) { /* SECURITY: nothing else is taken */
        session_close(s, 0, "bad PROXY header");
        return -1;
    }
    if (over_ip_limit(s))
        return -1;
    greet(s);
    return s->closing ? -1 : 0;
}

static void on_client_handshake(void *owner)
{
    session_t *s = owner;
    LOG_INFO(s->id, s->who.peer, "control TLS established (%s)", client_tls_desc(s->client));
    tls_engine_t *tls = client_tls(s->client); /* NULL only under the session fuzzer's fake */
    routing_tls_done(s->route, tls ? tls_engine_server_name(tls) : NULL);
}

static void on_client_drain(void *owner)
{
    session_t *s = owner;
    if (!s->tls_stopping)
        relay_resume(s->relay);
    process_input(s); /* commands held while the client did not read */
}

static void on_client_end(void *owner, tstream_end_t how, const char *reason)
{
    session_t *s = owner;
    if (how == TSTREAM_END_TLS_FAILED) {
        METRIC_INC(s->env.metrics, control_tls_failures);
        LOG_WARN(s->id, s->who.peer, "control TLS failed: %s", reason);
    }
    session_close(s, 0, how == TSTREAM_END_CLEAN ? "client closed" : reason);
}

static void on_client_closed(void *owner)
{
    session_t *s = owner;
    s->client = NULL;
    if (!s->closing)
        session_close(s, 0, "client connection closed");
    session_child_gone(s);
}

static const client_cbs_t client_cbs = {
    .on_proxy_header = on_client_proxy_header,
    .on_input = process_input,
    .on_handshake = on_client_handshake,
    .on_tls_stopped = on_client_tls_stopped,
    .on_drain = on_client_drain,
    .on_end = on_client_end,
    .on_closed = on_client_closed,
};

/* ---- start ---------------------------------------------------------------------------- */

session_t *session_start(const session_env_t *env, tstream_t *stream, unsigned long long id,
                         const session_origin_t *origin)
{
    const config_t *all = generation_config(env->gen);
    const config_listener_t *cfg = &all->listeners[env->listener_index];
    session_t *s = calloc(1, sizeof *s);
    if (!s || controltls_init(&s->tls) != FG_OK) {
        free(s);
        tstream_close(stream, 1);
        return NULL;
    }
    s->client = client_new(stream, cfg->proxy_protocol.enabled, all->limits.max_line, &client_cbs, s);
    if (!s->client) {
        free(s);
        return NULL;
    }
    s->env = *env;
    s->gen = env->gen;
    generation_ref(s->gen);
    s->route = routing_new(cfg);
    controltls_attach(&s->tls, s->client, generation_listener_tls(s->gen, env->listener_index),
                      generation_listener_sni(s->gen, env->listener_index), cfg->policy.require_session_reuse,
                      (const struct sockaddr *)&s->who.client, s->route);
    controltls_log_to(&s->tls, env->metrics, id, s->who.peer);
    s->cfg = cfg;
    s->limits = &all->limits;
    s->loop = env->loop;
    s->id = id;
    s->started_ms = uv_now(s->loop);
    s->children = 1; /* the client */
    s->ip_counted = !cfg->proxy_protocol.enabled; /* else after the PROXY header */
    intake_init(&s->intake, s->client, DEFERRED_MAX, all->limits.max_line, &intake_cbs, s);
    intake_log_to(&s->intake, env->metrics, id, s->who.peer);
    uv_timer_init(s->loop, &s->timer);
    s->timer.data = s;
    if (clientaddr_init(&s->who, s->client) != FG_OK) {
        session_close(s, 0, "connection already gone");
        return s;
    }
    if (s->limits->tcp_keepalive_s > 0)
        uv_tcp_keepalive(client_tcp(s->client), 1, s->limits->tcp_keepalive_s);
    LOG_INFO(id, s->who.peer, "session start listener=%s mode=%s", cfg->name,
             cfg->mode == LISTEN_IMPLICIT ? "implicit" : "explicit");
    if (origin)
        clientaddr_intercepted(&s->who, (const struct sockaddr *)&origin->dst, origin->redirected, id);
    dataplan_env_t penv = {
        .loop = s->loop,
        .cfg = cfg,
        .limits = s->limits,
        .pool = env->pool,
        .metrics = env->metrics,
        .client_addr = (const struct sockaddr *)&s->who.client,
        .data_peer = cfg->proxy_protocol.data_peer_balancer ? (const struct sockaddr *)&s->who.balancer
                                                            : (const struct sockaddr *)&s->who.client,
        .local_addr = (const struct sockaddr *)&s->who.local,
        .intercepted_dst = s->who.intercepted ? (const struct sockaddr *)&s->who.orig_dst : NULL,
        .tls = s->tls.ctx,
        .sni = s->tls.sni,
        .tls_token = s->tls.token,
        .same_client = controltls_same_client,
        .same_client_ctx = &s->tls,
        .sid = id,
        .peer = s->who.peer,
    };
    static const dataplan_cbs_t plan_cbs = {.on_idle = on_plan_idle, .on_transfer = on_plan_transfer};
    s->plan = dataplan_new(&penv, s->client, &plan_cbs, s);
    upstream_opts_t uo = {
        .loop = s->loop,
        .limits = s->limits,
        .client = (const struct sockaddr *)&s->who.client,
        .intercepted = s->who.intercepted ? (const struct sockaddr *)&s->who.orig_dst : NULL,
        .metrics = env->metrics,
        .sid = id,
        .peer = s->who.peer,
    };
    if (s->plan && s->route)
        s->relay = relay_new(cfg, &uo, s->client, s->plan, s->route, &s->pol, &relay_cbs, s);
    if (!s->relay) {
        session_close(s, 0, "out of memory");
        return s;
    }
    session_reset(s);
    if (client_start(s->client) != FG_OK) {
        session_close(s, 0, "cannot read from the client");
        return s;
    }
    /* Behind a balancer the session is admitted once the real client is known. */
    if (!cfg->proxy_protocol.enabled)
        greet(s);
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
    return (const struct sockaddr *)&s->who.client;
}

void session_snapshot(session_t *s, liveview_entry_t *e, uint64_t loop_now, int64_t wall_now)
{
    liveview_transfer_t scratch;
    int running = s->plan && dataplan_snapshot(s->plan, e ? &e->transfer : &scratch, loop_now, wall_now);
    if (!e)
        return;
    e->in_transfer = running;
    e->id = s->id;
    e->listener = s->env.listener_index;
    snprintf(e->listener_name, sizeof e->listener_name, "%s", s->cfg->name);
    snprintf(e->client, sizeof e->client, "%s", s->who.peer);
    e->since_ms = wall_now - (int64_t)(loop_now - s->started_ms);
    if (s->relay && relay_peer(s->relay))
        netaddr_format(relay_peer(s->relay), e->backend, sizeof e->backend);
    e->logged_in = s->logged_in;
    if (s->logged_in) {
        size_t n = 0;
        const char *u = routing_sent_user(s->route, &n);
        liveview_text_set(&e->user, u, n);
    }
    tls_engine_t *tls = s->client && s->pol.tls_active ? client_tls(s->client) : NULL;
    if (tls && tls_engine_handshake_done(tls)) {
        const char *sni = tls_engine_server_name(tls);
        e->tls = 1;
        snprintf(e->tls_version, sizeof e->tls_version, "%s", tls_engine_version(tls));
        snprintf(e->tls_cipher, sizeof e->tls_cipher, "%s", tls_engine_cipher(tls));
        if (sni)
            liveview_text_set(&e->sni, sni, strlen(sni));
    }
}
