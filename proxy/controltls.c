#include "controltls.h"

#include <openssl/rand.h>

#include "fgerr.h"
#include "log.h"
#include "sessreg.h"

int controltls_init(controltls_t *t)
{
    return RAND_bytes(t->token, sizeof t->token) == 1 ? FG_OK : FG_TLS;
}

void controltls_attach(controltls_t *t, client_t *client, SSL_CTX *ctx, const tls_sni_t *sni, session_reuse_t rule,
                       const struct sockaddr *addr, const routing_t *route)
{
    t->client = client;
    t->ctx = ctx;
    t->sni = sni;
    t->rule = rule;
    t->addr = addr;
    t->route = route;
    client_set_tls(client, ctx, t->token, sni);
    if (rule == SESSION_REUSE_CLIENT)
        client_hold_tickets(client);
}

void controltls_log_to(controltls_t *t, metrics_t *metrics, unsigned long long sid, const char *peer)
{
    t->metrics = metrics;
    t->sid = sid;
    t->peer = peer;
}

int controltls_start(controltls_t *t)
{
    return client_start_tls(t->client);
}

int controltls_auth(controltls_t *t, size_t held_dropped)
{
    client_reply(t->client, 234, "Proceed with negotiation.");
    size_t dropped = held_dropped + client_discard_input(t->client);
    if (dropped > 0) {
        METRIC_INC(t->metrics, pipelined_after_auth);
        LOG_WARN(t->sid, t->peer, "SECURITY: discarded %zu plaintext bytes sent after AUTH", dropped);
    }
    return client_start_tls(t->client);
}

void controltls_login(controltls_t *t)
{
    const char *login = routing_login(t->route);
    if (t->rule == SESSION_REUSE_CLIENT && login[0] && sessreg_put(t->token, t->addr, login) == FG_OK) {
        t->registered = 1;
        client_issue_ticket(t->client); /* the first ticket: held until now (client_hold_tickets) */
    }
}

void controltls_logout(controltls_t *t)
{
    if (t->registered) {
        sessreg_drop(t->token);
        t->registered = 0;
    }
}

int controltls_same_client(void *ctx, const unsigned char token[TLS_ENGINE_TOKEN_LEN])
{
    controltls_t *t = ctx;
    const char *login = routing_login(t->route);
    return login[0] && sessreg_same_client(token, t->addr, login);
}
