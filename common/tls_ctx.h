#ifndef FTPSGATE_TLS_CTX_H
#define FTPSGATE_TLS_CTX_H
#include <stddef.h>
#include <openssl/ssl.h>

#include "config.h"

/* Builds the server SSL_CTX of one TLS identity (DESIGN.md §4): versions,
 * ciphers, groups, certificate chain and key, optional client CA; renegotiation
 * and compression off; a server-side session cache and tickets so that data
 * connections can resume the control session. Reads the certificate files now
 * (start-up and reload). Returns NULL and a one-line reason in err, naming the
 * JSON path ("tls.main.cert: ...") on failure. */
SSL_CTX *tls_ctx_new(const config_tls_t *tls, char *err, size_t errlen);

/* SNI switched a handshake to ctx (one made by tls_ctx_new): besides the
 * certificate, the identity's versions, ciphers, groups and client
 * certificate rule apply to ssl. 0, or -1 when a setting cannot apply. */
int tls_ctx_switch(SSL *ssl, SSL_CTX *ctx);

/* The end of validity (notAfter) of ctx's certificate as Unix time, for
 * expiry warnings and the metric. 0, or -1 without a readable certificate. */
int tls_ctx_not_after(SSL_CTX *ctx, long long *unix_time);

#endif
