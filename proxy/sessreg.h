#ifndef FTPSGATE_SESSREG_H
#define FTPSGATE_SESSREG_H
#include <stddef.h>
#include <sys/socket.h>

#include "tls_engine.h"

/* Which client each logged-in control connection belongs to, by its TLS
 * token, for policy.require_session_reuse "client": a data connection may
 * resume a session another control connection received only when that
 * connection is still live and has the same client address and login.
 * Process-wide and thread-safe (a mutex: consulted once per data handshake). */

/* 0, or FG_NOMEM. A token registered again replaces its entry. */
int sessreg_put(const unsigned char token[TLS_ENGINE_TOKEN_LEN], const struct sockaddr *client, const char *user);
void sessreg_drop(const unsigned char token[TLS_ENGINE_TOKEN_LEN]);
/* 1 when token is registered with client's IP and exactly user. */
int sessreg_same_client(const unsigned char token[TLS_ENGINE_TOKEN_LEN], const struct sockaddr *client,
                        const char *user);
/* Entries now (for tests and the metrics). */
size_t sessreg_count(void);

#endif
