#include "datatls.h"

#include "fgerr.h"
#include "policy.h"

int datatls_start(const datatls_t *t, tstream_t *s)
{
    if (tstream_start_tls(s, t->ctx) != FG_OK)
        return FG_NOMEM;
    tls_engine_t *e = tstream_engine(s);
    tls_engine_set_token(e, t->token, 0);
    if (t->rule == SESSION_REUSE_CLIENT && t->same_client)
        tls_engine_set_foreign_check(e, t->same_client, t->same_client_ctx);
    tls_engine_set_sni(e, t->sni);
    /* No tickets on data connections (tls_engine.h); the control connection issues them. */
    tls_engine_set_num_tickets(e, 0);
    return FG_OK;
}

const char *datatls_judge(const datatls_t *t, tstream_t *s, const char **how)
{
    tls_engine_t *e = tstream_engine(s);
    int reused = tls_engine_session_reused(e);
    policy_data_tls_t facts = {
        .resumed_own = tls_engine_resumed_with_token(e, t->token),
        /* Another connection's session is not resumed at all unless the
         * policy lets the same client's in (the token is the session id
         * context), so what tells it from a client that does not reuse is
         * whether its ClientHello offered one. */
        .offered_session = reused || tls_engine_offered_session(e),
    };
    unsigned char token[TLS_ENGINE_TOKEN_LEN];
    if (!facts.resumed_own && t->same_client && tls_engine_resumed_token(e, token))
        facts.resumed_same_client = t->same_client(t->same_client_ctx, token);
    *how = facts.resumed_own           ? "resumed the control session"
           : facts.resumed_same_client ? "resumed a session of the same client"
           : facts.offered_session     ? "offered ANOTHER session"
                                       : "new session";
    /* A data connection's own new session is never resumed by design: out of
     * the server cache at once, or TLS 1.2 clients that do not reuse would
     * fill it for the 7 days of a control session. */
    if (!reused)
        tls_session_forget(t->ctx, tls_engine_get1_session(e));
    const char *refusal = policy_data_tls_refusal(t->rule, &facts);
    if (refusal)
        tls_engine_fail_reuse(e, refusal);
    return refusal;
}
