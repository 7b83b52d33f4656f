#ifndef FTPSGATE_CONTROLTLS_H
#define FTPSGATE_CONTROLTLS_H
#include <stddef.h>
#include <sys/socket.h>
#include <openssl/ssl.h>

#include "client.h"
#include "config.h"
#include "metrics.h"
#include "routing.h"
#include "tls_engine.h"

/* The control connection's TLS as the session drives it (RFC 4217, MS-FTPS):
 * its identity (the listener's context and SNI table) and the random token
 * that ties the data connections' TLS sessions to this control connection;
 * TLS from the first byte on an implicit listener, or after AUTH; and under
 * policy.require_session_reuse "client", the first ticket held until login,
 * the login registered then (sessreg.h) and the check that a data
 * connection's session was issued to the same client. Stopping TLS (CCC,
 * REIN) is client_stop_tls. No I/O of its own: it calls the client.
 *
 * Embedded in the session; the fields are the session's to read. */

typedef struct {
    client_t *client;
    SSL_CTX *ctx;          /* the listener's default identity */
    const tls_sni_t *sni;
    unsigned char token[TLS_ENGINE_TOKEN_LEN];
    session_reuse_t rule;
    const struct sockaddr *addr; /* the real client (policy "client") */
    const routing_t *route;      /* its login */
    int registered;
    metrics_t *metrics;          /* pipelined_after_auth */
    unsigned long long sid;      /* for the log */
    const char *peer;
} controltls_t;

/* A fresh token. FG_OK, or FG_TLS when there is no randomness. */
int controltls_init(controltls_t *t);
/* The session's client, identity and rule; addr and route are read when a
 * data connection asks (controltls_same_client). All borrowed. */
void controltls_attach(controltls_t *t, client_t *client, SSL_CTX *ctx, const tls_sni_t *sni, session_reuse_t rule,
                       const struct sockaddr *addr, const routing_t *route);
/* Where AUTH's discarded plaintext is logged and counted (borrowed). */
void controltls_log_to(controltls_t *t, metrics_t *metrics, unsigned long long sid, const char *peer);

/* TLS from the next byte (an implicit listener's first). FG_OK or client_start_tls's error. */
int controltls_start(controltls_t *t);
/* AUTH accepted (RFC 4217 §4): "234", then TLS from the next byte. What the
 * client sent after the AUTH line is discarded, never executed (SECURITY:
 * command injection, CVE-2011-0411 class), and logged and counted, with
 * held_dropped: the bytes of the commands the caller held behind a transfer
 * that it discarded too (they came with AUTH, in clear).
 * FG_OK or client_start_tls's error. */
int controltls_auth(controltls_t *t, size_t held_dropped);

/* The login succeeded: under policy "client" it is registered and the first
 * ticket goes out (with the 230). */
void controltls_login(controltls_t *t);
/* REIN or the end: the registration goes. */
void controltls_logout(controltls_t *t);

/* tls_engine_foreign_check_cb for the data connections (ctx: t): was the
 * control connection of token this session's client, with the same login? */
int controltls_same_client(void *t, const unsigned char token[TLS_ENGINE_TOKEN_LEN]);

#endif
