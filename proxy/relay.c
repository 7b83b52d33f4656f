#include "relay.h"

#include <stdlib.h>

#include "feat.h"
#include "fgerr.h"
#include "log.h"
#include "route.h"

struct relay {
    const config_listener_t *cfg;
    upstream_opts_t base;
    client_t *client;
    dataplan_t *plan;
    routing_t *route;
    const policy_state_t *pol;
    const relay_cbs_t *cbs;
    void *owner;
    upstream_t *up;   /* NULL until a command needs the backend */
    relay_wait_t wait;
    int last_reply_code;
    int paused;       /* the backend's replies are not read */
    feat_merge_t feat;
};

relay_t *relay_new(const config_listener_t *cfg, const upstream_opts_t *base, client_t *client, dataplan_t *plan,
                   routing_t *route, const policy_state_t *pol, const relay_cbs_t *cbs, void *owner)
{
    relay_t *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->cfg = cfg;
    x->base = *base;
    x->client = client;
    x->plan = plan;
    x->route = route;
    x->pol = pol;
    x->cbs = cbs;
    x->owner = owner;
    return x;
}

void relay_free(relay_t *x)
{
    free(x);
}

/* ---- the backend's replies --------------------------------------------------------------- */

static void on_upstream_ready(void *owner)
{
    relay_t *x = owner;
    size_t len;
    char *line = routing_take_held(x->route, &len);
    x->wait = RELAY_IDLE;
    x->cbs->on_ready(x->owner, line, len);
    free(line);
}

static void feat_reply(relay_t *x, const ftp_reply_line_t *r, const char *line, size_t len)
{
    feat_policy_t own;
    char out[2 * 8192];
    int done = 0;
    policy_features(x->pol, &own);
    int n = feat_merge_line(&x->feat, &own, r->code, r->first, r->last, line, len, out, sizeof out, &done);
    if (n > 0)
        client_write(x->client, out, (size_t)n);
    if (done)
        x->wait = RELAY_IDLE;
}

static void on_upstream_reply(void *owner, const ftp_reply_line_t *r, const char *line, size_t len)
{
    relay_t *x = owner;
    int data_idle = 0;
    if (r->last)
        x->last_reply_code = r->code;
    switch (x->wait) {
    case RELAY_FEAT:
        feat_reply(x, r, line, len);
        break;
    case RELAY_DATA:
        if (dataplan_backend_reply(x->plan, x->up, r, line, len) == DATAPLAN_IDLE) {
            x->wait = RELAY_IDLE;
            data_idle = 1;
        }
        break;
    case RELAY_REPLY:
    case RELAY_QUIT:
        /* Login first: a ticket issued then goes out with the 230 itself. */
        if (r->last && r->code == 230)
            x->cbs->on_login(x->owner);
        client_line(x->client, line, len);
        if (!r->last || r->code < 200)
            break;
        if (x->wait == RELAY_QUIT) {
            x->cbs->on_end(x->owner, "QUIT");
            return;
        }
        x->wait = RELAY_IDLE;
        break;
    default:
        /* Unsolicited (e.g. "421 Timeout"): relayed, and nothing waits on it. */
        client_line(x->client, line, len);
        break;
    }
    if (x->up && client_queued(x->client) > TSTREAM_HIGH_MARK) {
        /* The client does not read our replies: stop reading the backend's. */
        x->paused = 1;
        upstream_pause(x->up);
    }
    x->cbs->on_replied(x->owner, data_idle);
}

static void on_upstream_failed(void *owner, upstream_failure_t why, const char *detail)
{
    static const char *const reasons[] = {"backend unreachable", "backend refused the session",
                                          "backend protocol error", "backend closed"};
    relay_t *x = owner;
    (void)detail; /* logged by the upstream */
    /* A backend that closes after its own 421, or after QUIT, said it all. */
    if (why != UPSTREAM_CLOSED || (x->wait != RELAY_QUIT && x->last_reply_code != 421))
        client_reply(x->client, 421, "%s", upstream_failure_reply(why));
    x->cbs->on_end(x->owner, reasons[why]);
}

static void on_upstream_closed(void *owner)
{
    relay_t *x = owner;
    x->cbs->on_closed(x->owner);
}

static const upstream_cbs_t upstream_cbs = {
    .on_ready = on_upstream_ready,
    .on_reply = on_upstream_reply,
    .on_failed = on_upstream_failed,
    .on_closed = on_upstream_closed,
};

/* ---- commands to the backend ---------------------------------------------------------------- */

/* A command needs the backend and none is connected: routing says which
 * one, or what to answer while none can be chosen. */
static int relay_dial(relay_t *x, const char *line, size_t len)
{
    routing_dial_t d;
    if (routing_dial(x->route, line, len, &d) != FG_OK)
        return FG_NOMEM;
    if (!d.backend) {
        if (d.unmatched) { /* no backend is contacted: said, logged and counted */
            METRIC_INC(x->base.metrics, routes_unmatched);
            LOG_WARN(x->base.sid, x->base.peer, "no route for this session (user \"%s\"); no server contacted",
                     routing_user_shown(x->route));
        }
        client_reply(x->client, d.code, "%s", d.text);
        return RELAY_ANSWERED;
    }
    upstream_opts_t o = x->base;
    o.backend = d.backend;
    if (d.backend != &x->cfg->backend)
        o.intercepted = NULL; /* a route's server is not where the client meant to go */
    if (d.route) {
        char what[300];
        LOG_INFO(x->base.sid, x->base.peer, "route: %s", route_describe(d.route, what, sizeof what));
    }
    x->last_reply_code = 0;
    x->up = upstream_open(&o, &upstream_cbs, x);
    if (!x->up)
        return FG_NOMEM;
    x->wait = RELAY_GREETING;
    return RELAY_DIALLED;
}

int relay_forward(relay_t *x, const char *line, size_t len, relay_wait_t wait)
{
    if (!x->up)
        return relay_dial(x, line, len);
    if (upstream_send_line(x->up, line, len) != FG_OK)
        return FG_IO;
    x->wait = wait;
    return RELAY_SENT;
}

int relay_user(relay_t *x, const char *line, size_t len)
{
    const char *refusal;
    if (!x->up)
        return relay_dial(x, line, len);
    if (routing_user_line(x->route, &line, &len, &refusal) != FG_OK) {
        client_reply(x->client, 530, "%s", refusal);
        return RELAY_ANSWERED;
    }
    return relay_forward(x, line, len, RELAY_REPLY);
}

int relay_feat(relay_t *x, const char *line, size_t len)
{
    feat_merge_begin(&x->feat);
    if (!x->up && routing_waiting(x->route)) {
        /* No backend before the route is known: our own features alone. */
        feat_reply(x, &(ftp_reply_line_t){.code = 500, .first = 1, .last = 1}, "500", 3);
        return RELAY_ANSWERED;
    }
    return relay_forward(x, line, len, RELAY_FEAT);
}

int relay_data_setup(relay_t *x, const char *line, size_t len, ftp_cmd_id_t cmd, const struct sockaddr *target,
                     char prot)
{
    if (!x->up)
        return relay_dial(x, line, len); /* the command runs again once the backend greets */
    if (dataplan_prepare(x->plan, x->up, routing_backend(x->route), cmd, target, prot) == DATAPLAN_BUSY)
        x->wait = RELAY_DATA;
    return RELAY_SENT;
}

int relay_transfer(relay_t *x, const char *line, size_t len, const ftp_cmd_t *cmd)
{
    if (dataplan_transfer_begins(x->plan, cmd) != FG_OK)
        return RELAY_ANSWERED;
    return relay_forward(x, line, len, RELAY_DATA);
}

int relay_abort(relay_t *x)
{
    return dataplan_abort(x->plan, x->up);
}

int relay_data_released(relay_t *x)
{
    if (x->wait != RELAY_DATA)
        return 0;
    x->wait = RELAY_IDLE;
    return 1;
}

relay_wait_t relay_waiting(const relay_t *x)
{
    return x->wait;
}

int relay_connected(const relay_t *x)
{
    return x->up != NULL;
}

const struct sockaddr *relay_peer(const relay_t *x)
{
    return x->up ? upstream_peer(x->up) : NULL;
}

void relay_pause(relay_t *x)
{
    if (x->up) {
        x->paused = 1;
        upstream_pause(x->up);
    }
}

void relay_resume(relay_t *x)
{
    if (x->paused && x->up && client_queued(x->client) <= TSTREAM_HIGH_MARK) {
        x->paused = 0;
        upstream_resume(x->up);
    }
}

void relay_reset(relay_t *x)
{
    upstream_close(x->up); /* retired: nothing it still sends is read */
    x->up = NULL;
    x->paused = 0;
    x->wait = RELAY_IDLE;
}

void relay_close(relay_t *x)
{
    relay_reset(x);
}
