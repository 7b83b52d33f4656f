#ifndef FTPSGATE_SESSION_H
#define FTPSGATE_SESSION_H
#include <sys/socket.h>
#include <uv.h>

#include "config.h"
#include "liveview.h"
#include "generation.h"
#include "metrics.h"
#include "portpool.h"
#include "tls_engine.h"
#include "tstream.h"

/* One client control connection and its backend control connection: reads
 * client commands through a bounded line reader (intake.h), decides through
 * the policy (policy.h) whether to answer, rewrite or forward, and hands the
 * backend's side to its relay (relay.h) and the data channels to its data
 * plan (dataplan.h). Frees itself when both connections are closed, then
 * tells its listener. */

/* Where an intercepted client meant to go (backend "original-destination"),
 * checked by the listener before the session starts. */
typedef struct {
    struct sockaddr_storage dst;
    int redirected; /* REDIRECT/DNAT (else TPROXY) */
} session_origin_t;

typedef struct session session_t;

/* What a session takes from the listener that accepted it, for its whole
 * life: it never calls the listener back but through the two callbacks. */
typedef struct {
    uv_loop_t *loop;
    generation_t *gen;                 /* the session takes a reference */
    size_t listener_index;             /* its listener in gen's configuration */
    portpool_t *pool;
    metrics_t *metrics;
    struct auditlog *audit;            /* log.transfer_log; NULL: none */
    /* Behind a balancer: counts the real client addr (max_sessions_per_ip).
     * NULL when admitted, else the refusal reason. */
    const char *(*admit_client)(void *ctx, const struct sockaddr *addr);
    /* The session is gone (its memory goes right after); counted_ip: the
     * address it was counted under per IP, NULL when it was not. */
    void (*gone)(void *ctx, session_t *s, const struct sockaddr *counted_ip);
    void *ctx;
} session_env_t;

/* client: an accepted, connected stream; the session takes ownership.
 * origin: NULL unless the listener intercepts. */
session_t *session_start(const session_env_t *env, tstream_t *client, unsigned long long id,
                         const session_origin_t *origin);

/* Ends the session now (both connections closed). */
void session_abort(session_t *s, const char *why);

/* Intrusive list of the listener's sessions. */
session_t *session_next(const session_t *s);
void session_link(session_t *s, session_t **head);
void session_unlink(session_t *s, session_t **head);
const struct sockaddr *session_client_addr(const session_t *s);

/* The live view's copy of the session (liveview.h), on its loop: loop_now
 * is uv_now, wall_now the wall clock in ms. e NULL: nothing is copied, but
 * the running transfer's rate is still sampled. */
void session_snapshot(session_t *s, liveview_entry_t *e, uint64_t loop_now, int64_t wall_now);

#endif
