#ifndef FTPSGATE_TLS_CTX_H
#define FTPSGATE_TLS_CTX_H
#include <stddef.h>
#include <openssl/ssl.h>

#include "config.h"

/* How long a TLS session can be resumed (a TLS 1.2 control session, or a TLS
 * 1.3 ticket): 7 days, TLS 1.3's limit (RFC 8446 §4.6.1). */
#define TLS_CTX_SESSION_LIFETIME_S (7 * 24 * 3600)

/* Builds the server SSL_CTX of one TLS identity (DESIGN.md §4): versions,
 * ciphers, groups (OpenSSL's default unless configured), certificate chain and
 * key, an RFC 7919 DHE group, optional client CA; renegotiation and
 * compression off; a server-side session cache (TLS 1.2) and TLS 1.3 tickets
 * under daily-rotated keys (ticketkeys.h) so that data connections can resume
 * the control session. Reads the certificate files now (start-up and reload).
 * Returns NULL and a one-line reason in err, naming the JSON path
 * ("tls.main.cert: ...") on failure. */
SSL_CTX *tls_ctx_new(const config_tls_t *tls, char *err, size_t errlen);

/* SNI switched a handshake to ctx (one made by tls_ctx_new): besides the
 * certificate, the identity's versions, ciphers, groups and client
 * certificate rule apply to ssl. 0, or -1 when a setting cannot apply. */
int tls_ctx_switch(SSL *ssl, SSL_CTX *ctx);

/* The end of validity (notAfter) of ctx's certificate as Unix time, for
 * expiry warnings and the metric. 0, or -1 without a readable certificate. */
int tls_ctx_not_after(SSL_CTX *ctx, long long *unix_time);

#endif
