#include "routing.h"

#include <stdlib.h>
#include <string.h>

#include "fgerr.h"
#include "ftp_cmd.h"
#include "log.h"
#include "route.h"

#define ROUTING_NAME_MAX 256u /* an SNI, a HOST, a login: longer ones match no route */

struct routing {
    const config_listener_t *cfg;
    route_facts_t facts;              /* borrows the names below */
    const config_backend_t *backend;  /* chosen by routing_dial; NULL before */
    char sni[ROUTING_NAME_MAX], host[ROUTING_NAME_MAX];
    char login[ROUTING_NAME_MAX];     /* as sent, for policy "client" */
    size_t login_len;
    char shown[64];                   /* escaped, for the log */
    char sent[ROUTING_NAME_MAX];      /* the name the backend got, raw (audit log) */
    size_t sent_len;
    char *held;                       /* the command waiting for the backend's greeting */
    size_t held_len;
    char line[8 + ROUTING_NAME_MAX];  /* USER name, rewritten from USER name@alias */
};

routing_t *routing_new(const config_listener_t *cfg)
{
    routing_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->cfg = cfg;
    route_facts_init(&r->facts);
    return r;
}

void routing_free(routing_t *r)
{
    if (!r)
        return;
    free(r->held);
    free(r);
}

void routing_reset(routing_t *r)
{
    route_facts_init(&r->facts);
    r->backend = NULL;
    r->shown[0] = r->login[0] = '\0';
    r->login_len = r->sent_len = 0;
    free(r->held);
    r->held = NULL;
}

void routing_tls_done(routing_t *r, const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n >= sizeof r->sni)
        n = 0; /* over-long names match no route */
    memcpy(r->sni, name ? name : "", n);
    route_facts_sni(&r->facts, n ? r->sni : NULL, n);
}

int routing_host(routing_t *r, const char *arg, size_t len, const char **text)
{
    int code = route_host_reply(r->cfg, &r->facts, arg, len);
    if (code == 220 && len < sizeof r->host) {
        memcpy(r->host, arg, len);
        route_facts_host(&r->facts, r->host, len);
        *text = "Host accepted";
        return 220;
    }
    *text = code == 503 ? "HOST must come before USER" : code == 504 ? "No server for this host" : "Not a valid host name";
    return code == 220 ? 501 : code;
}

void routing_user(routing_t *r, const char *arg, size_t len)
{
    size_t n = arg ? len : 0;
    log_escape(arg ? arg : "", n < sizeof r->shown - 1 ? n : sizeof r->shown - 1, r->shown, sizeof r->shown);
    n = n < sizeof r->login ? n : 0; /* an over-long name matches nothing */
    memcpy(r->login, arg ? arg : "", n);
    r->login[n] = '\0';
    r->login_len = n;
    memcpy(r->sent, r->login, n);
    r->sent_len = n;
    route_facts_user(&r->facts, r->login, n);
}

int routing_waiting(const routing_t *r)
{
    route_result_t res;
    route_decide(r->cfg, &r->facts, &res);
    return res.verdict == ROUTE_WAIT;
}

/* The backend is dialled when the first command that needs it arrives, not
 * at accept: a connection that never completes TLS or never speaks FTP
 * costs the legacy server nothing (its per-IP and total session limits
 * would otherwise be cheap to exhaust, always from our one address). */
int routing_dial(routing_t *r, const char *line, size_t len, routing_dial_t *d)
{
    route_result_t res;
    route_decide(r->cfg, &r->facts, &res);
    ftp_cmd_t parsed;
    int parsed_ok = ftp_cmd_parse(line, len, &parsed) == FG_OK;
    memset(d, 0, sizeof *d);
    if (res.verdict == ROUTE_NONE && parsed_ok && parsed.id == FTP_CMD_USER) {
        /* No backend is contacted. Another USER may still find a route. */
        d->unmatched = 1;
        d->code = 530;
        d->text = "No server for this session";
        return FG_OK;
    }
    if (res.verdict == ROUTE_WAIT || res.verdict == ROUTE_NONE) {
        /* RFC 959 §5.4: PASS before an accepted USER is out of sequence. */
        d->code = parsed_ok && parsed.id == FTP_CMD_PASS ? 503 : parsed_ok && parsed.id == FTP_CMD_NOOP ? 200 : 530;
        d->text = d->code == 503 ? "Login with USER first" : d->code == 200 ? "NOOP ok" : "Please login with USER first";
        return FG_OK;
    }
    /* The command runs again once the backend greets: USER name@alias is
     * rewritten then (routing_user_line). */
    free(r->held);
    r->held = malloc(len ? len : 1);
    if (!r->held)
        return FG_NOMEM;
    memcpy(r->held, line, len);
    r->held_len = len;
    r->backend = d->backend = res.backend;
    d->route = res.verdict == ROUTE_MATCH ? &r->cfg->routes[res.index] : NULL;
    return FG_OK;
}

char *routing_take_held(routing_t *r, size_t *len)
{
    char *line = r->held;
    *len = r->held_len;
    r->held = NULL;
    return line;
}

const config_backend_t *routing_backend(const routing_t *r)
{
    return r->backend;
}

int routing_user_line(routing_t *r, const char **line, size_t *len, const char **text)
{
    route_result_t res;
    route_decide(r->cfg, &r->facts, &res);
    if (r->cfg->n_routes && res.backend != r->backend) {
        /* The route is chosen once a server is connected; REIN starts over. */
        *text = "This session's server is already chosen; send REIN to change it";
        return FG_STATE;
    }
    if (res.user && res.user_len != r->login_len) { /* USER name@alias: the backend gets USER name */
        log_escape(res.user, res.user_len < sizeof r->shown - 1 ? res.user_len : sizeof r->shown - 1, r->shown,
                   sizeof r->shown);
        memcpy(r->line, "USER ", 5);
        memcpy(r->line + 5, res.user, res.user_len);
        memcpy(r->sent, res.user, res.user_len);
        r->sent_len = res.user_len;
        *line = r->line;
        *len = 5 + res.user_len;
    }
    return FG_OK;
}

const char *routing_user_shown(const routing_t *r)
{
    return r->shown;
}

const char *routing_sent_user(const routing_t *r, size_t *len)
{
    *len = r->sent_len;
    return r->sent;
}

const char *routing_login(const routing_t *r)
{
    return r->login;
}
