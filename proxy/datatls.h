#ifndef FTPSGATE_DATATLS_H
#define FTPSGATE_DATATLS_H
#include <openssl/ssl.h>

#include "config.h"
#include "tls_engine.h"
#include "tstream.h"

/* TLS on a data connection (RFC 4217 §7, §10.2): the proxy is the TLS server
 * whichever side connected; the connection carries the control connection's
 * token, sends no tickets, and must prove by resuming a TLS session that it
 * comes from the client that logged in (policy.require_session_reuse). */

typedef struct {
    SSL_CTX *ctx;                        /* NULL: a clear data channel (PROT C) */
    const tls_sni_t *sni;                /* borrowed from the listener */
    unsigned char token[TLS_ENGINE_TOKEN_LEN]; /* the control connection's */
    session_reuse_t rule;
    tls_engine_foreign_check_cb same_client; /* SESSION_REUSE_CLIENT: is this token the same client's? */
    void *same_client_ctx;
} datatls_t;

/* Starts server-side TLS on s as t says. FG_OK, or FG_NOMEM. */
int datatls_start(const datatls_t *t, tstream_t *s);

/* After s's handshake: NULL when the connection may carry the transfer,
 * else the reason it is refused (SECURITY: logged by the caller, 522).
 * *how describes the session for the debug log. A full handshake's own
 * session leaves the server cache at once (data sessions are never resumed). */
const char *datatls_judge(const datatls_t *t, tstream_t *s, const char **how);

#endif
