#ifndef FTPSGATE_ADMIN_H
#define FTPSGATE_ADMIN_H
#include <stddef.h>
#include <uv.h>

#include "config.h"

/* The admin HTTP endpoint (DESIGN.md §6), on its own address (loopback by
 * default): GET /metrics (Prometheus text), GET /healthz, GET /sessions (the
 * live view, JSON, ?limit=N) and GET /status (an HTML page built on
 * /sessions). One request per connection, request head capped at 8 KiB, 5 s
 * to send it and to be answered.
 *
 * With a token (admin.token), every path but /healthz needs it, as
 * "Authorization: Bearer TOKEN" or as the password of HTTP Basic
 * authentication (any user name); else 401 with WWW-Authenticate: Basic. */

typedef struct admin admin_t;

typedef struct {
    /* Writes the metrics text into out; returns its length or -1. */
    int (*render_metrics)(void *userdata, char *out, size_t cap);
    /* The /sessions document for at most limit sessions: FG_OK and a
     * malloc'd body (the admin frees it), or an FG_ error. */
    int (*render_sessions)(void *userdata, size_t limit, char **body, size_t *len);
    void *userdata;
} admin_handlers_t;

/* token: admin.token (copied), NULL for none. */
int admin_start(uv_loop_t *loop, const config_hostport_t *bind, const admin_handlers_t *h, const char *token,
                admin_t **out, char *err, size_t errlen);
/* SIGHUP: the token from now on (copied; NULL: none). */
int admin_set_token(admin_t *a, const char *token);
/* From now on /healthz answers 503 "draining" (SIGTERM: no new sessions). */
void admin_set_draining(admin_t *a);
/* Stops listening; open admin connections finish. The memory is freed once closed. */
void admin_stop(admin_t *a);

#endif
