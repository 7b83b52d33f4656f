#include "dataplan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataaddr.h"
#include "fgerr.h"
#include "ftp_addr.h"
#include "log.h"
#include "netaddr.h"
#include "ratemeter.h"
#include "tls_engine.h"

#define HELD_REPLY_MAX 2048u

typedef enum {
    PHASE_NONE = 0, /* no channel prepared */
    PHASE_SETUP,    /* our PASV/EPSV/PORT/EPRT went to the backend */
    PHASE_READY,    /* prepared; the client has its 227/229/200 */
    PHASE_TRANSFER, /* the transfer command went out */
    PHASE_ABORT     /* ABOR: relaying the replies still owed */
} phase_t;

typedef enum { LINK_PENDING = 0, LINK_OK, LINK_FAILED } link_status_t;

struct dataplan {
    dataplan_env_t env;
    client_t *client;
    const dataplan_cbs_t *cbs;
    void *owner;
    phase_t phase;
    /* The channel being prepared or used. */
    datalink_t *link;
    link_status_t link_status;
    char prot;
    ftp_cmd_id_t client_cmd;   /* PASV, EPSV, PORT or EPRT */
    dl_backend_mode_t backend_mode;
    uint16_t announced_port;
    struct sockaddr_storage announced_addr;
    int fail_code, fail_backend_side;
    char fail_text[128];
    /* Learnt once per session: this backend has no PASV (RFC 2428 servers). */
    int sent_epsv, backend_wants_epsv;
    /* The transfer's replies. */
    int prelim_seen;   /* a 1xx came: the data connection is in use */
    int held_final;    /* the final reply is held until the link is done */
    int held_code;     /* of the transfer's final reply, the first one held */
    size_t held_len;
    size_t final_len;  /* bytes of held that are that final reply; lines after it are other replies */
    int abort_finals;  /* final replies still owed after ABOR */
    char *held;        /* HELD_REPLY_MAX bytes while a final reply is held, else NULL */
    /* The transfer, for its report (dataplan_transfer_t). */
    dataplan_transfer_t xfer;
    ratemeter_t rate; /* the live view's rate_bps */
    char verb[8];
    char *path;
};

dataplan_t *dataplan_new(const dataplan_env_t *env, client_t *client, const dataplan_cbs_t *cbs, void *owner)
{
    dataplan_t *dp = calloc(1, sizeof *dp);
    if (!dp)
        return NULL;
    dp->env = *env;
    dp->client = client;
    dp->cbs = cbs;
    dp->owner = owner;
    return dp;
}

/* Back to no channel. The data connection may have spent the client's TLS
 * 1.3 ticket (curl uses each once): a fresh one goes out with the next
 * control reply, before the client can open its next data connection. */
static void plan_report(dataplan_t *dp, int reply);

static void plan_end(dataplan_t *dp)
{
    if (dp->xfer.command) /* the session ends mid-transfer: no final reply went out */
        plan_report(dp, 0);
    if (dp->link && dp->prot == 'P' && client_tls(dp->client))
        tls_engine_issue_ticket(client_tls(dp->client));
    datalink_detach(dp->link);
    dp->link = NULL;
    dp->prot = 0;
    dp->phase = PHASE_NONE;
    dp->prelim_seen = dp->held_final = 0;
    dp->held_len = dp->final_len = 0;
    free(dp->held);
    dp->held = NULL;
}

void dataplan_free(dataplan_t *dp)
{
    if (!dp)
        return;
    datalink_detach(dp->link);
    free(dp->held);
    free(dp->path);
    free(dp);
}

void dataplan_discard(dataplan_t *dp)
{
    plan_end(dp);
}

char dataplan_prot(const dataplan_t *dp)
{
    return dp->link ? dp->prot : 0;
}

int dataplan_in_transfer(const dataplan_t *dp)
{
    return dp->phase == PHASE_TRANSFER || dp->phase == PHASE_ABORT;
}

/* ---- the transfer's report ------------------------------------------------------------ */

/* What the link moved and how, while it still exists. */
static void plan_capture(dataplan_t *dp)
{
    if (!dp->link)
        return;
    uint64_t to_client = 0, to_backend = 0;
    datalink_progress(dp->link, &to_client, &to_backend);
    dp->xfer.bytes = dp->xfer.upload ? to_backend : to_client;
    dp->xfer.tls = datalink_tls_info(dp->link, &dp->xfer.tls_version, &dp->xfer.tls_cipher, &dp->xfer.tls_resumed);
}

/* The transfer ended with this final reply to the client: reported once. */
static void plan_report(dataplan_t *dp, int reply)
{
    if (!dp->xfer.command)
        return;
    plan_capture(dp);
    dp->xfer.reply = reply;
    dp->xfer.ended_ms = uv_now(dp->env.loop);
    dp->xfer.path = dp->path; /* NULL: no argument */
    if (dp->cbs->on_transfer)
        dp->cbs->on_transfer(dp->owner, &dp->xfer);
    dp->xfer.command = NULL;
    free(dp->path);
    dp->path = NULL;
}

/* ---- releasing the held final reply ------------------------------------------------- */

static int plan_try_release(dataplan_t *dp)
{
    if (dp->phase != PHASE_TRANSFER || !dp->held_final || dp->link_status == LINK_PENDING)
        return DATAPLAN_BUSY;
    if (dp->link_status == LINK_FAILED && !(dp->fail_backend_side && dp->held_code >= 400)) {
        /* The backend's own verdict is replaced: the client did not get the
         * bytes. (When the backend's side broke first and the backend says
         * why, e.g. 552, its reply is the truth and goes through.) */
        client_reply(dp->client, dp->fail_code, "%s", dp->fail_text);
        plan_report(dp, dp->fail_code);
        if (dp->held && dp->held_len > dp->final_len) /* replies the backend sent after it */
            client_write(dp->client, dp->held + dp->final_len, dp->held_len - dp->final_len);
    } else if (dp->held) {
        client_write(dp->client, dp->held, dp->held_len);
        plan_report(dp, dp->held_code);
    } else {
        client_reply(dp->client, 451, "Requested action aborted: local error in processing");
        plan_report(dp, 451);
    }
    plan_end(dp);
    return DATAPLAN_IDLE;
}

static void on_link_done(void *owner, int code, const char *text, int backend_side)
{
    dataplan_t *dp = owner;
    plan_capture(dp);
    if (code == 0) {
        dp->link_status = LINK_OK;
    } else {
        dp->link_status = LINK_FAILED;
        dp->fail_code = code;
        dp->fail_backend_side = backend_side;
        snprintf(dp->fail_text, sizeof dp->fail_text, "%s", text);
    }
    /* From the loop (datalink.h): the session may take commands again. */
    if (plan_try_release(dp) == DATAPLAN_IDLE)
        dp->cbs->on_idle(dp->owner);
}

static void hold_reply_line(dataplan_t *dp, const char *line, size_t len, int last)
{
    if (!dp->held && !(dp->held = malloc(HELD_REPLY_MAX)))
        return; /* out of memory: the link's own verdict (or 426) answers */
    if (dp->held_len + len + 2 > HELD_REPLY_MAX) {
        if (dp->held_final)
            return; /* an unsolicited reply after the final one: no room, dropped */
        if (!last)
            return; /* middle lines of an oversized final reply are dropped */
        dp->held_len = dp->final_len = 0;
        if (len + 2 > HELD_REPLY_MAX)
            len = HELD_REPLY_MAX - 2;
    }
    memcpy(dp->held + dp->held_len, line, len);
    dp->held_len += len;
    dp->held[dp->held_len++] = '\r';
    dp->held[dp->held_len++] = '\n';
}

/* ---- preparing a channel -------------------------------------------------------------- */

static void set_addr(struct sockaddr_storage *to, const struct sockaddr *from)
{
    memset(to, 0, sizeof *to);
    memcpy(to, from, netaddr_len(from));
}

static int is_active(ftp_cmd_id_t cmd)
{
    return cmd == FTP_CMD_PORT || cmd == FTP_CMD_EPRT;
}

/* Asks the backend for its side of the data channel. */
static int plan_send_backend_command(dataplan_t *dp, upstream_t *up)
{
    char line[128];
    int n;
    const struct sockaddr *backend = upstream_peer(up);
    if (dp->backend_mode == DL_BACKEND_LISTEN) {
        const struct sockaddr *la = datalink_backend_listen_addr(dp->link);
        struct in_addr ip4;
        if (netaddr_ipv4(la, &ip4) && backend->sa_family == AF_INET)
            n = ftp_addr_format_port(line, sizeof line, ip4, netaddr_port(la));
        else
            n = ftp_addr_format_eprt(line, sizeof line, la);
    } else {
        /* PASV first toward an IPv4 server (every legacy server has it), EPSV
         * for IPv6 or once PASV was refused; learnt once per session. */
        dp->sent_epsv = backend->sa_family == AF_INET6 || dp->backend_wants_epsv;
        n = snprintf(line, sizeof line, "%s\r\n", dp->sent_epsv ? "EPSV" : "PASV");
    }
    if (n <= 0 || upstream_send_raw(up, line, (size_t)n) != FG_OK) {
        plan_end(dp);
        client_reply(dp->client, 425, "Cannot open data connection");
        return DATAPLAN_IDLE;
    }
    dp->phase = PHASE_SETUP;
    return DATAPLAN_BUSY;
}

int dataplan_prepare(dataplan_t *dp, upstream_t *up, const config_backend_t *backend, ftp_cmd_id_t cmd,
                     const struct sockaddr *active_target, char prot)
{
    const dataplan_env_t *e = &dp->env;
    const config_listener_t *cfg = e->cfg;
    int active = is_active(cmd);
    plan_end(dp); /* a new PASV/PORT replaces the previous data channel */

    if (!active) {
        struct sockaddr_storage tmp;
        const struct sockaddr *a = dataaddr_announce(cfg, e->client_addr, e->intercepted_dst, e->local_addr, &tmp);
        struct in_addr ip4;
        if (cmd == FTP_CMD_PASV && !netaddr_ipv4(a, &ip4)) {
            /* RFC 2428 §4: PASV cannot name an IPv6 address. */
            client_reply(dp->client, 425, "PASV needs an IPv4 address; use EPSV");
            return DATAPLAN_IDLE;
        }
        memcpy(&dp->announced_addr, a, netaddr_len(a));
    }
    dp->client_cmd = cmd;
    dp->backend_mode = dataaddr_backend_listens(backend->data_mode, active) ? DL_BACKEND_LISTEN
                                                                                : DL_BACKEND_CONNECT;
    datalink_opts_t o;
    memset(&o, 0, sizeof o);
    o.client_mode = active ? DL_CLIENT_ACTIVE : DL_CLIENT_PASSIVE;
    o.pool = e->pool;
    set_addr(&o.client_addr, e->data_peer);
    o.check_peer_ip = cfg->passive.check_peer_ip;
    if (active)
        set_addr(&o.client_target, active_target);
    /* TPROXY interception: data sockets use the server's address, as the
     * client expects; otherwise ours. */
    o.transparent = e->intercepted_dst && cfg->transparent;
    set_addr(&o.listen_addr, o.transparent ? e->intercepted_dst : e->local_addr);
    if (cfg->active.source_port || o.transparent) {
        o.has_active_source = 1;
        o.active_source = o.listen_addr;
        netaddr_set_port((struct sockaddr *)&o.active_source, (uint16_t)cfg->active.source_port);
    }
    if (backend->source_client) {
        o.has_backend_source = 1;
        set_addr(&o.backend_source, e->client_addr);
    }
    o.backend_mode = dp->backend_mode;
    set_addr(&o.backend_addr, upstream_peer(up));
    upstream_local(up, &o.backend_local);
    netaddr_set_port((struct sockaddr *)&o.backend_local, 0);
    o.tls = (datatls_t){
        .ctx = prot == 'P' ? e->tls : NULL,
        .sni = e->sni,
        .rule = cfg->policy.require_session_reuse,
        .same_client = e->same_client,
        .same_client_ctx = e->same_client_ctx,
    };
    memcpy(o.tls.token, e->tls_token, sizeof o.tls.token);
    o.accept_upload_without_close_notify = !cfg->policy.upload_requires_close_notify;
    o.connect_timeout_ms = e->limits->data_connect_timeout_s * 1000u;
    o.stall_timeout_s = e->limits->transfer_stall_timeout_s;
    o.rate_limit = cfg->policy.rate_limit;
    o.max_upload_bytes = cfg->policy.max_upload_bytes;
    o.session_id = e->sid;
    snprintf(o.peer, sizeof o.peer, "%s", e->peer);
    o.metrics = e->metrics;
    int rc = datalink_new(e->loop, &o, on_link_done, dp, &dp->link);
    if (rc != FG_OK) {
        dp->link = NULL;
        if (rc == FG_RANGE)
            METRIC_INC(e->metrics, passive_ports_exhausted);
        LOG_WARN(e->sid, e->peer, "cannot prepare a data channel (%s)", fg_strerror(rc));
        if (rc == FG_RANGE)
            client_reply(dp->client, 425, "Cannot open data connection: no free port, try again later");
        else
            client_reply(dp->client, 425, "Cannot open data connection");
        return DATAPLAN_IDLE;
    }
    dp->prot = prot;
    dp->link_status = LINK_PENDING;
    dp->announced_port = active ? 0 : dataaddr_announced_port(cfg, datalink_client_port(dp->link));
    return plan_send_backend_command(dp, up);
}

/* The reply the client gets once both sides of the channel are set. */
static void plan_reply_ready(dataplan_t *dp)
{
    char line[128];
    int n = -1;
    struct in_addr ip4;
    dp->phase = PHASE_READY;
    switch (dp->client_cmd) {
    case FTP_CMD_PORT:
        client_reply(dp->client, 200, "PORT command successful");
        return;
    case FTP_CMD_EPRT:
        client_reply(dp->client, 200, "EPRT command successful");
        return;
    case FTP_CMD_EPSV:
        n = ftp_addr_format_229(line, sizeof line, dp->announced_port);
        break;
    default:
        if (netaddr_ipv4((const struct sockaddr *)&dp->announced_addr, &ip4))
            n = ftp_addr_format_227(line, sizeof line, ip4, dp->announced_port);
        break;
    }
    if (n > 0)
        client_write(dp->client, line, (size_t)n);
}

/* The backend's answer to our PASV/EPSV/PORT/EPRT. */
static int plan_setup_reply(dataplan_t *dp, upstream_t *up, const ftp_reply_line_t *r, const char *line, size_t len)
{
    if (!r->last)
        return DATAPLAN_BUSY;
    if (dp->backend_mode == DL_BACKEND_LISTEN) {
        if (r->code / 100 != 2) {
            client_line(dp->client, line, len);
            plan_end(dp);
            return DATAPLAN_IDLE;
        }
        plan_reply_ready(dp);
        return DATAPLAN_IDLE;
    }
    if ((r->code == 500 || r->code == 502) && !dp->sent_epsv && !dp->backend_wants_epsv) {
        dp->backend_wants_epsv = 1; /* no PASV here: ask with EPSV from now on */
        return plan_send_backend_command(dp, up);
    }
    uint16_t port = 0;
    struct in_addr ignored;
    int rc = FG_SYNTAX;
    if (r->code == 227)
        rc = ftp_addr_parse_227(r->text, r->text_len, &ignored, &port);
    else if (r->code == 229)
        rc = ftp_addr_parse_229(r->text, r->text_len, &port);
    else {
        client_line(dp->client, line, len); /* e.g. 530 not logged in: the client sees why */
        plan_end(dp);
        return DATAPLAN_IDLE;
    }
    if (rc != FG_OK) {
        LOG_WARN(dp->env.sid, dp->env.peer, "backend sent an unusable passive reply (%d)", r->code);
        plan_end(dp);
        client_reply(dp->client, 425, "Cannot open data connection: bad passive reply from server");
        return DATAPLAN_IDLE;
    }
    /* SECURITY: the IP in a 227 is ignored (RFC 2577 §3: a server-chosen
     * address is a bounce vector); the data port is on the backend control peer. */
    datalink_set_backend_port(dp->link, port);
    LOG_DEBUG(dp->env.sid, dp->env.peer, "data channel: client %s port %u, backend port %u",
              is_active(dp->client_cmd) ? "active" : "passive", (unsigned)dp->announced_port, (unsigned)port);
    plan_reply_ready(dp);
    return DATAPLAN_IDLE;
}

/* ---- the transfer --------------------------------------------------------------------------- */

int dataplan_transfer_begins(dataplan_t *dp, const ftp_cmd_t *cmd)
{
    memset(&dp->xfer, 0, sizeof dp->xfer);
    snprintf(dp->verb, sizeof dp->verb, "%s", cmd->verb);
    free(dp->path);
    dp->path = NULL;
    if (cmd->arg && (dp->path = malloc(cmd->arg_len + 1)) != NULL) {
        memcpy(dp->path, cmd->arg, cmd->arg_len);
        dp->path[cmd->arg_len] = '\0';
        dp->xfer.path_len = cmd->arg_len;
    }
    dp->xfer.command = dp->verb;
    dp->xfer.upload = ftp_cmd_is_upload(cmd->id);
    dp->xfer.listing = cmd->id == FTP_CMD_LIST || cmd->id == FTP_CMD_NLST || cmd->id == FTP_CMD_MLSD;
    dp->xfer.started_ms = uv_now(dp->env.loop);
    ratemeter_start(&dp->rate, dp->xfer.started_ms);
    if (dp->link_status == LINK_FAILED) {
        client_reply(dp->client, dp->fail_code, "%s", dp->fail_text);
        plan_report(dp, dp->fail_code);
        plan_end(dp);
        return FG_STATE;
    }
    dp->phase = PHASE_TRANSFER;
    dp->prelim_seen = dp->held_final = 0;
    dp->held_len = dp->final_len = 0;
    datalink_set_direction(dp->link, dp->xfer.upload);
    return FG_OK;
}

static int plan_transfer_reply(dataplan_t *dp, const ftp_reply_line_t *r, const char *line, size_t len)
{
    if (dp->held_final) {
        /* SECURITY: a reply after the held final one (unsolicited) goes out after
         * it, in order, and never decides the transfer's outcome in its place. */
        hold_reply_line(dp, line, len, r->last);
        return DATAPLAN_BUSY;
    }
    if (r->code < 200) {
        client_line(dp->client, line, len);
        if (r->last)
            dp->prelim_seen = 1;
        return DATAPLAN_BUSY;
    }
    if (!dp->prelim_seen && r->code >= 300) {
        /* No data connection was used (e.g. 550): nothing to wait for. A
         * success without a 1xx (a non-conforming backend) still waits for
         * the data link below, and is replaced if the link failed. */
        client_line(dp->client, line, len);
        if (!r->last)
            return DATAPLAN_BUSY;
        plan_report(dp, r->code);
        plan_end(dp);
        return DATAPLAN_IDLE;
    }
    /* DESIGN §2: the final reply waits until every byte was delivered. */
    hold_reply_line(dp, line, len, r->last);
    if (!r->last)
        return DATAPLAN_BUSY;
    dp->held_final = 1;
    dp->held_code = r->code;
    dp->final_len = dp->held_len;
    if (dp->link_status == LINK_PENDING)
        LOG_DEBUG(dp->env.sid, dp->env.peer, "final reply %d held until the data link is done", r->code);
    return plan_try_release(dp);
}

int dataplan_backend_reply(dataplan_t *dp, upstream_t *up, const ftp_reply_line_t *r, const char *line, size_t len)
{
    switch (dp->phase) {
    case PHASE_SETUP:
        return plan_setup_reply(dp, up, r, line, len);
    case PHASE_TRANSFER:
        return plan_transfer_reply(dp, r, line, len);
    case PHASE_ABORT:
        client_line(dp->client, line, len);
        if (r->last && r->code >= 200 && dp->abort_finals == 2)
            plan_report(dp, r->code); /* the transfer's own final reply */
        if (r->last && r->code >= 200 && --dp->abort_finals <= 0) {
            plan_end(dp);
            return DATAPLAN_IDLE;
        }
        return DATAPLAN_BUSY;
    default:
        client_line(dp->client, line, len); /* not ours: relayed as it is */
        return DATAPLAN_IDLE;
    }
}

int dataplan_abort(dataplan_t *dp, upstream_t *up)
{
    if (dp->phase != PHASE_TRANSFER)
        return FG_STATE;
    LOG_INFO(dp->env.sid, dp->env.peer, "ABOR during a transfer");
    plan_capture(dp);
    datalink_detach(dp->link);
    dp->link = NULL;
    upstream_send_abort(up);
    if (dp->held_final) {
        /* The backend finished but the client did not get every byte. */
        client_reply(dp->client, 426, "Connection closed; transfer aborted");
        plan_report(dp, 426);
        if (dp->held && dp->held_len > dp->final_len) /* replies the backend sent after its final one */
            client_write(dp->client, dp->held + dp->final_len, dp->held_len - dp->final_len);
        dp->abort_finals = 1;
    } else {
        dp->abort_finals = 2; /* the transfer's own reply, then ABOR's */
    }
    dp->held_final = 0;
    dp->held_len = dp->final_len = 0;
    dp->prelim_seen = 0;
    dp->phase = PHASE_ABORT;
    return FG_OK;
}

void dataplan_stat(dataplan_t *dp)
{
    char buf[256];
    uint64_t to_client = 0, to_backend = 0;
    if (dp->link)
        datalink_progress(dp->link, &to_client, &to_backend);
    int n = snprintf(buf, sizeof buf,
                     "213-Status of the transfer in progress:\r\n %llu bytes to the client, %llu "
                     "bytes to the server\r\n213 End of status\r\n",
                     (unsigned long long)to_client, (unsigned long long)to_backend);
    client_write(dp->client, buf, (size_t)n);
}

int dataplan_snapshot(dataplan_t *dp, liveview_transfer_t *t, uint64_t loop_now, int64_t wall_now)
{
    if (dp->phase != PHASE_TRANSFER || !dp->link)
        return 0;
    uint64_t to_client = 0, to_backend = 0;
    datalink_progress(dp->link, &to_client, &to_backend);
    memset(t, 0, sizeof *t);
    t->bytes = dp->xfer.upload ? to_backend : to_client;
    ratemeter_sample(&dp->rate, loop_now, t->bytes);
    t->rate_bps = ratemeter_rate(&dp->rate);
    snprintf(t->command, sizeof t->command, "%s", dp->verb);
    t->has_path = dp->path != NULL;
    if (dp->path)
        liveview_text_set(&t->path, dp->path, dp->xfer.path_len);
    t->direction = dp->xfer.upload ? LIVEVIEW_UPLOAD : dp->xfer.listing ? LIVEVIEW_LISTING : LIVEVIEW_DOWNLOAD;
    t->since_ms = wall_now - (int64_t)(loop_now - dp->xfer.started_ms);
    return 1;
}
