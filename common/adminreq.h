#ifndef FTPSGATE_ADMINREQ_H
#define FTPSGATE_ADMINREQ_H
#include <stddef.h>

/* The admin endpoint's HTTP request head (DESIGN.md §6): the request line
 * and the Authorization header, nothing else. Pure. The slices point into
 * the head the caller keeps (they live as long as it does). */

typedef struct {
    const char *method, *path, *query, *auth;
    size_t method_len, path_len, query_len, auth_len; /* query: after '?', 0 when none */
    int auth_seen;                                     /* an Authorization header was there */
} adminreq_t;

/* head: the bytes up to and including the blank line. FG_OK or FG_SYNTAX
 * (no "METHOD SP target SP HTTP/1.x" line, a target that is not a path, or
 * two Authorization headers). */
int adminreq_parse(const char *head, size_t len, adminreq_t *out);

/* The query parameter key as a decimal number up to max: FG_OK and *val;
 * FG_NEED_MORE when it is absent; FG_SYNTAX or FG_RANGE when it is bad. */
int adminreq_query_uint(const adminreq_t *r, const char *key, unsigned long max, unsigned long *val);

/* Whether the request carries token: "Authorization: Bearer TOKEN", or HTTP
 * Basic with TOKEN as the password (any user name). 1 or 0. SECURITY: the
 * comparison takes the same time whatever the candidate is (SHA-256 of both,
 * compared with CRYPTO_memcmp), so its timing reveals nothing of the token. */
int adminreq_authorized(const adminreq_t *r, const char *token);

#endif
