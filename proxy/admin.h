#ifndef FTPSGATE_ADMIN_H
#define FTPSGATE_ADMIN_H
#include <stddef.h>
#include <uv.h>

#include "config.h"

/* The admin HTTP endpoint (DESIGN.md §6), on its own address (loopback by
 * default): GET /metrics (Prometheus text) and GET /healthz. One request per
 * connection, request head capped at 2 KiB, 5 s to send it. */

typedef struct admin admin_t;

/* Writes the metrics text into out; returns its length or -1. */
typedef int (*admin_render_cb)(void *userdata, char *out, size_t cap);

int admin_start(uv_loop_t *loop, const config_hostport_t *bind, admin_render_cb render,
                void *userdata, admin_t **out, char *err, size_t errlen);
/* From now on /healthz answers 503 "draining" (SIGTERM: no new sessions). */
void admin_set_draining(admin_t *a);
/* Stops listening; open admin connections finish. The memory is freed once closed. */
void admin_stop(admin_t *a);

#endif
